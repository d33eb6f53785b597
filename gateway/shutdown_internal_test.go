package gateway

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestShortDrainTimeoutStopsTheWebSocketEngine: Run stops nbio's pollers
// before it returns, even with a DrainTimeout shorter than nbio's own
// shutdown checks (200 ms), and a client whose close is never acknowledged.
func TestShortDrainTimeoutStopsTheWebSocketEngine(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	before := pollers()
	g, err := New(Config{Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0",
		DrainTimeout: 50 * time.Millisecond, Logger: bustest.Logger(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()
	require.NotNil(t, g.newClient("127.0.0.1:1", nopTransport{}), "a client no worker will acknowledge")
	require.Eventually(t, func() bool { return pollers() > before }, 5*time.Second, time.Millisecond, "the engine's pollers run")
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, before, pollers(), "nbio pollers still run after Run returned")
}

// pollers counts the goroutines of nbio pollers.
func pollers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "nbio.(*poller).readWriteLoop")
}
