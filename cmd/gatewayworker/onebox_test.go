package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// tokenFileOf is the token file a banner names.
func tokenFileOf(t *testing.T, banner string) string {
	t.Helper()
	m := regexp.MustCompile(`token in (\S+)\)`).FindStringSubmatch(banner)
	require.NotNil(t, m, "no token file in banner:\n%s", banner)
	return m[1]
}

// TestLobbyBesideRunAppNone runs the README's lobby commands verbatim:
// `run --app none`, then the README's worker (examples/lobby) with `go run`
// and the token file: the worker must get every event of every client.
// Beside `run` with its chat worker, the events were split between the two.
func TestLobbyBesideRunAppNone(t *testing.T) {
	lines := docBlock(t, "lobby")
	require.Len(t, lines, 2)
	natsPort, ws, harness := readmeHarness(t)
	startReadmeCommand(t, parseReadmeCommand(t, lines[0]), harness)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", strings.ReplaceAll(lines[1], "4222", natsPort))
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "NATS_URL=nats://127.0.0.1:"+natsPort)
	// Its own process group, like a terminal job, for Ctrl-C below.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs bustest.LogBuffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ws = "ws://" + ws + "/"

	const n = 10
	clients := make([]*websocket.Conn, n)
	read := func(c *websocket.Conn) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second)) // the first waits for go run to build the worker
		_, b, err := c.ReadMessage()
		require.NoError(t, err, "lobby log:\n%s", logs.String())
		return string(b)
	}
	for i := range clients {
		c, _, err := websocket.DefaultDialer.Dial(ws, nil)
		require.NoError(t, err)
		defer c.Close()
		clients[i] = c
		require.Equal(t, "welcome to the lobby", read(c), "client %d", i)
	}
	for i, c := range clients {
		require.NoError(t, c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "hi from %d", i)))
		for j, other := range clients {
			if j != i {
				require.Equal(t, fmt.Sprintf("hi from %d (your message #1)", i), read(other), "client %d reading %d", j, i)
			}
		}
	}

	// Ctrl-C (SIGINT to the process group, as a terminal sends it; go run
	// leaves it to the worker): the README's worker drains and stops
	// cleanly (log.Fatal would print its error). go run itself exits 1
	// after an interrupt whatever the program did, so its status says nothing.
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the lobby worker did not stop")
	}
	lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Contains(t, lines[len(lines)-1], "worker stopped", "lobby log:\n%s", logs.String())
	require.NotContains(t, logs.String(), "ERROR")
}

// TestNATSCommand: `nats` runs the embedded server alone with run's token
// file (0600), which `status` beside it reads, and removes it when it stops.
func TestNATSCommand(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	banner, stop := startCommand(t, append([]string{"nats", "--nats-port", "0"}, quietLogs...)...)
	file := tokenFileOf(t, banner)
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	natsURL := field(t, banner, "nats")
	var out bustest.LogBuffer
	require.NoError(t, dispatch(context.Background(), append([]string{"status", "--nats", natsURL}, quietLogs...), &out, io.Discard))
	require.Contains(t, out.String(), "GATEWAYS (0)")
	var js bustest.LogBuffer
	require.NoError(t, dispatch(context.Background(), append([]string{"status", "--json", "--nats", natsURL}, quietLogs...), &js, io.Discard))
	require.JSONEq(t, `{"gateways": [], "workers": [], "missing": []}`, js.String(), "every list present, empty")

	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // no token file: refused (at once: not --nats-wait's 30 s of retries)
	require.Error(t, dispatch(context.Background(), append([]string{"status", "--nats", natsURL, "--nats-wait", "0s"}, quietLogs...), io.Discard, io.Discard))
	require.NoError(t, stop())
	_, err = os.Stat(file)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestReadmeOneBox runs docs/operations.md's one-box commands verbatim (nats,
// gateway, worker as separate commands) and logs in to the chat.
func TestReadmeOneBox(t *testing.T) {
	lines := docBlock(t, "one box")
	require.Len(t, lines, 3)
	_, ws, harness := readmeHarness(t)
	harness["GW_NATS"] = "nats://127.0.0.1:" + harness["GW_NATS_PORT"]
	for _, line := range lines {
		startReadmeCommand(t, parseReadmeCommand(t, line), harness)
	}
	var c *websocket.Conn
	require.Eventually(t, func() bool {
		var err error
		c, _, err = websocket.DefaultDialer.Dial("ws://"+ws+"/", nil)
		return err == nil
	}, 15*time.Second, 20*time.Millisecond)
	defer c.Close()
	chatLogin(t, c, "Ann")
}
