package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

func TestGOGCFlagUnlessTheEnvironmentSetsIt(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	require.NoError(t, os.Unsetenv("GOGC"))
	(&gatewayFlags{gogc: 37}).applyGC()
	require.Equal(t, 37, debug.SetGCPercent(100), "--gogc applies")

	t.Setenv("GOGC", "80")
	(&gatewayFlags{gogc: 37}).applyGC()
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC in the environment wins")

	require.NoError(t, os.Unsetenv("GOGC"))
	(&gatewayFlags{gogc: 0}).applyGC()
	require.Equal(t, 100, debug.SetGCPercent(100), "0 leaves Go's default")
}

func TestGOGCDefaultsDifferBetweenGatewayAndRun(t *testing.T) {
	for cmd, want := range map[string]string{"gateway": "(default 50;", "run": "(default 100;"} {
		require.Contains(t, helpLine(t, cmd, "--gogc"), want, cmd)
	}
}

// helpLine is the line of cmd's --help that documents name.
func helpLine(t *testing.T, cmd, name string) string {
	t.Helper()
	var out bytes.Buffer
	require.ErrorIs(t, dispatch(context.Background(), []string{cmd, "--help"}, &out, io.Discard), flag.ErrHelp)
	var line string
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, name) {
			line = l
		}
	}
	return line
}

func TestMaxHeaderBytesFlag(t *testing.T) {
	for _, cmd := range []string{"gateway", "run"} {
		require.Contains(t, helpLine(t, cmd, "--max-header-bytes"), "(default 16384", cmd)
	}
	cfg, err := (&gatewayFlags{maxHeader: 4096}).config(nil, "", nil)
	require.NoError(t, err)
	require.Equal(t, 4096, cfg.MaxHeaderBytes)
}

func TestAdvertiseFlag(t *testing.T) {
	g := gatewayFlags{ws: "0.0.0.0:7272", wsPath: "/", advertise: "wss://chat.example.com/, text://10.0.0.5:7273"}
	cfg, err := g.config(nil, "", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"wss://chat.example.com/", "text://10.0.0.5:7273"}, cfg.AdvertiseAddrs)
	g.advertise = "chat.example.com:7272"
	require.ErrorContains(t, g.check(), `--advertise: "chat.example.com:7272" is not a URL`)
}

func TestWebSocketTypeFlag(t *testing.T) {
	require.Contains(t, helpLine(t, "gateway", "--websocket-type"), "(default default; env GW_WEBSOCKET_TYPE)")
	for in, want := range map[string]bus.Frame{"": bus.FrameDefault, "default": bus.FrameDefault, "text": bus.FrameText, "binary": bus.FrameBinary} {
		cfg, err := (&gatewayFlags{wsType: in}).config(nil, "", nil)
		require.NoError(t, err, in)
		require.Equal(t, want, cfg.WebSocketType, in)
	}
	g := gatewayFlags{ws: "127.0.0.1:7272", wsPath: "/", wsType: "blob"}
	require.ErrorContains(t, g.check(), `--websocket-type "blob": want text, binary or default`)
}

// TestMessageSizeFlags: run refuses a --max-message-size that its NATS
// server's max_payload cannot carry, naming the flag to raise; raised
// together, a 4 MiB client message reaches the chat and the client stays.
func TestMessageSizeFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"run", "--nats-port", "0", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "", "--max-message-size", "4194304"}, quietLogs...)
	err := dispatch(ctx, args, io.Discard, io.Discard)
	require.ErrorContains(t, err, "the NATS server's max_payload is 1048576: raise max_payload to at least 4194816 (gatewayworker run or nats: --nats-max-payload")

	err = dispatch(ctx, []string{"nats", "--nats-port", "0", "--nats-max-payload", "67108865"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "--nats-max-payload 67108865: want 1 to 67108864")

	// The send queue follows NATS's max_payload unless set.
	g := gatewayFlags{ws: "127.0.0.1:7272", wsPath: "/"}
	cfg, err := g.config(nil, "", nil)
	require.NoError(t, err)
	require.Zero(t, cfg.SendQueueLimit, "0: the gateway picks max(1 MiB, max_payload)")

	banner, _ := startRun(t, "--http", freeAddr(t), "--max-message-size", "4194304", "--nats-max-payload", "4194816")
	page := field(t, banner, "chat page")
	c, _, err := websocket.DefaultDialer.Dial(field(t, banner, "websocket"), http.Header{"Origin": {strings.TrimSuffix(page, "/")}})
	require.NoError(t, err)
	defer c.Close()
	big := `{"type":"pong","pad":"` + strings.Repeat("p", 4<<20-64) + `"}`
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(big)))
	chatLogin(t, c, "Ann") // answered: the connection outlived the 4 MiB message
}
