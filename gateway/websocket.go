package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/gatewayworker/gatewayworker/bus"
)

// ListenError says which listener could not start.
type ListenError struct {
	// Listener is "websocket" or "tcp".
	Listener string
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("gateway: %s listener on %s: %v", e.Listener, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

type wsTransport struct {
	sendQueue
	c *websocket.Conn
}

func (t *wsTransport) send(data []byte, text bool) error {
	if ok, err := sendFramed(t, data, text); ok {
		return err
	}
	mt := websocket.BinaryMessage
	if text {
		mt = websocket.TextMessage
	}
	return t.c.WriteMessage(mt, data)
}

// appendFrame writes a server frame (unmasked, final) as RFC 6455 §5.2
// lays it out; nbio would write the same bytes.
func (t *wsTransport) appendFrame(dst, data []byte, text bool) ([]byte, bool) {
	if t.c.CompressionEnabled() {
		return dst, false
	}
	op := byte(websocket.BinaryMessage)
	if text {
		op = byte(websocket.TextMessage)
	}
	dst = append(dst, 0x80|op)
	switch n := len(data); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
	return append(dst, data...), true
}

func (t *wsTransport) writeFrames(frames []byte) error {
	t.adding(len(frames))
	_, err := t.c.Conn.Write(frames)
	return err
}

func (t *wsTransport) ping() { _ = t.c.WriteMessage(websocket.PingMessage, nil) }

func (t *wsTransport) close(last []byte) {
	if len(last) > 0 {
		_ = t.send(last, isText(last))
	}
	_ = t.c.WriteClose(1000, "")
	_ = t.c.Close()
}

func (g *Gateway) listenWebSocket() error {
	hs := &handshakes{timeout: g.cfg.HandshakeTimeout, pending: map[string]*time.Timer{}}
	up := websocket.NewUpgrader()
	up.KeepaliveTime = 0 // heartbeats are ours: one ticker for all clients
	up.MessageLengthLimit = g.cfg.MaxMessageSize
	up.CheckOrigin = g.checkOrigin
	up.EnableCompression(g.cfg.WebSocketCompression)
	up.OnMessage(func(conn *websocket.Conn, _ websocket.MessageType, data []byte) {
		c, ok := conn.Session().(*client)
		if !ok {
			_ = conn.Close()
			return
		}
		// data goes back to nbio's pool when this returns
		// (ReleaseWebsocketPayload): onInput copies what it keeps.
		if !g.onInput(c, data) {
			_ = conn.Close()
		}
	})
	up.SetPingHandler(func(conn *websocket.Conn, data string) {
		if c, ok := conn.Session().(*client); ok {
			c.silent.Store(0)
		}
		_ = conn.WriteMessage(websocket.PongMessage, []byte(data))
	})
	up.SetPongHandler(func(conn *websocket.Conn, _ string) {
		if c, ok := conn.Session().(*client); ok {
			c.silent.Store(0)
		}
	})
	up.OnClose(func(conn *websocket.Conn, err error) {
		c, ok := conn.Session().(*client)
		if !ok {
			return
		}
		c.setReason(closeReasonOf(err))
		g.onSocketClosed(c)
	})

	mux := http.NewServeMux()
	mux.HandleFunc(g.cfg.WebSocketPath, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != g.cfg.WebSocketPath {
			http.NotFound(w, r)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			g.log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
			return
		}
		hs.finished(connKey(conn))
		t := &wsTransport{c: conn}
		c := g.newClient(g.clientAddr(r), t)
		if c == nil {
			_ = conn.WriteClose(1013, "try again later")
			_ = conn.Close()
			return
		}
		conn.SetSession(c)
		// One batch for both: one NATS round trip per connection, not two.
		g.pushEvent(c, bus.Event{Kind: bus.EventConnect}, bus.Event{Kind: bus.EventWebSocketConnect, WS: &bus.WebSocketInfo{
			Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header,
		}})
	})
	addrs, tlsAddrs := []string{g.cfg.WebSocketAddr}, []string(nil)
	var tlsConfig *tls.Config
	if f := g.cfg.WebSocketTLS; f != nil {
		var err error
		if tlsConfig, err = loadTLS(f); err != nil {
			return &ListenError{Listener: "websocket", Addr: g.cfg.WebSocketAddr, Err: err}
		}
		addrs, tlsAddrs = nil, addrs
	}
	e := nbhttp.NewEngine(nbhttp.Config{
		Name:               "gateway-ws",
		Network:            "tcp",
		Addrs:              addrs,
		AddrsTLS:           tlsAddrs,
		TLSConfig:          tlsConfig,
		Handler:            mux,
		MaxLoad:            g.cfg.MaxConnections + 64, // the registry refuses first, with a close frame
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		// No read deadline from nbio: see handshakes.
		KeepaliveTime:  noDeadline,
		ReadBufferSize: 16 << 10,
		// Message buffers are recycled: a fresh one per message was a fifth
		// of the gateway's allocations in the echo benchmark.
		ReleaseWebsocketPayload: true,
		ServerExecutor:          wsExecutor(tlsConfig),
	})
	e.OnWrittenSize(func(conn *nbio.Conn, _ []byte, n int) {
		// Before the upgrade the session is nbhttp's parser.
		if wsc, ok := conn.Session().(*websocket.Conn); ok {
			if c, ok := wsc.Session().(*client); ok {
				c.t.(*wsTransport).written(n)
			}
		}
	})
	opened := raceBridge(e)
	e.OnOpen(func(c net.Conn) {
		hs.opened(c)
		opened()
	})
	if err := e.Start(); err != nil {
		return &ListenError{Listener: "websocket", Addr: g.cfg.WebSocketAddr, Err: err}
	}
	g.ws = e
	if g.cfg.WebSocketTLS != nil {
		g.wsAddr = e.AddrsTLS[0]
	} else {
		g.wsAddr = e.Addrs[0]
	}
	return nil
}

// clientAddr is the client's address: the connection's, or, behind a
// trusted proxy, the nearest address in X-Forwarded-For that is not one of
// the trusted proxies.
func (g *Gateway) clientAddr(r *http.Request) string {
	if len(g.cfg.TrustedProxies) == 0 {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !g.trusted(peer.Addr()) {
		return r.RemoteAddr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return r.RemoteAddr // a forged or broken header: believe the socket
		}
		if !g.trusted(hop) {
			return hop.String()
		}
	}
	return r.RemoteAddr
}

func (g *Gateway) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkOrigin applies AllowedOrigins. Requests without an Origin header do
// not come from a browser page and are let through.
func (g *Gateway) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(g.cfg.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	for _, allowed := range g.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	g.warnRateLimited("websocket origin refused", "origin", origin, "remote", r.RemoteAddr)
	return false
}

// noDeadline stands for "never" where nbio wants a duration: a century.
const noDeadline = 100 * 365 * 24 * time.Hour

// wsExecutor runs WebSocket handshakes and messages on the poller
// goroutine that read them: what the gateway does with them (encode, hand to
// NATS's buffer) waits on nothing but nats.go's lock, which its flusher holds
// while writing to the server, and a hand-off to nbio's goroutine pool cost
// a tenth of the echo rate. (A NATS server that stops reading thus stops
// the poller's reads too, which pushes back on clients through TCP; with the
// pool their messages piled up in memory instead.) TLS
// listeners keep the pool, so that one client's TLS handshake does not hold
// up the other connections of its poller.
func wsExecutor(tlsConfig *tls.Config) func(func()) {
	if tlsConfig != nil {
		return nil
	}
	return func(f func()) { f() }
}

// handshakes closes connections whose WebSocket handshake has not finished
// within HandshakeTimeout. nbio's own means, the engine's KeepaliveTime read
// deadline, races the upgrade: the accepting goroutine sets that deadline
// after it hands the connection to the poller, so when the handshake is
// handled first, the deadline lands after the upgrade cleared it and the
// WebSocket connection dies HandshakeTimeout after it opened, however
// active (1 idle connection in 2,000 was lost so with 3 gateways and 3
// load generators sharing 2 cores).
type handshakes struct {
	timeout time.Duration
	mu      sync.Mutex
	pending map[string]*time.Timer
}

// connKey names a connection by its two addresses: the net.Conn nbio
// hands to OnOpen is not always the one a WebSocket connection wraps (TLS).
func connKey(c net.Conn) string { return c.LocalAddr().String() + "|" + c.RemoteAddr().String() }

// opened starts c's handshake clock. A connection that closes before its
// handshake ends stays pending until its timer fires, which then closes it
// again, harmlessly: no work for every close.
func (h *handshakes) opened(c net.Conn) {
	key := connKey(c)
	h.mu.Lock()
	defer h.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(h.timeout, func() {
		h.mu.Lock()
		// A later connection with the same addresses may have taken the key.
		mine := h.pending[key] == t
		if mine {
			delete(h.pending, key)
		}
		h.mu.Unlock()
		if mine {
			_ = c.Close()
		}
	})
	h.pending[key] = t
}

// finished ends a connection's handshake clock.
func (h *handshakes) finished(key string) {
	h.mu.Lock()
	t := h.pending[key]
	delete(h.pending, key)
	h.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}

// closeReasonOf maps what nbio reports on close to a CloseReason.
func closeReasonOf(err error) bus.CloseReason {
	switch {
	case err == nil:
		return bus.CloseClientClosed
	case errors.Is(err, nbio.ErrOverflow):
		return bus.CloseSlowConsumer
	case errors.Is(err, websocket.ErrMessageTooLarge):
		return bus.CloseMessageTooLarge
	case errors.Is(err, websocket.ErrInvalidUtf8), strings.HasPrefix(err.Error(), "websocket:"):
		return bus.CloseProtocolError
	}
	return bus.CloseClientClosed
}

// probeListen reports whether addr can be listened on now.
func probeListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

func (g *Gateway) listen() error {
	routeNbioLogs()
	// nbio can hang in its own cleanup when an engine stops right after a
	// failed start: find taken addresses before starting any engine.
	if g.cfg.WebSocketAddr != "" {
		if err := probeListen(g.cfg.WebSocketAddr); err != nil {
			return &ListenError{Listener: "websocket", Addr: g.cfg.WebSocketAddr, Err: err}
		}
	}
	for _, l := range g.cfg.TCP {
		if err := probeListen(l.Addr); err != nil {
			return &ListenError{Listener: l.Codec.Name(), Addr: l.Addr, Err: err}
		}
	}
	if g.cfg.WebSocketAddr != "" {
		if err := g.listenWebSocket(); err != nil {
			return err
		}
	}
	for _, l := range g.cfg.TCP {
		t, err := g.listenTCP(l)
		if err != nil {
			g.stopListeners()
			return err
		}
		g.tcp = append(g.tcp, t)
	}
	return nil
}

// stopListeners stops what listen started, after a failed start.
func (g *Gateway) stopListeners() {
	if g.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.ws.Shutdown(ctx)
		cancel()
	}
	for _, t := range g.tcp {
		t.engine.Stop()
	}
	g.tcp = nil
}
