package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// stuckTransport is a socket whose writes hang until release is closed:
// the fanout's writers fall behind whatever comes in.
type stuckTransport struct {
	nopTransport
	release chan struct{}
}

func (t stuckTransport) send([]byte, bool) error { <-t.release; return nil }
func (t stuckTransport) appendFrame(dst, data []byte, _ bool) ([]byte, bool) {
	return append(dst, data...), true
}
func (t stuckTransport) writeFrames([]byte) error { <-t.release; return nil }

// TestBroadcastFloodIsDroppedAndCounted: when the fanout's writers stop
// keeping up, the NATS callback that queues pushes still returns at once;
// pushes past the fanout's bounds are dropped and counted, and what waits
// stays within fanoutBytes. The callback used to block on a full shard,
// and the flood then piled up unbounded in nats.go behind it.
func TestBroadcastFloodIsDroppedAndCounted(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	// More clients than maxInline: broadcasts go through the shards, not
	// the callback's own writes (which the stuck socket would hold).
	g := runWithClients(t, e, "flood", maxInline)
	release := make(chan struct{})
	defer close(release)
	require.NotNil(t, g.newClient("127.0.0.1:1", stuckTransport{release: release}))
	data, err := bus.Marshal(&bus.Command{Op: bus.OpSend, Body: bytes.Repeat([]byte("f"), 1024)})
	require.NoError(t, err)

	const flood = fanoutQueue + 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range flood {
			g.onBroadcast(bus.Msg{Subject: g.subj.All(), Data: data})
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the broadcast callback waits for the fanout's writers")
	}
	dropped := g.Stats().PushesDropped
	// The queue holds fanoutQueue; the blocked writer took one round.
	require.GreaterOrEqual(t, dropped, uint64(flood-fanoutQueue-maxCoalesced-1), "what found no room was counted")
	require.LessOrEqual(t, g.fan.queued.Load(), int64(fanoutBytes))
}
