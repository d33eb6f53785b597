package gateway

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// recorder is a transport that records what is sent, one message at a time.
type recorder struct {
	nopTransport
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) send(data []byte, _ bool) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(data))
	r.mu.Unlock()
	return nil
}

func (r *recorder) appendFrame(dst, _ []byte, _ bool) ([]byte, bool) { return dst, false }

func (r *recorder) sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// TestLiveGapIsReadFromTheStream: a live push whose previous sequence is
// not the last one delivered makes the gateway read the missing ones from
// the stream and deliver them first, in order; repeats are dropped.
func TestLiveGapIsReadFromTheStream(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	b := bustest.Connect(t, e, bus.Config{})
	g, err := New(Config{Bus: b, WebSocketAddr: "127.0.0.1:0", Logger: bustest.Logger(t),
		History: &bus.HistoryConfig{Storage: bus.StorageMemory}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-g.Ready()
	require.True(t, g.hist.on)

	room := bus.Channel{Name: "room"}
	stored := map[uint64][]byte{}
	for i := 1; i <= 5; i++ {
		data := bus.MarshalCommand(&bus.Command{Op: bus.OpSend, Body: fmt.Appendf(nil, "m%d", i)})
		seq, err := b.PublishRecoverable(ctx, g.subj, room.Stored(g.subj), data)
		require.NoError(t, err)
		stored[seq] = data
	}
	tr := &recorder{}
	c := g.newClient("127.0.0.1:1", tr)
	require.Equal(t, bus.ReplyOK, g.execOne(c, bus.Command{Op: bus.OpJoinGroup, Name: "room"}).Code)

	// As if m1 came live and m2-m4 were lost on the way (a reconnect).
	ls := &liveSub{ch: room, last: 1}
	g.onLive(ls, bus.HistoryMsg{Seq: 5, Prev: 4, Data: stored[5]})
	require.Eventually(t, func() bool { return len(tr.sent()) == 4 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"m2", "m3", "m4", "m5"}, tr.sent())
	require.Eventually(t, func() bool { ls.mu.Lock(); defer ls.mu.Unlock(); return !ls.repairing }, 5*time.Second, 5*time.Millisecond)
	g.onLive(ls, bus.HistoryMsg{Seq: 4, Prev: 3, Data: stored[4]}) // a repeat
	g.onLive(ls, bus.HistoryMsg{Seq: 6, Prev: 5, Data: bus.MarshalCommand(&bus.Command{Op: bus.OpSend, Body: []byte("m6")})})
	require.Eventually(t, func() bool { return len(tr.sent()) == 5 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "m6", tr.sent()[4])
	require.EqualValues(t, 1, g.Stats().HistoryGaps)
	require.Zero(t, g.Stats().HistoryGapsLost)
}

// TestKeptPushesOverflow: past maxKeptBytes kept pushes are dropped and
// the overflow is reported, so the reader reads the stream again.
func TestKeptPushesOverflow(t *testing.T) {
	var k keptPushes
	big := make([]byte, maxKeptBytes/2+1)
	k.add(bus.HistoryMsg{Seq: 1, Data: big})
	k.add(bus.HistoryMsg{Seq: 2, Data: big})
	k.add(bus.HistoryMsg{Seq: 3, Data: []byte("x")})
	msgs, overflow := k.take()
	require.True(t, overflow)
	require.Empty(t, msgs)
	k.add(bus.HistoryMsg{Seq: 4, Data: []byte("y")})
	msgs, overflow = k.take()
	require.False(t, overflow)
	require.Len(t, msgs, 1)
}

func TestFrames(t *testing.T) {
	p := bus.Position{Epoch: "mjx3k2", Seq: 1461}
	require.Equal(t, `{"gw":"pos","ch":"g:room-1","pos":"mjx3k2:1461"}`, string(posFrame(bus.Channel{Name: "room-1"}, p)))
	require.Equal(t, `{"gw":"pos","ch":"u:a\"b","pos":"mjx3k2:1461"}`, string(posFrame(bus.Channel{UID: true, Name: `a"b`}, p)))
	require.Equal(t, `{"gw":"recovered","ch":"g:r","complete":true,"pos":"mjx3k2:1461"}`, string(recoveredFrame(bus.Channel{Name: "r"}, true, &p)))
	require.Equal(t, `{"gw":"recovered","ch":"g:r","complete":false}`, string(recoveredFrame(bus.Channel{Name: "r"}, false, nil)))
}
