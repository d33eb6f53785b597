package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestShortDrainTimeoutStopsTheWebSocketEngine: Run stops nbio's pollers
// before it returns, even with a DrainTimeout shorter than nbio's own
// shutdown checks (200 ms), and a client whose close is never acknowledged.
func TestShortDrainTimeoutStopsTheWebSocketEngine(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	before := pollers()
	g, err := New(Config{Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0",
		DrainTimeout: 50 * time.Millisecond, Logger: bustest.Logger(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()
	require.NotNil(t, g.newClient("127.0.0.1:1", nopTransport{}), "a client no worker will acknowledge")
	require.Eventually(t, func() bool { return pollers() > before }, 5*time.Second, time.Millisecond, "the engine's pollers run")
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, before, pollers(), "nbio pollers still run after Run returned")
}

// pollers counts the goroutines of nbio pollers.
func pollers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "nbio.(*poller).readWriteLoop")
}

// TestShutdownDuringARefusedHandshakeLeavesNoPollerFrozen: nbio's close of
// a connection still reading its handshake queues the parser's cleanup
// behind the request's handler, which runs inside the parse, on the
// poller, holding the parser's lock. A close from another goroutine while
// a handler refused a request (here: shutdown's, while the handler logs
// the refused origin) made the cleanup wait for that lock on the goroutine
// that held it: the poller froze, with every connection on it, and Run
// never returned.
func TestShutdownDuringARefusedHandshakeLeavesNoPollerFrozen(t *testing.T) {
	before := pollers()
	s := stallRefusedHandshake(t, Config{DrainTimeout: 50 * time.Millisecond})
	s.cancel()
	time.Sleep(300 * time.Millisecond) // shutdown reaches the connection meanwhile
	close(s.logs.release)
	select {
	case <-s.done:
		require.NoError(t, s.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return: the poller froze")
	}
	require.Equal(t, before, pollers(), "nbio pollers still run after Run returned")
}

// TestHandshakeTimeoutDuringItsHandlerClosesAfterIt: a handshake that
// times out while its handler runs is closed by its poller once the
// handler's answer is written, and the poller serves on.
func TestHandshakeTimeoutDuringItsHandlerClosesAfterIt(t *testing.T) {
	s := stallRefusedHandshake(t, Config{HandshakeTimeout: 50 * time.Millisecond, DrainTimeout: 50 * time.Millisecond})
	time.Sleep(300 * time.Millisecond) // the timeout fires meanwhile
	close(s.logs.release)
	require.NoError(t, s.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err := io.ReadAll(s.conn)
	require.NoError(t, err, "closed, not timed out")
	require.Contains(t, string(got), "403 Forbidden")
	for range 8 { // whichever poller it lands on
		c, _, err := websocket.DefaultDialer.Dial("ws://"+s.g.WebSocketAddr()+"/", nil)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
}

// stalledHandshake is a gateway whose handler is stalled, inside nbio's
// parser, on conn's handshake: it logs conn's refused origin until
// logs.release is closed.
type stalledHandshake struct {
	g      *Gateway
	conn   net.Conn
	logs   *stallingLog
	cancel context.CancelFunc
	// done is closed when Run has returned err.
	done chan struct{}
	err  error
}

func stallRefusedHandshake(t *testing.T, cfg Config) *stalledHandshake {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	s := &stalledHandshake{done: make(chan struct{}),
		logs: &stallingLog{on: "websocket origin refused", entered: make(chan struct{}, 1), release: make(chan struct{})}}
	cfg.Bus, cfg.WebSocketAddr, cfg.Logger = bustest.Connect(t, e, bus.Config{}), "127.0.0.1:0", slog.New(s.logs)
	cfg.AllowedOrigins = []string{"https://app.example"}
	var err error
	s.g, err = New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.err = s.g.Run(ctx)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.logs.release:
		default:
			close(s.logs.release)
		}
		<-s.done
	})
	<-s.g.Ready()

	s.conn, err = net.Dial("tcp", s.g.WebSocketAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.conn.Close() })
	_, err = s.conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n"))
	require.NoError(t, err)
	select {
	case <-s.logs.entered: // the handler runs, inside the parse
	case <-time.After(5 * time.Second):
		t.Fatal("the refused origin was never logged")
	}
	return s
}

// stallingLog is a slog.Handler that holds the first record whose message
// is on until release is closed, telling entered, and drops the others.
// (slog's own handlers hold one lock across writes: a stalled write would
// stall every other log call too.)
type stallingLog struct {
	on      string
	entered chan struct{}
	release chan struct{}
}

func (l *stallingLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *stallingLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *stallingLog) WithGroup(string) slog.Handler            { return l }

func (l *stallingLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == l.on {
		select {
		case l.entered <- struct{}{}:
			<-l.release
		default:
		}
	}
	return nil
}
