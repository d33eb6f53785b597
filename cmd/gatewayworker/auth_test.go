package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestAuthFlagErrors: key files that do not parse and flags that cannot
// work are usage errors naming the file or flag, found before NATS is
// waited for.
func TestAuthFlagErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600))
	secret := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("k", 40)), 0o600))
	noNATS := []string{"--nats", "nats://127.0.0.1:1", "--nats-wait", "1m"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gateway", "--jwt-public-key", bad}, `bad.pem: PEM block "PRIVATE KEY"`},
		{[]string{"gateway", "--jwt-jwks", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"gateway", "--jwt-secret-file", secret, "--jwt-alg", "RS256"}, "RS256 has no key"},
		{[]string{"gateway", "--jwt-secret-file", secret, "--auth-pending"}, "exclude each other"},
		{[]string{"run", "--jwt-issuer", "me"}, "need a key"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := dispatch(ctx, append(append(tc.args, noNATS...), quietLogs...), io.Discard, io.Discard)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, exitUsage, exitCode(err, io.Discard), "%v", err)
		})
	}
}

// TestAuthRefusalsInMetrics: `run --jwt-secret-file` refuses a client
// without a token with close code 4502 and counts it in /metrics.
func TestAuthRefusalsInMetrics(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte(strings.Repeat("k", 40)), 0o600))
	banner, _ := startRun(t, "--http", freeAddr(t), "--jwt-secret-file", secret)
	page := field(t, banner, "chat page")
	ws := field(t, banner, "websocket")
	c, _, err := websocket.DefaultDialer.Dial(ws+"?token=not.a.token", http.Header{"Origin": {strings.TrimSuffix(page, "/")}})
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.ReadMessage()
	require.True(t, websocket.IsCloseError(err, 4502), "%v", err)
	require.Eventually(t, func() bool {
		resp, err := http.Get(page + "metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `gatewayworker_gateway_auth_failures_total{cause="malformed"} 1`) &&
			strings.Contains(string(body), `gatewayworker_gateway_closed_total{reason="unauthorized"} 1`)
	}, 10*time.Second, 50*time.Millisecond)
}
