package gateway

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// closeCounter is a transport that counts closes.
type closeCounter struct {
	nopTransport
	closes atomic.Int32
}

func (t *closeCounter) close([]byte, bus.CloseReason) { t.closes.Add(1) }

// TestQueuedEventThatCannotFitIsDroppedAlone: a message queued behind a
// batch in flight that cannot fit a NATS message is dropped, alone: the
// events queued with it go in the next batch, numbered without a gap, and
// the client is closed as message too large.
func TestQueuedEventThatCannotFitIsDroppedAlone(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 8 << 10})
	g, err := New(Config{
		Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0", MaxMessageSize: 4 << 10,
		Logger: bustest.Logger(t),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-g.Ready()

	tr := &closeCounter{}
	c := g.newClient("127.0.0.1:1", tr)
	require.NotNil(t, c)
	// Before Run stops (cleanups run last first): no worker would
	// acknowledge c's close, and Run would wait DrainTimeout (5 s) for it.
	t.Cleanup(func() { g.reg.remove(c) })
	g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
	g.pushEvent(c, bus.Event{Kind: bus.EventMessage, Body: bytes.Repeat([]byte("b"), 8<<10)})
	g.pushEvent(c, bus.Event{Kind: bus.EventMessage, Body: []byte("small")})
	require.Zero(t, tr.closes.Load(), "queued behind the connect batch: not checked yet")

	ack, err := bus.Marshal(&bus.Ack{Client: c.id, Seq: 1, Status: bus.AckDone})
	require.NoError(t, err)
	g.onAck(bus.Msg{Subject: c.reply, Data: ack})

	require.Equal(t, int32(1), tr.closes.Load())
	require.Equal(t, bus.CloseMessageTooLarge, c.closeReason())
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, uint64(2), c.seq, "no sequence number is spent on the dropped event")
	var batch bus.EventBatch
	require.NoError(t, bus.UnmarshalBatch(c.inflight, &batch))
	require.Len(t, batch.Events, 1)
	require.Equal(t, "small", string(batch.Events[0].Body))
	require.Empty(t, c.queue)
	require.Zero(t, c.queued)
}
