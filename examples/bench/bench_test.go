package bench_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/examples/bench"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestMain checks for leaked goroutines. IgnoreCurrent skips the task pools
// of nbio's websocket.DefaultEngine, which that package starts in a
// package-level var.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

const (
	wait  = 5 * time.Second
	quiet = 200 * time.Millisecond
)

// startStack runs one embedded NATS, one gateway and one bench worker.
func startStack(t *testing.T) *gateway.Gateway {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: bench.Handlers()})
	return gatewaytest.Start(t, e, gateway.Config{})
}

// dial connects a client and checks, with an echo, that the worker hears it.
func dial(t *testing.T, g *gateway.Gateway) *gatewaytest.WS {
	t.Helper()
	c := gatewaytest.DialWS(t, g, "/", nil)
	c.Send("hello")
	require.Equal(t, "hello", c.Read(wait))
	return c
}

func TestProtocol(t *testing.T) {
	g := startStack(t)

	t.Run("echo", func(t *testing.T) {
		c := dial(t, g)
		for _, msg := range []string{"x", "x:y:z", "héllo: 世界 🌍", "A:upper", "ab:c", "g:no-second-colon", strings.Repeat("é:", 10_000)} {
			c.Send(msg)
			require.Equal(t, msg, c.Read(wait))
		}
		// Bytes that are not UTF-8 come back as they went (the gateway
		// sends them in a binary frame).
		raw := []byte{0xff, 0xfe, ':', 0x00}
		require.NoError(t, c.Conn.WriteMessage(websocket.BinaryMessage, raw))
		require.Equal(t, string(raw), c.Read(wait))
		c.ExpectSilence(quiet)
	})

	t.Run("join", func(t *testing.T) {
		c := dial(t, g)
		c.Send("j:room")
		require.Equal(t, "ok", c.Read(wait))
		c.Send("j:room") // joining twice is fine
		require.Equal(t, "ok", c.Read(wait))
		for _, bad := range []string{"", strings.Repeat("x", api.MaxNameLen+1)} {
			c.Send("j:" + bad)
			require.Regexp(t, `^err:api: invalid group`, c.Read(wait))
		}
		c.ExpectSilence(quiet)
	})

	t.Run("group reaches members only", func(t *testing.T) {
		a, b, out := dial(t, g), dial(t, g), dial(t, g)
		for _, c := range []*gatewaytest.WS{a, b} {
			c.Send("j:team")
			require.Equal(t, "ok", c.Read(wait))
		}
		out.Send("g:team:x:y: ü") // a non-member may send to a group
		require.Equal(t, "x:y: ü", a.Read(wait))
		require.Equal(t, "x:y: ü", b.Read(wait))
		a.Send("g:team:from a") // a member gets its own group send
		require.Equal(t, "from a", a.Read(wait))
		require.Equal(t, "from a", b.Read(wait))
		out.Send("g:nobody:lost") // a group with no members
		out.Send("g::lost")       // no group at all: the worker logs an error
		expectSilence(a, b, out)
	})

	t.Run("group names with dots and wildcards", func(t *testing.T) {
		names := []string{"a", "a.b", "a.*", "*", ">", "a.>", "b", "a b", "%2E"}
		members := make([]*gatewaytest.WS, len(names))
		for i, name := range names {
			members[i] = dial(t, g)
			members[i].Send("j:" + name)
			require.Equal(t, "ok", members[i].Read(wait), name)
		}
		sender := dial(t, g)
		for _, name := range names {
			sender.Send("g:" + name + ":to " + name)
		}
		for i, name := range names {
			require.Equal(t, "to "+name, members[i].Read(wait))
		}
		expectSilence(append(members, sender)...)
	})

	t.Run("all reaches every client once", func(t *testing.T) {
		clients := []*gatewaytest.WS{dial(t, g), dial(t, g), dial(t, g), dial(t, g)}
		clients[0].Send("a:to all: ✓")
		for _, c := range clients {
			require.Equal(t, "to all: ✓", c.Read(wait))
		}
		expectSilence(clients...)
	})
}

// expectSilence checks that no client gets anything more within quiet. The
// clients' inboxes fill in parallel, so only the first one is waited for
// the whole time.
func expectSilence(clients ...*gatewaytest.WS) {
	d := quiet
	for _, c := range clients {
		c.ExpectSilence(d)
		d = 10 * time.Millisecond
	}
}

// TestThousandClients is the acceptance test of the bench worker: it
// answers the bench protocol correctly for 1,000 concurrent WebSocket
// clients of one gateway (echo, join+group, broadcast), every message exactly once.
func TestThousandClients(t *testing.T) {
	const (
		n       = 1000 // clients
		groups  = 10
		dialers = 50               // handshakes at once
		phase   = 20 * time.Second // bound on each phase
	)
	g := startStack(t)
	start := time.Now()
	clients := dialMany(t, g, n, dialers)
	t.Logf("%d clients dialed in %v", n, time.Since(start).Round(time.Millisecond))

	// expect reads one message from every client and checks it; it returns
	// how many were right.
	expect := func(name string, want func(i int) string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), phase)
		defer cancel()
		var bad []string
		good := 0
		for i, c := range clients {
			got, err := c.recv(ctx)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("client %d: %v", i, err))
			case got != want(i):
				bad = append(bad, fmt.Sprintf("client %d: got %q, want %q", i, got, want(i)))
			default:
				good++
			}
		}
		if len(bad) > 0 {
			t.Fatalf("%s: %d of %d clients wrong, first: %v", name, len(bad), n, bad[:min(len(bad), 10)])
		}
		return good
	}
	timed := func(name string, f func() int) {
		t.Helper()
		start := time.Now()
		got := f()
		t.Logf("%s: %d messages right in %v", name, got, time.Since(start).Round(time.Millisecond))
	}

	timed("echo", func() int {
		for i, c := range clients {
			c.send(t, "echo "+strconv.Itoa(i)+": ✓")
		}
		return expect("echo", func(i int) string { return "echo " + strconv.Itoa(i) + ": ✓" })
	})

	timed("join", func() int {
		for i, c := range clients {
			c.send(t, "j:g"+strconv.Itoa(i%groups))
		}
		return expect("join", func(int) string { return "ok" })
	})

	// One sender per group, not itself a member: client k+1 sends to group k.
	// Every client gets exactly its own group's message.
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	groupMsg := func(k int) string { return "group " + strconv.Itoa(k) + " " + nonce + ":x" }
	timed("group", func() int {
		for k := range groups {
			clients[(k+1)%groups].send(t, "g:g"+strconv.Itoa(k)+":"+groupMsg(k))
		}
		return expect("group", func(i int) string { return groupMsg(i % groups) })
	})

	// Three broadcasts from one client: all of them, once each, in order.
	timed("broadcast", func() int {
		for r := range 3 {
			clients[n/2].send(t, "a:all "+strconv.Itoa(r)+" "+nonce)
		}
		got := 0
		for r := range 3 {
			got += expect("broadcast "+strconv.Itoa(r), func(int) string { return "all " + strconv.Itoa(r) + " " + nonce })
		}
		return got
	})

	// Nothing else arrives: no duplicate, no stray group message.
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	for i, c := range clients {
		if msg, err := c.recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("client %d: after the last expected message: %q, %v", i, msg, err)
		}
	}
}

// benchClient is a light WebSocket client for many-client tests: one
// reader goroutine hands frames to a small channel.
type benchClient struct {
	conn *websocket.Conn
	in   chan string
	err  error // why the reader stopped; set before in is closed
}

// dialMany dials n clients with at most dialers handshakes at once; they
// are closed, and their readers waited for, when the test ends.
func dialMany(t *testing.T, g *gateway.Gateway, n, dialers int) []*benchClient {
	t.Helper()
	clients := make([]*benchClient, n)
	var readers sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.conn.Close()
			}
		}
		for _, c := range clients {
			if c != nil {
				for range c.in { // unblock a reader stuck on a full channel
				}
			}
		}
		readers.Wait()
	})

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	url := "ws://" + g.WebSocketAddr() + "/"
	next := make(chan int)
	errs := make(chan error, n)
	var dialing sync.WaitGroup
	for range dialers {
		dialing.Go(func() {
			for i := range next {
				conn, _, err := d.Dial(url, nil)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					continue
				}
				c := &benchClient{conn: conn, in: make(chan string, 16)}
				clients[i] = c
				readers.Go(c.read)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	dialing.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		failed = append(failed, err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d dials failed, first: %v", len(failed), n, failed[0])
	}
	return clients
}

func (c *benchClient) read() {
	defer close(c.in)
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		c.in <- string(b)
	}
}

// recv returns the next frame, or why none came before ctx ended.
func (c *benchClient) recv(ctx context.Context) (string, error) {
	select {
	case msg, ok := <-c.in:
		if !ok {
			return "", fmt.Errorf("connection ended: %w", c.err)
		}
		return msg, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// send writes a text frame. Only the test goroutine writes.
func (c *benchClient) send(t *testing.T, msg string) {
	t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// BenchmarkEcho measures echo round trips of one client through the whole
// stack: WebSocket, gateway, NATS, worker and back.
func BenchmarkEcho(b *testing.B) {
	e := bustest.RunServer(b, bus.EmbeddedConfig{})
	workertest.Start(b, e, worker.Config{Handlers: bench.Handlers()})
	g := gatewaytest.Start(b, e, gateway.Config{})
	c := gatewaytest.DialWS(b, g, "/", nil)
	msg := []byte("echo: the message measured by cmd/gwbench")
	for b.Loop() {
		if err := c.Conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		if got := c.Read(wait); got != string(msg) {
			b.Fatalf("got %q", got)
		}
	}
}
