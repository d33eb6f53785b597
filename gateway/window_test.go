package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestEventSendsWaitForAcksPastTheWindow: with MaxBatchesInFlight 4, ten
// clients that connect at once have four batches sent; the other six wait
// in their queues, and each ack lets one more go, first come first served,
// until every client's events reached the workers. (Before, every client
// sent at once, whatever the workers' backlog: a connect storm filled the
// workers' buffers until NATS dropped batches.)
func TestEventSendsWaitForAcksPastTheWindow(t *testing.T) {
	const window, clients = 4, 10
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	g := runGateway(t, e, Config{ID: "win", MaxBatchesInFlight: window})
	batches := make(chan bus.Msg, 2*clients)
	worker := bustest.Connect(t, e, bus.Config{})
	_, err := worker.Subscribe(g.subj.Events(), func(m bus.Msg) { batches <- m })
	require.NoError(t, err)
	require.NoError(t, worker.Flush(t.Context()))

	var order []string
	for i := range clients {
		c := g.newClient(fmt.Sprintf("127.0.0.1:%d", i+1), nopTransport{})
		require.NotNil(t, c)
		order = append(order, c.id)
		g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
	}
	s := g.Stats()
	require.Equal(t, window, s.PendingAcks, "batches in flight")
	require.Equal(t, clients-window, s.WaitingForWorkers, "clients waiting for a slot")

	next := func() bus.EventBatch {
		t.Helper()
		select {
		case m := <-batches:
			var b bus.EventBatch
			require.NoError(t, bus.UnmarshalBatch(m.Data, &b))
			return b
		case <-time.After(5 * time.Second):
			t.Fatal("no batch came")
			return bus.EventBatch{}
		}
	}
	var seen []string
	for range window {
		seen = append(seen, next().Client)
	}
	for len(seen) < clients {
		// Acknowledge the oldest batch: the next client in line sends.
		b := seen[len(seen)-window]
		require.NoError(t, worker.Publish(g.inbox+b, bus.MarshalAck(&bus.Ack{Client: b, Seq: 1, Status: bus.AckDone})))
		seen = append(seen, next().Client)
		s := g.Stats()
		require.Equal(t, window, s.PendingAcks)
		require.Equal(t, clients-len(seen), s.WaitingForWorkers)
	}
	require.Equal(t, order, seen, "first come first served")
}
