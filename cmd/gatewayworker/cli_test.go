package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestHelpAndVersion: --help lists the commands and the flags of run;
// version and --version name the build.
func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, dispatch(context.Background(), []string{"--help"}, &out, io.Discard))
	for _, want := range []string{"gatewayworker nats", "gatewayworker gateway", "version", "--ping-interval", "--nats-wait", "GW_LOG_FORMAT"} {
		require.Contains(t, out.String(), want)
	}
	for _, arg := range []string{"version", "--version"} {
		out.Reset()
		require.NoError(t, dispatch(context.Background(), []string{arg}, &out, io.Discard))
		require.Regexp(t, `^gatewayworker \S+, commit \S+`, out.String())
	}
}

// TestUsageErrorsNameFlags: bad command lines and environments are usage
// errors (exit code 2, with the command's flags) that name the flag or
// variable and the format it wants, found before NATS is waited for
// (--nats-wait 1m on a port where no NATS runs: a check after connecting
// would take a minute).
func TestUsageErrorsNameFlags(t *testing.T) {
	noNATS := []string{"--nats", "nats://127.0.0.1:1", "--nats-wait", "1m"}
	for _, tc := range []struct {
		args      []string
		env, want string
		usage     bool
	}{
		{args: []string{"gateway", "--bogus"}, want: "--bogus", usage: true},
		{args: []string{"gateway", "--ping-interval", "10"}, want: "--ping-interval: want a duration", usage: true},
		{args: []string{"gateway", "--rate-limit", "70000"}, want: "--rate-limit 70000: want 0 to 65534"},
		{args: []string{"gateway", "--tcp", "127.0.0.1:0", "--tcp-protocol", "json"}, want: `--tcp-protocol "json"`},
		{args: []string{"gateway", "--max-message-size", "70000000"}, want: "--max-message-size 70000000: want 0 to 67108352"},
		{args: []string{"gateway"}, env: "GW_PING_INTERVAL=10", want: `GW_PING_INTERVAL="10": want a duration`},
		{args: []string{"worker", "--app", "nope"}, want: `--app "nope"`},
		{args: []string{"fly"}, want: `unknown command "fly"`, usage: true},
	} {
		t.Run(strings.Join(tc.args, " ")+" "+tc.env, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := dispatch(ctx, append(append(tc.args, noNATS...), quietLogs...), io.Discard, io.Discard)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "MaxMessagesPerSecond")
			var out bytes.Buffer
			require.Equal(t, exitUsage, exitCode(err, &out), "%v", err)
			if tc.usage {
				require.Regexp(t, `(?m)^  (--|gatewayworker )`, out.String(), "the flags or commands are printed")
			}
		})
	}
}

// TestWaitsForNATS: a command started before NATS waits for it (--nats-wait)
// and then runs, reading the token file of the `nats` that came up; when
// NATS does not come, it ends with a hint and exit code 69.
func TestWaitsForNATS(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	addr := freeAddr(t)
	port := addr[len("127.0.0.1:"):]
	status := make(chan error, 1)
	var out, logs bustest.LogBuffer
	go func() {
		status <- dispatch(context.Background(), []string{"status", "--nats", "nats://" + addr, "--nats-wait", "30s", "--log-level", "warn"}, &out, &logs)
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "nats: not reachable yet; retrying") }, 20*time.Second, 10*time.Millisecond,
		"status says it waits for NATS")
	_, stop := startCommand(t, append([]string{"nats", "--nats-port", port}, quietLogs...)...)
	select {
	case err := <-status:
		require.NoError(t, err)
		require.Contains(t, out.String(), "GATEWAYS (0)")
	case <-time.After(40 * time.Second):
		t.Fatal("status did not connect once NATS was up")
	}
	require.NoError(t, stop())

	err := dispatch(context.Background(), append([]string{"status", "--nats", "nats://" + addr, "--nats-wait", "1500ms"}, quietLogs...), io.Discard, io.Discard)
	var ne *natsUnavailableError
	require.True(t, errors.As(err, &ne), "%v", err)
	require.ErrorContains(t, err, "gatewayworker nats")
	require.Equal(t, exitUnavailable, exitCode(err, io.Discard))
}

// TestExitCodes runs the binary: 2 for a usage error, 69 when NATS is not
// there, each with one line saying why.
func TestExitCodes(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"gateway", "--bogus"}, exitUsage},
		{[]string{"status", "--nats", "nats://127.0.0.1:1", "--nats-wait", "1s"}, exitUnavailable},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%v: %s", err, out)
		require.Equal(t, tc.code, ee.ExitCode(), "%v: %s", tc.args, out)
	}
}

// TestOneEnvNamePerMeaning: flags whose names mean different things to
// different commands have command-scoped variables.
func TestOneEnvNamePerMeaning(t *testing.T) {
	for cmd, want := range map[string][]string{
		"status": {"GW_STATUS_JSON", "GW_STATUS_TIMEOUT"},
		"health": {"GW_HEALTH_ADDR", "GW_HEALTH_TIMEOUT"},
	} {
		var out bytes.Buffer
		_ = dispatch(context.Background(), []string{cmd, "--help"}, &out, io.Discard)
		for _, w := range want {
			require.Contains(t, out.String(), w)
		}
	}
	t.Setenv("GW_HEALTH_ADDR", freeAddr(t))
	require.ErrorContains(t, dispatch(context.Background(), []string{"health"}, io.Discard, io.Discard), "unhealthy")
}
