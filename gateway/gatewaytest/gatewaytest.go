// Package gatewaytest starts real gateways and real clients for tests:
// gateways on loopback ports of a real NATS server, WebSocket clients that
// speak the real protocol (gorilla/websocket) and raw TCP clients.
package gatewaytest

import (
	"bufio"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// Start runs a gateway on e until the test ends. Empty listener addresses
// become free loopback ports.
func Start(t testing.TB, e *bus.Embedded, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	if cfg.Bus == nil {
		cfg.Bus = bustest.Connect(t, e, bus.Config{Name: "gateway"})
	}
	if cfg.WebSocketAddr == "" {
		cfg.WebSocketAddr = "127.0.0.1:0"
	}
	if cfg.TCP == nil {
		cfg.TCP = []gateway.TCPListener{{Addr: "127.0.0.1:0"}}
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = bustest.Logger(t)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatalf("gatewaytest: %v", err)
	}
	bustest.Run(t, "gatewaytest: gateway", g.Run, g.Ready(), 10*time.Second)
	return g
}

// frame is what a client's reader goroutine saw: a message or the error
// that ended the connection.
type frame struct {
	msg string
	// binary is set for a WebSocket binary message.
	binary bool
	err    error
}

// inbox is the receiving side shared by both test clients: a goroutine
// reads the connection into a channel, so waiting for a message, or for
// silence, never disturbs the connection (a gorilla read timeout would
// break it for good).
type inbox struct {
	t      testing.TB
	frames chan frame
	ended  error
}

func newInbox(t testing.TB, read func() (msg string, binary bool, err error)) *inbox {
	in := &inbox{t: t, frames: make(chan frame, 4096)}
	go func() {
		for {
			msg, binary, err := read()
			in.frames <- frame{msg, binary, err}
			if err != nil {
				close(in.frames)
				return
			}
		}
	}()
	return in
}

// TryRead returns the next message, or the error that ended the connection,
// or a timeout error.
func (in *inbox) TryRead(timeout time.Duration) (string, error) {
	msg, _, err := in.TryReadMessage(timeout)
	return msg, err
}

// TryReadMessage is TryRead that also says whether the message came in a
// WebSocket binary frame (never, for TCP).
func (in *inbox) TryReadMessage(timeout time.Duration) (msg string, binary bool, err error) {
	if in.ended != nil {
		return "", false, in.ended
	}
	select {
	case f, ok := <-in.frames:
		if !ok {
			return "", false, in.ended
		}
		if f.err != nil {
			in.ended = f.err
		}
		return f.msg, f.binary, f.err
	case <-time.After(timeout):
		return "", false, ErrNoMessage
	}
}

// ErrNoMessage means nothing arrived in time.
var ErrNoMessage = errors.New("gatewaytest: no message in time")

// Read returns the next message, failing the test after timeout.
func (in *inbox) Read(timeout time.Duration) string {
	in.t.Helper()
	msg, err := in.TryRead(timeout)
	if err != nil {
		in.t.Fatalf("gatewaytest: read: %v", err)
	}
	return msg
}

// ExpectSilence fails the test if a message arrives within d.
func (in *inbox) ExpectSilence(d time.Duration) {
	in.t.Helper()
	msg, err := in.TryRead(d)
	if err == nil {
		in.t.Fatalf("gatewaytest: unexpected message %q", msg)
	}
	if !errors.Is(err, ErrNoMessage) {
		in.t.Fatalf("gatewaytest: connection ended while expecting silence: %v", err)
	}
}

// Closed waits until the connection ends and returns why.
func (in *inbox) Closed(timeout time.Duration) error {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := in.TryRead(time.Until(deadline))
		if errors.Is(err, ErrNoMessage) {
			in.t.Fatalf("gatewaytest: connection still open after %v", timeout)
		}
		if err != nil {
			return err
		}
	}
}

// WS is a WebSocket test client. It answers pings as browsers do and
// counts them.
type WS struct {
	*inbox
	Conn  *websocket.Conn
	pings atomic.Int64
}

// Pings returns how many WebSocket ping frames arrived.
func (c *WS) Pings() int64 { return c.pings.Load() }

// DialWS connects to g's WebSocket listener with an optional header.
func DialWS(t testing.TB, g *gateway.Gateway, path string, header map[string][]string) *WS {
	t.Helper()
	c, err := TryDialWS(g, path, header)
	if err != nil {
		t.Fatalf("gatewaytest: dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Conn.Close() })
	c.inbox.t = t
	return c
}

// TryDialWS is DialWS returning the error; the caller closes Conn.
func TryDialWS(g *gateway.Gateway, path string, header map[string][]string) (*WS, error) {
	if path == "" {
		path = "/"
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws://"+g.WebSocketAddr()+path, header)
	if err != nil {
		return nil, err
	}
	c := &WS{Conn: conn}
	conn.SetPingHandler(func(data string) error {
		c.pings.Add(1)
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	c.inbox = newInbox(nil, func() (string, bool, error) {
		mt, b, err := conn.ReadMessage()
		return string(b), mt == websocket.BinaryMessage, err
	})
	return c, nil
}

// Send writes a text frame.
func (c *WS) Send(msg string) {
	c.t.Helper()
	if err := c.Conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatalf("gatewaytest: write: %v", err)
	}
}

// TCP is a raw TCP test client of the text protocol.
type TCP struct {
	*inbox
	Conn net.Conn
}

// DialTCP connects to g's TCP listener.
func DialTCP(t testing.TB, g *gateway.Gateway) *TCP {
	t.Helper()
	conn, err := net.DialTimeout("tcp", g.TCPAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("gatewaytest: dial tcp: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := bufio.NewReader(conn)
	return &TCP{Conn: conn, inbox: newInbox(t, func() (string, bool, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", false, err
		}
		return line[:len(line)-1], false, nil
	})}
}

// Send writes one line.
func (c *TCP) Send(line string) {
	c.t.Helper()
	if _, err := c.Conn.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("gatewaytest: write: %v", err)
	}
}

// DialGreeted dials one WebSocket client on each of gws (name a gateway
// twice for two clients) and returns them with their ids, which a worker
// running workertest.Greeter sends each client first.
func DialGreeted(t testing.TB, gws ...*gateway.Gateway) ([]*WS, []string) {
	t.Helper()
	conns := make([]*WS, len(gws))
	ids := make([]string, len(gws))
	for i, g := range gws {
		conns[i] = DialWS(t, g, "/", nil)
		ids[i] = conns[i].Read(5 * time.Second)
	}
	return conns, ids
}
