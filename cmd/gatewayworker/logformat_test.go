package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/internal/testbin"
)

// binary returns this command's binary, for tests that need what only a
// process shows (its stderr, its exit code); testbin builds it once for
// this package's tests and integration's.
func binary(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, "github.com/gatewayworker/gatewayworker/cmd/gatewayworker")
}

// jsonLines checks that every line of out is one JSON object and returns them.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var records []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "a line that is not JSON with --log-format json: %q", sc.Text())
		records = append(records, m)
	}
	return records
}

// TestEveryLineFollowsLogFormat: with --log-format json, the banner, the
// log lines of nbio (30 connections refused by --max-conns 1) and the
// error a command ends with are all JSON records; the refusals are not
// ERROR, and nbio's lines are rate-limited.
func TestEveryLineFollowsLogFormat(t *testing.T) {
	bin := binary(t)
	tcp := freeAddr(t)
	cmd := exec.Command(bin, "run", "--app", "none", "--nats-port", "0", "--ws", "127.0.0.1:0", "--tcp", tcp,
		"--max-conns", "1", "--log-format", "json")
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir())
	var stderr bustest.LogBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "gatewayworker run ready") },
		30*time.Second, 20*time.Millisecond, "%s", &stderr)
	var conns []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", tcp)
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, c)
	}
	// The refused ones are closed by the gateway: wait until each reads EOF.
	for _, c := range conns[1:] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 1))
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait())

	nbio := 0
	for _, r := range jsonLines(t, stderr.String()) {
		require.NotEqual(t, "ERROR", r["level"], "%v", r)
		if r["component"] == "nbio" {
			nbio++
		}
	}
	require.Less(t, nbio, 29, "nbio's lines are rate-limited")

	// A command that fails says so as a record too.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "run", "--nats-port", "0", "--ws", "127.0.0.1:0", "--tcp", taken.Addr().String(),
		"--http", "", "--log-format", "json").CombinedOutput()
	require.Error(t, err)
	records := jsonLines(t, string(bytes.TrimSpace(out)))
	require.NotEmpty(t, records)
	require.Contains(t, records[len(records)-1]["err"], "already in use")
}
