package gateway

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// BenchmarkForwardPath is one client message through the gateway's
// forward path: onInput encodes the event batch and publishes it on a real
// NATS connection, then onAck decodes a worker's ack, which frees the
// client for its next message. The acks are encoded before the clock
// starts, as a worker would have, and a subscriber stands in for the
// worker queue (without one, NATS answers every batch "no responders").
// -benchmem counts every allocation in the process: the embedded NATS
// server's and the subscriber's delivery (nats.go copies each message)
// included, so allocs/op bounds the gateway's from above.
func BenchmarkForwardPath(b *testing.B) {
	e := bustest.RunServer(b, bus.EmbeddedConfig{})
	g := runWithClients(b, e, "fw", 1)
	clients := g.reg.liveClients(nil)
	require.Len(b, clients, 1)
	c := clients[0]
	msg := bytes.Repeat([]byte("x"), 64)
	acks := make([][]byte, b.N)
	for i := range acks {
		var err error
		acks[i], err = bus.Marshal(&bus.Ack{Client: c.id, Seq: c.seq + uint64(i) + 1, Status: bus.AckDone})
		require.NoError(b, err)
	}
	sink := bustest.Connect(b, e, bus.Config{})
	_, err := sink.Subscribe(g.subj.Events(), func(bus.Msg) {})
	require.NoError(b, err)
	require.NoError(b, sink.Flush(b.Context()))
	subject := g.inbox + c.id
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if !g.onInput(c, msg) {
			b.Fatal("client refused")
		}
		g.onAck(bus.Msg{Subject: subject, Data: acks[i]})
	}
	b.StopTimer()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Nil(b, c.inflight, "every batch acknowledged")
	require.Empty(b, c.queue)
}
