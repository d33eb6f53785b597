package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// buildExample builds a main package of this module into a temporary
// directory and returns the binary's path.
func buildExample(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	require.NoError(t, err, "go build %s:\n%s", pkg, out)
	return bin
}

// tokenFileOf is the token file a banner names.
func tokenFileOf(t *testing.T, banner string) string {
	t.Helper()
	m := regexp.MustCompile(`token in (\S+)\)`).FindStringSubmatch(banner)
	require.NotNil(t, m, "no token file in banner:\n%s", banner)
	return m[1]
}

// TestLobbyBesideRunAppNone runs the README's worker (examples/lobby, as a
// process) beside `run --app none`, the README's one-box set-up: it must
// get every event of every client. Beside `run` with its chat worker, the
// events were split between the two workers.
func TestLobbyBesideRunAppNone(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	lobby := buildExample(t, "../../examples/lobby")
	banner, stop := startRun(t, "--app", "none")
	ws := field(t, banner, "websocket")
	token, err := os.ReadFile(tokenFileOf(t, banner))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, lobby)
	cmd.Env = append(os.Environ(), "NATS_URL="+field(t, banner, "nats"), "NATS_TOKEN="+strings.TrimSpace(string(token)))
	var logs syncBuffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	const n = 10
	clients := make([]*websocket.Conn, n)
	read := func(c *websocket.Conn) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
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

	// SIGTERM: the README's worker drains and exits 0.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "lobby log:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the lobby worker did not stop")
	}
	require.NoError(t, stop())
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
	var out syncBuffer
	require.NoError(t, dispatch(context.Background(), append([]string{"status", "--nats", natsURL}, quietLogs...), &out, io.Discard))
	require.Contains(t, out.String(), "GATEWAYS (0)")

	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // no token file: refused
	require.Error(t, dispatch(context.Background(), append([]string{"status", "--nats", natsURL}, quietLogs...), io.Discard, io.Discard))
	require.NoError(t, stop())
	_, err = os.Stat(file)
	require.ErrorIs(t, err, os.ErrNotExist)
}
