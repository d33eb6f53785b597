package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// readmeAuthorization is the nats-server authorization block of
// docs/security.md ("Locking NATS down"), verbatim: the configuration the
// documents recommend.
func readmeAuthorization(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/security.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)```\n(authorization \\{\n.*?\n\\})\n```").FindSubmatch(doc)
	require.NotNil(t, m, "docs/security.md has no authorization block")
	return string(m[1])
}

// TestREADMEPermissions runs a nats-server process with docs/security.md's
// authorization block and a gateway, a worker and an API client as
// processes of its users, and holds echo clients for 8 s: past the
// gateway's 2.5 s NATS-loss timeout and the workers' 3.5 s reaper deadline.
// With the block as it was, the gateway could not hear its own heartbeats
// and closed every client 2.5 s after start.
func TestREADMEPermissions(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	require.NoError(t, os.WriteFile(conf, []byte(readmeAuthorization(t)+"\n"), 0o600))
	port := freePort(t)
	srv := exec.Command(natsServerBin.get(t), "-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	srv.Env = append(os.Environ(), "GW_GATEWAY_PW=gw-secret", "GW_WORKER_PW=wk-secret", "GW_WEBAPP_PW=web-secret")
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	waitPort(t, fmt.Sprintf("127.0.0.1:%d", port))

	gw := start(t, "gateway", "gateway", "--nats", url, "--nats-user", "gateway", "--nats-password", "gw-secret",
		"--ws", "127.0.0.1:0", "--tcp", "")
	ws := "ws://" + gw.waitLine(t, `gateway listening.*websocket=(\S+)`) + "/"
	startTier(t, "worker", "worker", "--nats", url, "--nats-user", "worker", "--nats-password", "wk-secret", "--app", "bench", "--sticky")

	conn, err := bus.Connect(context.Background(), bus.Config{URLs: []string{url}, User: "webapp", Password: "web-secret",
		InboxPrefix: bus.Subjects{}.Inbox(bus.RoleAPI)})
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	web, err := api.New(api.Config{Bus: conn})
	require.NoError(t, err)
	t.Cleanup(web.Close)

	const clients = 10
	l := startLoad(t, ws, clients, 50*time.Millisecond)
	hold := time.Now().Add(8 * time.Second)
	for time.Now().Before(hold) {
		n, err := web.GetAllClientIDCount(context.Background())
		require.NoError(t, err, "the API client queries under its permissions")
		require.Equal(t, clients, n, "no client was closed")
		time.Sleep(500 * time.Millisecond)
	}
	l.finish("README permissions", false)
}
