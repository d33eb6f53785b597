package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// inProcess connects to e through memory, as `gatewayworker run` connects
// its gateway and worker.
func inProcess(t *testing.T, e *bus.Embedded) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{InProcess: e, Token: "t", Logger: bustest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// handingOver waits until c's messages are handed over (the first ones,
// and those after another client left, go through the server while a
// fence makes sure none of them is still on its way), and returns how
// many were.
func handingOver(t *testing.T, e *bus.Embedded, c *bus.Conn) uint64 {
	t.Helper()
	got, sub := collect(t, c, "gw.warm")
	defer func() { require.NoError(t, sub.Unsubscribe()) }()
	before := e.HandedOver()
	require.Eventually(t, func() bool {
		require.NoError(t, c.Publish("gw.warm", nil))
		receive(t, got)
		return e.HandedOver() > before
	}, 5*time.Second, 5*time.Millisecond)
	return e.HandedOver()
}

// collect subscribes h's messages into a channel.
func collect(t *testing.T, c *bus.Conn, subject string) (<-chan bus.Msg, *bus.Subscription) {
	t.Helper()
	got := make(chan bus.Msg, 1000)
	sub, err := c.Subscribe(subject, func(m bus.Msg) { got <- m })
	require.NoError(t, err)
	require.NoError(t, c.Flush(t.Context()))
	return got, sub
}

func receive(t *testing.T, got <-chan bus.Msg) bus.Msg {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return bus.Msg{}
	}
}

func silent(t *testing.T, got <-chan bus.Msg) {
	t.Helper()
	select {
	case m := <-got:
		t.Fatalf("unexpected message on %s: %q", m.Subject, m.Data)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestInProcessHandsOverWhatOnlyThisProcessHears: between in-process
// connections, a message whose every subscriber is one of them is
// delivered in memory, to handlers, buffers, a queue group's one member
// and "<prefix>*" subscriptions alike, with its reply subject and a copy of
// its data.
func TestInProcessHandsOverWhatOnlyThisProcessHears(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	pub, sub := inProcess(t, e), inProcess(t, e)

	plain, _ := collect(t, sub, "gw.x.cmd")
	base := handingOver(t, e, pub)
	data := []byte("push")
	require.NoError(t, pub.PublishRequest("gw.x.cmd", "gw.reply", data))
	data[0] = 'X' // the receiver owns what it got
	m := receive(t, plain)
	require.Equal(t, bus.Msg{Subject: "gw.x.cmd", Reply: "gw.reply", Data: []byte("push")}, m)
	require.Equal(t, base+1, e.HandedOver())

	acks, _ := collect(t, sub, "_INBOX.gw.gateway.abc.*")
	require.NoError(t, pub.Publish("_INBOX.gw.gateway.abc.client-7", []byte("ack")))
	require.Equal(t, "_INBOX.gw.gateway.abc.client-7", receive(t, acks).Subject)
	require.Equal(t, base+2, e.HandedOver())

	// A queue group of two members here: each message reaches one of them.
	var members [2]*bus.Buffered
	for i := range members {
		b, err := inProcess(t, e).QueueSubscribeBuffered("gw.ev", "workers", 100)
		require.NoError(t, err)
		members[i] = b
	}
	require.NoError(t, pub.Flush(t.Context()))
	for i := range 10 {
		require.NoError(t, pub.PublishRequest("gw.ev", "gw.inbox."+strconv.Itoa(i), []byte{byte(i)}))
	}
	seen := map[byte]int{}
	for _, b := range members {
		for {
			m, ok := b.TryNext()
			if !ok {
				break
			}
			seen[m.Data[0]]++
		}
	}
	require.Len(t, seen, 10)
	for i, n := range seen {
		require.Equal(t, 1, n, "message %d", i)
	}
	require.Equal(t, base+12, e.HandedOver())

	// Buffers shared by subscriptions (the gateway's groups).
	shared := bus.NewBuffer(10)
	_, err := sub.SubscribeInto(shared, "gw.grp.a")
	require.NoError(t, err)
	require.NoError(t, sub.Flush(t.Context()))
	require.NoError(t, pub.Publish("gw.grp.a", []byte("to a")))
	g, ok := shared.TryNext()
	require.True(t, ok, "handed over before Publish returned")
	require.Equal(t, "to a", string(g.Data))
}

// TestInProcessGoesThroughTheServerWhenOthersListen: while any other
// client is connected (another process), or a subscription here has a
// wildcard that is not mirrored, messages go through the server, and
// every subscriber gets what it would get without in-memory hand-over.
func TestInProcessGoesThroughTheServerWhenOthersListen(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	pub, sub := inProcess(t, e), inProcess(t, e)
	mine, _ := collect(t, sub, "gw.x.cmd")
	base := handingOver(t, e, pub)

	remote := bustest.Connect(t, e, bus.Config{Token: "t"})
	theirs, _ := collect(t, remote, "gw.x.cmd")
	require.NoError(t, pub.Publish("gw.x.cmd", []byte("1")))
	require.Equal(t, "1", string(receive(t, mine).Data))
	require.Equal(t, "1", string(receive(t, theirs).Data))

	// A queue group with a member in another process: NATS chooses, and
	// both members get some.
	local, err := sub.QueueSubscribeBuffered("gw.ev", "workers", 1000)
	require.NoError(t, err)
	far, err := remote.QueueSubscribeBuffered("gw.ev", "workers", 1000)
	require.NoError(t, err)
	require.NoError(t, sub.Flush(t.Context()))
	require.NoError(t, remote.Flush(t.Context()))
	for i := range 200 {
		require.NoError(t, pub.Publish("gw.ev", []byte(strconv.Itoa(i))))
	}
	require.NoError(t, pub.Flush(t.Context()))
	require.Eventually(t, func() bool { return local.Waiting()+far.Waiting() == 200 }, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, local.Waiting())
	require.Positive(t, far.Waiting())
	require.Equal(t, base, e.HandedOver(), "nothing was handed over while another client was connected")

	// Gone: hand-over resumes.
	remote.Close()
	base = handingOver(t, e, pub)
	require.NoError(t, pub.Publish("gw.x.cmd", []byte("2")))
	require.Equal(t, "2", string(receive(t, mine).Data))
	require.Equal(t, base+1, e.HandedOver())

	// A wildcard this package does not mirror, even in this process.
	all, _ := collect(t, sub, "gw.>")
	require.NoError(t, pub.Publish("gw.x.cmd", []byte("3")))
	require.Equal(t, "3", string(receive(t, mine).Data))
	require.Equal(t, "3", string(receive(t, all).Data))
	require.Equal(t, base+1, e.HandedOver())
}

// TestInProcessStopsAtUnsubscribeAndClose: nothing is handed to a
// subscription that ended, or to one of a closed connection; with nobody
// left, a message is the server's to drop, and a request gets "no
// responders".
func TestInProcessStopsAtUnsubscribeAndClose(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	pub, sub := inProcess(t, e), inProcess(t, e)
	got, s := collect(t, sub, "gw.x.cmd")
	require.NoError(t, s.Unsubscribe())
	require.NoError(t, sub.Flush(t.Context()))
	require.NoError(t, pub.Publish("gw.x.cmd", []byte("late")))
	silent(t, got)

	other := inProcess(t, e)
	got2, _ := collect(t, other, "gw.y.cmd")
	_, draining := collect(t, other, "gw.z.cmd")
	require.NoError(t, draining.Drain())
	other.Close() // ends the draining subscription's goroutine too (goleak checks)
	require.NoError(t, pub.Publish("gw.y.cmd", []byte("late")))
	silent(t, got2)

	replies, _ := collect(t, pub, "gw.replies.*")
	require.NoError(t, pub.PublishRequest("gw.x.cmd", "gw.replies.1", nil))
	require.True(t, receive(t, replies).NoResponders)

	_, err := pub.Request(t.Context(), "gw.x.cmd", nil)
	require.ErrorIs(t, err, bus.ErrNoResponders)
	require.ErrorIs(t, pub.Publish("gw.big", make([]byte, 2<<20)), bus.ErrMaxPayload)
}

// TestInProcessKeepsEachPublishersOrderAcrossClients: a handler fed in
// memory and through the server, as other clients come and go (each one
// turns hand-over off, and its leaving turns it on again behind a fence),
// still runs one message at a time, and each publisher's messages in the
// order they were sent: none handed over overtakes one still on its way
// through the server.
func TestInProcessKeepsEachPublishersOrderAcrossClients(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	sub := inProcess(t, e)
	const perPublisher = 20_000
	var inside, overlaps atomic.Int32
	last := map[string]int{}
	var disorder []string
	var count atomic.Int64
	_, err := sub.Subscribe("gw.x.cmd", func(m bus.Msg) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		var who string
		var n int
		_, _ = fmt.Sscanf(string(m.Data), "%s %d", &who, &n)
		if n != last[who]+1 && len(disorder) < 10 {
			disorder = append(disorder, fmt.Sprintf("%s: %d after %d", who, n, last[who]))
		}
		last[who] = n
		inside.Add(-1)
		count.Add(1)
	})
	require.NoError(t, err)
	require.NoError(t, sub.Flush(t.Context()))
	before := handingOver(t, e, sub)

	// Each publisher sends at least perPublisher messages, and goes on
	// until the test has seen what it waits for: some through the server,
	// some handed over.
	first := bustest.Connect(t, e, bus.Config{Token: "t"}) // through the server while it is connected
	var sent [2]atomic.Int64
	enough := make(chan struct{})
	var wg sync.WaitGroup
	for i := range sent {
		p := inProcess(t, e)
		wg.Go(func() {
			for n := 1; ; n++ {
				if n > perPublisher {
					select {
					case <-enough:
						return
					default:
					}
				}
				if err := p.Publish("gw.x.cmd", fmt.Appendf(nil, "p%d %d", i, n)); err != nil {
					t.Error(err)
					return
				}
				sent[i].Store(int64(n))
				if n%100 == 0 {
					time.Sleep(100 * time.Microsecond) // let clients come and go meanwhile
				}
			}
		})
	}
	sentAtLeast := func(n int64) func() bool {
		return func() bool { return sent[0].Load() >= n && sent[1].Load() >= n }
	}
	require.Eventually(t, sentAtLeast(100), 10*time.Second, time.Millisecond)
	first.Close()

	stop := make(chan struct{})
	var visits sync.WaitGroup
	visits.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			other := bustest.Connect(t, e, bus.Config{Token: "t"})
			time.Sleep(2 * time.Millisecond)
			other.Close()
			time.Sleep(3 * time.Millisecond)
		}
	})
	require.Eventually(t, sentAtLeast(perPublisher), 20*time.Second, time.Millisecond)
	close(stop)
	visits.Wait()
	// The last visitor left: hand-over resumes behind a fence.
	require.Eventually(t, func() bool { return e.HandedOver() > before }, 10*time.Second, time.Millisecond, "hand-over resumed")
	close(enough)
	wg.Wait()

	total := sent[0].Load() + sent[1].Load()
	require.Eventually(t, func() bool { return count.Load() == total }, 20*time.Second, time.Millisecond, "handled all %d", total)
	require.Zero(t, overlaps.Load(), "the handler ran two messages at once")
	require.Empty(t, disorder)
	handed := e.HandedOver() - before
	t.Logf("handed over %d of %d", handed, total)
	require.Less(t, handed, uint64(total), "some went through the server")
}

// held subscribes a handler that waits for release before it counts a
// message, and waits until pub's messages are handed over.
func held(t *testing.T, e *bus.Embedded, sub, pub *bus.Conn, subject string) (s *bus.Subscription, release chan struct{}, handled *atomic.Int64, base uint64) {
	t.Helper()
	release, handled = make(chan struct{}), new(atomic.Int64)
	s, err := sub.Subscribe(subject, func(bus.Msg) {
		<-release
		handled.Add(1)
	})
	require.NoError(t, err)
	require.NoError(t, sub.Flush(t.Context()))
	return s, release, handled, handingOver(t, e, pub)
}

// TestInProcessDrainHandlesWhatWasHandedOver: a drained subscription
// handles the messages already handed to it before it reports drained,
// and none is handed to it after Drain.
func TestInProcessDrainHandlesWhatWasHandedOver(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	pub, sub := inProcess(t, e), inProcess(t, e)
	s, release, handled, base := held(t, e, sub, pub, "gw.x.cmd")
	for range 5 {
		require.NoError(t, pub.Publish("gw.x.cmd", nil))
	}
	require.Equal(t, base+5, e.HandedOver())
	require.NoError(t, s.Drain())
	require.False(t, s.Drained(), "messages wait")
	// Not handed over: it goes through the server, which may route it here
	// before it hears of the drain, as to any draining subscription.
	require.NoError(t, pub.Publish("gw.x.cmd", nil))
	require.Equal(t, base+5, e.HandedOver())
	close(release)
	require.Eventually(t, s.Drained, 5*time.Second, 5*time.Millisecond)
	require.Contains(t, []int64{5, 6}, handled.Load())
}

// TestInProcessFloodEndsInACountedDrop: a handler that stops keeping up
// lets at most PendingMsgs messages wait, in memory as in nats.go; the
// rest is dropped and counted once.
func TestInProcessFloodEndsInACountedDrop(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	pub, sub := inProcess(t, e), inProcess(t, e)
	_, release, handled, _ := held(t, e, sub, pub, "flood")
	const flood = bus.PendingMsgs + 20_000
	for range flood {
		require.NoError(t, pub.Publish("flood", []byte("x")))
	}
	require.EqualValues(t, 1, sub.SlowConsumers())
	close(release)
	require.Eventually(t, func() bool { return handled.Load() >= bus.PendingMsgs }, 10*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, handled.Load(), int64(bus.PendingMsgs+1), "at most PendingMsgs waited (plus the one in the handler)")
}

// TestPublishCommandKeepsNothingItGave: PublishCommand encodes into a
// buffer it uses again for the next push; every message a subscriber
// holds must still be the one sent, in memory and through the server.
func TestPublishCommandKeepsNothingItGave(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "t"})
	for _, path := range []string{"in memory", "through the server"} {
		t.Run(path, func(t *testing.T) {
			pub := inProcess(t, e)
			sub := inProcess(t, e)
			if path == "through the server" {
				pub = bustest.Connect(t, e, bus.Config{Token: "t"})
			}
			held := bus.NewBuffer(200)
			_, err := sub.SubscribeInto(held, "gw.x.cmd")
			require.NoError(t, err)
			require.NoError(t, sub.Flush(t.Context()))
			if path == "in memory" {
				handingOver(t, e, pub)
			}
			for i := range 100 {
				cmd := bus.Command{Op: bus.OpSend, Clients: []string{"c" + strconv.Itoa(i)}, Body: []byte(strings.Repeat(strconv.Itoa(i), i+1))}
				require.NoError(t, pub.PublishCommand("gw.x.cmd", &cmd))
			}
			for i := range 100 {
				var m bus.Msg
				require.Eventually(t, func() bool {
					var ok bool
					m, ok = held.TryNext()
					return ok
				}, 5*time.Second, time.Millisecond, "message %d", i)
				var cmd bus.Command
				require.NoError(t, bus.UnmarshalCommand(m.Data, &cmd))
				require.Equal(t, []string{"c" + strconv.Itoa(i)}, cmd.Clients)
				require.Equal(t, strings.Repeat(strconv.Itoa(i), i+1), string(cmd.Body))
			}
		})
	}
}
