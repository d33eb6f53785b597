package worker_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

func TestTwoGatewaysShareGroupsUIDsAndBroadcasts(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	rec := newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers()})
	gw1 := gatewaytest.Start(t, e, gateway.Config{ID: "one"})
	gw2 := gatewaytest.Start(t, e, gateway.Config{ID: "two"})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()

	p1 := gatewaytest.DialWS(t, gw1, "/", nil)
	id1 := strings.TrimPrefix(p1.Read(wait), "id:")
	p2 := gatewaytest.DialTCP(t, gw2)
	id2 := strings.TrimPrefix(p2.Read(wait), "id:")
	outsider := gatewaytest.DialWS(t, gw2, "/", nil)
	outsider.Read(wait)
	require.True(t, strings.HasPrefix(id1, "one-"), id1)
	require.True(t, strings.HasPrefix(id2, "two-"), id2)

	require.NoError(t, a.JoinGroup(ctx, id1, "room"))
	require.NoError(t, a.JoinGroup(ctx, id2, "room"))
	require.NoError(t, a.SendToGroup(ctx, "room", []byte("to room")))
	require.Equal(t, "to room", p1.Read(wait))
	require.Equal(t, "to room", p2.Read(wait))
	outsider.ExpectSilence(quiet)

	require.NoError(t, a.BindUID(ctx, id1, "alice"))
	require.NoError(t, a.BindUID(ctx, id2, "alice"))
	require.NoError(t, a.SendToUID(ctx, "alice", []byte("to alice")))
	require.Equal(t, "to alice", p1.Read(wait))
	require.Equal(t, "to alice", p2.Read(wait))
	outsider.ExpectSilence(quiet)

	require.NoError(t, a.SendToAll(ctx, []byte("everyone")))
	require.Equal(t, "everyone", p1.Read(wait))
	require.Equal(t, "everyone", p2.Read(wait))
	require.Equal(t, "everyone", outsider.Read(wait))

	ids, err := a.GetClientIDListByGroup(ctx, "room")
	require.NoError(t, err)
	require.Equal(t, []string{id1, id2}, ids)
	gws, err := a.GetGatewayIDs(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"one", "two"}, gws)
	n, err := a.GetAllClientIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// TestPerClientOrderUnderConcurrency: 1,000 messages from each of 50
// clients reach the handlers in order, never two of one client at once,
// while different clients run in parallel on two workers.
func TestPerClientOrderUnderConcurrency(t *testing.T) {
	const clients, perClient = 50, 1000
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	var (
		mu       sync.Mutex
		next     = map[string]int{}
		running  = map[string]bool{}
		faults   []string
		received atomic.Int64
		peak     atomic.Int32
		inFlight atomic.Int32
	)
	h := worker.Handlers{OnMessage: func(_ context.Context, c *worker.Client, e worker.MessageEvent) error {
		if n := inFlight.Add(1); n > peak.Load() {
			peak.Store(n)
		}
		defer inFlight.Add(-1)
		n, err := strconv.Atoi(string(e.Data))
		mu.Lock()
		if running[c.ID()] {
			faults = append(faults, "concurrent handlers for "+c.ID())
		}
		running[c.ID()] = true
		if err != nil || n != next[c.ID()] {
			faults = append(faults, fmt.Sprintf("%s: got %q, want %d", c.ID(), e.Data, next[c.ID()]))
		}
		next[c.ID()] = n + 1
		mu.Unlock()
		time.Sleep(20 * time.Microsecond) // widen the window in which a concurrency bug would show
		mu.Lock()
		running[c.ID()] = false
		mu.Unlock()
		received.Add(1)
		return nil
	}}
	workertest.Start(t, e, worker.Config{Handlers: h})
	workertest.Start(t, e, worker.Config{Handlers: h})
	gw := gatewaytest.Start(t, e, gateway.Config{})

	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		p := gatewaytest.DialWS(t, gw, "/", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perClient; n++ {
				if err := p.Conn.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(n))); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return received.Load() == clients*perClient }, 60*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, faults)
	require.Len(t, next, clients)
	for id, n := range next {
		require.Equal(t, perClient, n, id)
	}
	require.Greater(t, peak.Load(), int32(1), "clients must be handled in parallel")
}

func TestHeartbeatClosesSilentClients(t *testing.T) {
	s := startStack(t, gateway.Config{PingInterval: 50 * time.Millisecond, PingNotResponseLimit: 2, PingData: []byte("ping")})
	silent, idSilent := dial(t, s, "ws")
	alive, idAlive := dial(t, s, "tcp")
	require.Equal(t, "ping", silent.Read(wait))

	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		alive.Send("still here")
		require.Equal(t, "ping", alive.Read(wait))
	}
	require.Equal(t, bus.CloseHeartbeatTimeout, s.rec.waitClose(t, idSilent))
	require.Error(t, silent.(*gatewaytest.WS).Closed(wait))
	on, err := s.api.IsOnline(context.Background(), idAlive)
	require.NoError(t, err)
	require.True(t, on)
}

func TestHeartbeatWithoutLimitKeepsClients(t *testing.T) {
	s := startStack(t, gateway.Config{PingInterval: 30 * time.Millisecond})
	p, id := dial(t, s, "ws")
	ws := p.(*gatewaytest.WS)
	for range 3 {
		p.ExpectSilence(60 * time.Millisecond) // pings are control frames: no data arrives
	}
	require.Positive(t, ws.Pings())
	on, err := s.api.IsOnline(context.Background(), id)
	require.NoError(t, err)
	require.True(t, on)
}

func TestHostileNamesStayApart(t *testing.T) {
	names := []string{"a", "a.b", "a.*", "*", ">", "a b", "", "房间", "~YS5i", "a.>", "b"}
	s := startStack(t, gateway.Config{})
	ctx := context.Background()
	peers := make([]silentPeer, len(names))
	for i, name := range names {
		p, id := dial(t, s, "ws")
		peers[i] = p
		if name == "" {
			require.ErrorIs(t, s.api.JoinGroup(ctx, id, name), api.ErrInvalidName)
			require.ErrorIs(t, s.api.BindUID(ctx, id, name), api.ErrInvalidName)
			continue
		}
		require.NoError(t, s.api.JoinGroup(ctx, id, name))
		require.NoError(t, s.api.BindUID(ctx, id, name))
	}
	for i, name := range names {
		if name == "" {
			continue
		}
		require.NoError(t, s.api.SendToGroup(ctx, name, []byte("group "+name)))
		require.NoError(t, s.api.SendToUID(ctx, name, []byte("uid "+name)))
		// Group and uid pushes travel on different subjects: no order between them.
		require.ElementsMatch(t, []string{"group " + name, "uid " + name}, []string{peers[i].Read(wait), peers[i].Read(wait)})
		for j, other := range peers {
			if j != i {
				other.ExpectSilence(20 * time.Millisecond)
			}
		}
	}
	require.ErrorIs(t, s.api.SendToGroup(ctx, strings.Repeat("x", api.MaxNameLen+1), nil), api.ErrInvalidName)
}

func TestMalformedInputClosesOnlyTheOffender(t *testing.T) {
	s := startStack(t, gateway.Config{MaxMessageSize: 1024})
	bystander, _ := dial(t, s, "ws")

	t.Run("bad UTF-8 in a text frame", func(t *testing.T) {
		p, id := dial(t, s, "ws")
		ws := p.(*gatewaytest.WS)
		require.NoError(t, ws.Conn.WriteMessage(websocket.TextMessage, []byte{0xff, 0xfe, 'x'}))
		require.Error(t, ws.Closed(wait))
		require.Equal(t, bus.CloseProtocolError, s.rec.waitClose(t, id))
	})
	t.Run("binary frames are data", func(t *testing.T) {
		p, _ := dial(t, s, "ws")
		ws := p.(*gatewaytest.WS)
		require.NoError(t, ws.Conn.WriteMessage(websocket.BinaryMessage, []byte("echo:\xff\x00")))
		msg, binary, err := ws.TryReadMessage(wait)
		require.NoError(t, err)
		require.Equal(t, "echo:\xff\x00", msg)
		require.True(t, binary, "a push that is not UTF-8 goes out as a binary frame")

		ws.Send("echo:text")
		msg, binary, err = ws.TryReadMessage(wait)
		require.NoError(t, err)
		require.Equal(t, "echo:text", msg)
		require.False(t, binary, "a UTF-8 push goes out as a text frame")
	})
	t.Run("oversized WebSocket frame", func(t *testing.T) {
		p, id := dial(t, s, "ws")
		ws := p.(*gatewaytest.WS)
		require.NoError(t, ws.Conn.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 2048))))
		require.Error(t, ws.Closed(wait))
		require.Equal(t, bus.CloseMessageTooLarge, s.rec.waitClose(t, id))
	})
	t.Run("oversized TCP line", func(t *testing.T) {
		p, id := dial(t, s, "tcp")
		tcp := p.(*gatewaytest.TCP)
		_, err := tcp.Conn.Write([]byte(strings.Repeat("y", 4096)))
		require.NoError(t, err)
		require.Error(t, tcp.Closed(wait))
		require.Equal(t, bus.CloseMessageTooLarge, s.rec.waitClose(t, id))
	})
	t.Run("binary garbage on the TCP port", func(t *testing.T) {
		p, _ := dial(t, s, "tcp")
		tcp := p.(*gatewaytest.TCP)
		_, err := tcp.Conn.Write([]byte("\x00\x01\x02\xff\r\nGET / HTTP/1.1\r\n\r\necho:ok\n"))
		require.NoError(t, err)
		require.Equal(t, "echo:ok", p.Read(wait))
	})
	t.Run("a line split across many writes", func(t *testing.T) {
		p, _ := dial(t, s, "tcp")
		tcp := p.(*gatewaytest.TCP)
		for _, b := range []byte("echo:split\necho:second\n") {
			_, err := tcp.Conn.Write([]byte{b})
			require.NoError(t, err)
		}
		require.Equal(t, "echo:split", p.Read(wait))
		require.Equal(t, "echo:second", p.Read(wait))
	})
	t.Run("a non-WebSocket request on the WebSocket port", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.gw.WebSocketAddr())
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("\x16\x03\x01garbage\r\n\r\n"))
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		require.NotContains(t, string(buf[:n]), "101 Switching Protocols")
	})
	bystander.Send("echo:unharmed")
	require.Equal(t, "echo:unharmed", bystander.Read(wait))
}

func TestOriginCheck(t *testing.T) {
	s := startStack(t, gateway.Config{AllowedOrigins: []string{"http://good.example"}})
	_, err := gatewaytest.TryDialWS(s.gw, "/", map[string][]string{"Origin": {"http://evil.example"}})
	require.ErrorContains(t, err, "bad handshake")
	p := gatewaytest.DialWS(t, s.gw, "/", map[string][]string{"Origin": {"http://good.example"}})
	require.True(t, strings.HasPrefix(p.Read(wait), "id:"))
}

// TestEventsWaitForAWorker: with no worker running, client events are kept
// (not dropped, and the client not closed) until a worker starts.
func TestEventsWaitForAWorker(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	gw := gatewaytest.Start(t, e, gateway.Config{NoWorkerRetry: 20 * time.Millisecond})
	p := gatewaytest.DialWS(t, gw, "/", nil)
	p.Send("echo:early")
	p.ExpectSilence(100 * time.Millisecond)

	rec := newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers()})
	require.True(t, strings.HasPrefix(p.Read(wait), "id:"))
	require.Equal(t, "echo:early", p.Read(wait))
}

// TestSlowHandlerIsNotRedelivered: a handler slower than the gateway's ack
// timeout keeps its batch, thanks to progress reports.
func TestSlowHandlerIsNotRedelivered(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	var calls atomic.Int32
	h := worker.Handlers{OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
		calls.Add(1)
		time.Sleep(1200 * time.Millisecond)
		return c.SendToCurrentClient(ctx, e.Data)
	}}
	workertest.Start(t, e, worker.Config{Handlers: h})
	workertest.Start(t, e, worker.Config{Handlers: h})
	gw := gatewaytest.Start(t, e, gateway.Config{AckTimeout: 600 * time.Millisecond})
	p := gatewaytest.DialWS(t, gw, "/", nil)
	p.Send("slow")
	require.Equal(t, "slow", p.Read(wait))
	p.ExpectSilence(300 * time.Millisecond)
	require.EqualValues(t, 1, calls.Load())
}

// TestWorkerStopDrains: stopping a worker while a handler runs lets the
// handler finish and its batch be acknowledged; nothing is lost.
func TestWorkerStopDrains(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	started := make(chan struct{}, 1)
	var handled atomic.Int32
	slow := worker.Handlers{OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		handled.Add(1)
		return c.SendToCurrentClient(ctx, e.Data)
	}}
	_, stop := workertest.Start(t, e, worker.Config{Handlers: slow})
	gw := gatewaytest.Start(t, e, gateway.Config{})
	p := gatewaytest.DialWS(t, gw, "/", nil)
	p.Send("m1")
	<-started
	stop()
	require.EqualValues(t, 1, handled.Load())
	require.Equal(t, "m1", p.Read(wait))

	p.Send("m2") // no worker now: it waits
	p.ExpectSilence(100 * time.Millisecond)
	workertest.Start(t, e, worker.Config{Handlers: slow})
	<-started
	require.Equal(t, "m2", p.Read(wait))
	require.EqualValues(t, 2, handled.Load())
}

// TestNATSOutage: a NATS blip shorter than NATSLossTimeout is invisible to
// clients (their messages wait and arrive); a longer loss makes the gateway
// close its clients, and workers get their close events once NATS is back.
func TestNATSOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	startNATS := func() *bus.Embedded {
		t.Helper()
		var e *bus.Embedded
		require.Eventually(t, func() bool {
			e, err = bus.StartEmbedded(bus.EmbeddedConfig{Port: port})
			return err == nil
		}, wait, 20*time.Millisecond)
		return e
	}
	e := startNATS()
	defer func() { e.Shutdown() }()
	fast := bus.Config{ReconnectWait: 20 * time.Millisecond}
	rec := newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers(), Bus: bustest.Connect(t, e, fast)})
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: bustest.Connect(t, e, fast), NATSLossTimeout: 2500 * time.Millisecond})
	p := gatewaytest.DialWS(t, gw, "/", nil)
	id := strings.TrimPrefix(p.Read(wait), "id:")

	e.Shutdown() // a blip
	for i := range 5 {
		p.Send(fmt.Sprint("echo:during-", i))
	}
	e = startNATS()
	for i := range 5 {
		require.Equal(t, fmt.Sprint("echo:during-", i), p.Read(wait), "nothing lost in a blip")
	}

	e.Shutdown() // an outage
	require.Error(t, p.Closed(wait), "the gateway closes its clients")
	e = startNATS()
	require.Equal(t, bus.CloseGatewayLost, rec.waitClose(t, id))
}

// TestSlowHandlerDoesNotHoldUpOtherClients: batches run on one goroutine
// while that keeps up, but a batch that waits behind a slow handler gets a
// goroutine of its own, up to MaxConcurrency.
func TestSlowHandlerDoesNotHoldUpOtherClients(t *testing.T) {
	for _, tc := range []struct {
		name           string
		maxConcurrency int
		bWaitsForA     bool
	}{
		{"default MaxConcurrency", 0, false},
		{"MaxConcurrency 1", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := bustest.RunServer(t, bus.EmbeddedConfig{})
			started, release := make(chan struct{}, 1), make(chan struct{})
			h := worker.Handlers{OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
				if string(e.Data) == "slow" {
					started <- struct{}{}
					<-release
				}
				return c.SendToCurrentClient(ctx, e.Data)
			}}
			workertest.Start(t, e, worker.Config{Handlers: h, MaxConcurrency: tc.maxConcurrency})
			gw := gatewaytest.Start(t, e, gateway.Config{})
			a := gatewaytest.DialWS(t, gw, "/", nil)
			b := gatewaytest.DialWS(t, gw, "/", nil)
			a.Send("slow")
			<-started
			b.Send("quick")
			if tc.bWaitsForA {
				b.ExpectSilence(300 * time.Millisecond)
				close(release)
				require.Equal(t, "slow", a.Read(wait))
				require.Equal(t, "quick", b.Read(wait))
				return
			}
			require.Equal(t, "quick", b.Read(wait), "b's batch must not wait for a's handler")
			close(release)
			require.Equal(t, "slow", a.Read(wait))
		})
	}
}

// TestWaitingBatchesAreClaimedNotResent: 60 clients connect to a worker
// that runs one 40 ms OnConnect at a time, so the last ones wait ~2.4 s,
// more than twice AckTimeout. The worker claims the batches that wait and
// reports them, so the gateway sends none of them again (before: every
// batch waiting past AckTimeout was resent each second, and at 100,000
// connections the copies overflowed the worker), and each OnConnect runs
// once.
func TestWaitingBatchesAreClaimedNotResent(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	var mu sync.Mutex
	connects := map[string]int{}
	h := worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			time.Sleep(40 * time.Millisecond)
			mu.Lock()
			connects[c.ID()]++
			mu.Unlock()
			return c.SendToCurrentClient(ctx, []byte("hi"))
		},
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
	}
	workertest.Start(t, e, worker.Config{Handlers: h, MaxConcurrency: 1})
	gw := gatewaytest.Start(t, e, gateway.Config{})
	const clients = 60
	var peers []*gatewaytest.WS
	for range clients {
		peers = append(peers, gatewaytest.DialWS(t, gw, "/", nil))
	}
	for _, p := range peers {
		require.Equal(t, "hi", p.Read(10*time.Second))
	}
	time.Sleep(1500 * time.Millisecond) // past AckTimeout: a copy would run now
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, connects, clients)
	for id, n := range connects {
		require.Equal(t, 1, n, "OnConnect runs of %s", id)
	}
	// None is sent again unless the machine stalls for a second (40 of
	// 60 were before the fix).
	require.Less(t, gw.Stats().Resends, uint64(clients/10), "batches sent again")
}
