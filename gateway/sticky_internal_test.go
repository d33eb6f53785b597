package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestStickyAckRoutesNextBatch: an AckDone that names a sticky worker
// sends the client's next batch to that worker's subject; one without a
// worker, or with a name that is not a plain token, sends it to the queue
// group; a sticky worker nobody listens for ("no responders") sends the
// batch to the queue group, marked resent.
func TestStickyAckRoutesNextBatch(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	g, err := New(Config{Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0", Logger: bustest.Logger(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-g.Ready()

	// A stand-in for the workers: it records where each batch arrived.
	wb := bustest.Connect(t, e, bus.Config{})
	type arrival struct {
		subject string
		batch   bus.EventBatch
	}
	arrivals := make(chan arrival, 16)
	record := func(m bus.Msg) {
		var b bus.EventBatch
		require.NoError(t, bus.UnmarshalBatch(m.Data, &b))
		arrivals <- arrival{m.Subject, b}
	}
	for _, s := range []string{"gw.ev", "gw.ev.w1"} {
		_, err := wb.Subscribe(s, record)
		require.NoError(t, err)
	}
	require.NoError(t, wb.Flush(ctx))
	next := func() arrival {
		t.Helper()
		select {
		case a := <-arrivals:
			return a
		case <-time.After(5 * time.Second):
			t.Fatal("no batch arrived")
			return arrival{}
		}
	}

	c := g.newClient("127.0.0.1:1", &closeCounter{})
	require.NotNil(t, c)
	ack := func(seq uint64, worker string) {
		g.onAck(bus.Msg{Subject: c.reply, Data: bus.MarshalAck(&bus.Ack{Client: c.id, Seq: seq, Status: bus.AckDone, Worker: worker})})
	}
	g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
	a := next()
	require.Equal(t, "gw.ev", a.subject, "a first batch goes to the queue group")

	steps := []struct {
		worker, want string
	}{
		{"w1", "gw.ev.w1"}, // named: to its subject
		{"w1", "gw.ev.w1"}, // still
		{"", "gw.ev"},      // a worker that is not sticky took it
		{"w1", "gw.ev.w1"}, // sticky again
		{"a.b", "gw.ev"},   // not a plain token: ignored
		{"w*", "gw.ev"},    // a wildcard: ignored
		{"w2", "gw.ev"},    // nobody listens on gw.ev.w2: no responders, then the queue group
		{"w1", "gw.ev.w1"}, //
		{"w1", "gw.ev.w1"}, //
	}
	for i, st := range steps {
		ack(a.batch.Seq, st.worker)
		g.pushEvent(c, bus.Event{Kind: bus.EventMessage, Body: []byte{byte('a' + i)}})
		a = next()
		require.Equal(t, st.want, a.subject, "after an ack naming %q", st.worker)
		require.Equal(t, uint64(i+2), a.batch.Seq)
		require.Equal(t, st.worker == "w2", a.batch.Resent, "only the batch that found no responders is sent again")
	}
	select {
	case a := <-arrivals:
		t.Fatalf("a batch arrived twice: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
}
