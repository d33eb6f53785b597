package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/bus"
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
