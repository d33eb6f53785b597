package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// nopTransport stands in for a socket where only the registry matters: the
// queries read the registry, not the sockets.
type nopTransport struct{}

func (nopTransport) send([]byte, bool) error                          { return nil }
func (nopTransport) appendFrame(dst, _ []byte, _ bool) ([]byte, bool) { return dst, true }
func (nopTransport) writeFrames([]byte) error                         { return nil }
func (nopTransport) ping()                                            {}
func (nopTransport) queued() int                                      { return 0 }
func (nopTransport) close([]byte, bus.CloseReason)                    {}

// runWithClients runs a real gateway on e holding n registered clients
// (half of them in group "big", each bound to uid "u<i%100>").
func runWithClients(tb testing.TB, e *bus.Embedded, id string, n int) *Gateway {
	tb.Helper()
	g := runGateway(tb, e, Config{ID: id, MaxConnections: n + 1})
	for i := range n {
		c := g.newClient(fmt.Sprintf("127.0.0.1:%d", i), nopTransport{})
		require.NotNil(tb, c)
		c.session = mustSession(tb, map[string]any{"i": i})
		if i%2 == 0 {
			_, err := g.reg.join(c, "big", 10)
			require.NoError(tb, err)
		}
		_, _, err := g.reg.bind(c, fmt.Sprintf("u%d", i%100))
		require.NoError(tb, err)
	}
	return g
}

// runGateway runs a real gateway on e with cfg, listening on a free
// WebSocket port, until the test ends.
func runGateway(tb testing.TB, e *bus.Embedded, cfg Config) *Gateway {
	tb.Helper()
	cfg.Bus = bustest.Connect(tb, e, bus.Config{})
	cfg.WebSocketAddr = "127.0.0.1:0"
	cfg.Logger = bustest.Logger(tb)
	if cfg.DrainTimeout == 0 {
		// No worker acknowledges the close events of its clients at the
		// end: stopping would wait the default 5 s for nothing.
		cfg.DrainTimeout = 100 * time.Millisecond
	}
	g, err := New(cfg)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	<-g.Ready()
	return g
}

func mustSession(tb testing.TB, m map[string]any) []byte {
	b, err := bus.EncodeSession(m)
	require.NoError(tb, err)
	return b
}

// TestLargeAnswersComeInParts: 10,000 clients' ids and sessions cross the
// bus in parts under the payload limit, and arrive whole.
func TestLargeAnswersComeInParts(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 512 << 10})
	runWithClients(t, e, "big", 10_000)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	defer a.Close()
	ctx := context.Background()

	ids, err := a.GetAllClientIDList(ctx)
	require.NoError(t, err)
	require.Len(t, ids, 10_000)
	sessions, err := a.GetAllClientSessions(ctx)
	require.NoError(t, err)
	require.Len(t, sessions, 10_000)
	n, err := a.GetClientCountByGroup(ctx, "big")
	require.NoError(t, err)
	require.Equal(t, 5_000, n)
	uids, err := a.GetUIDListByGroup(ctx, "big")
	require.NoError(t, err)
	require.Len(t, uids, 50, "even i gives the 50 even uids")
	count, err := a.GetAllUIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, count)
}

// BenchmarkQueryAcross3Gateways: the acceptance figure of the queries issue,
// a query across 3 gateways holding 30,000 clients in total.
func BenchmarkQueryAcross3Gateways(b *testing.B) {
	e := bustest.RunServer(b, bus.EmbeddedConfig{})
	for _, id := range []string{"g1", "g2", "g3"} {
		runWithClients(b, e, id, 10_000)
	}
	a, err := api.New(api.Config{Bus: bustest.Connect(b, e, bus.Config{}), QueryTimeout: 5 * time.Second})
	require.NoError(b, err)
	defer a.Close()
	ctx := context.Background()
	_, err = a.GetGatewayIDs(ctx) // discovery
	require.NoError(b, err)

	b.Run("GetAllClientIDCount", func(b *testing.B) {
		for b.Loop() {
			n, err := a.GetAllClientIDCount(ctx)
			if err != nil || n != 30_000 {
				b.Fatalf("%d %v", n, err)
			}
		}
	})
	b.Run("GetAllClientIDList", func(b *testing.B) {
		for b.Loop() {
			ids, err := a.GetAllClientIDList(ctx)
			if err != nil || len(ids) != 30_000 {
				b.Fatalf("%d %v", len(ids), err)
			}
		}
	})
	b.Run("GetClientIDListByGroup", func(b *testing.B) {
		for b.Loop() {
			ids, err := a.GetClientIDListByGroup(ctx, "big")
			if err != nil || len(ids) != 15_000 {
				b.Fatalf("%d %v", len(ids), err)
			}
		}
	})
}
