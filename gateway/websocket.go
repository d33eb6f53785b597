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
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/gatewayworker/gatewayworker/internal/bus"
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

// wsTransport is a WebSocket client's socket. It also stands between nbio's
// poller and the connection's parser (nbio calls Parse with what it read),
// to check frame headers first: see frameGuard.
type wsTransport struct {
	// sendQueue is the socket's: its own, or its tlsSession's (wss://).
	*sendQueue
	c     *websocket.Conn
	guard frameGuard
}

// Parse checks data's frame headers, then hands data to nbio's parser. A
// frame that breaks RFC 6455 gets close code 1002, a message over
// MaxMessageSize 4503, and the error closes the connection (nbio then
// calls CloseAndClean with it).
func (t *wsTransport) Parse(data []byte) error {
	if err := t.guard.scan(data); err != nil {
		if errors.Is(err, errMessageTooLarge) {
			r := bus.CloseMessageTooLarge
			_ = t.c.WriteClose(r.WSCode(), r.WSText())
		} else {
			_ = t.c.WriteClose(1002, err.Error())
		}
		return err
	}
	return t.c.Parse(data)
}

func (t *wsTransport) UnderlayerConn() net.Conn { return t.c.UnderlayerConn() }

func (t *wsTransport) CloseAndClean(err error) { t.c.CloseAndClean(err) }

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

func (t *wsTransport) close(last []byte, r bus.CloseReason) {
	if len(last) > 0 {
		_ = t.send(last, isText(last))
	}
	_ = t.c.WriteClose(r.WSCode(), r.WSText())
	_ = t.c.Close()
}

func (g *Gateway) listenWebSocket() error {
	hs := &handshakes{
		timeout: g.cfg.HandshakeTimeout, maxBytes: g.cfg.MaxHeaderBytes,
		pending: map[*nbio.Conn]*handshake{},
	}
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
			c.t.close(nil, c.closeReason()) // onInput recorded why
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
		if msg := badHandshake(r); msg != "" {
			http.Error(w, msg, http.StatusBadRequest)
			return
		}
		rec, err := recoverOf(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			g.log.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
			return
		}
		nc := pollerConn(conn.Conn)
		if nc == nil { // not one of nbio's: no guard could see its frames
			g.log.Error("websocket connection of an unknown type", "type", fmt.Sprintf("%T", conn.Conn))
			_ = conn.Close()
			return
		}
		hs.finished(nc)
		q := new(sendQueue)
		if s, ok := nc.Session().(*tlsSession); ok {
			q = &s.sent
		}
		token := ""
		t := &wsTransport{sendQueue: q, c: conn, guard: frameGuard{deflate: g.offersDeflate(r), limit: uint64(g.cfg.MaxMessageSize)}}
		if g.auth != nil && g.auth.tokens != nil {
			if token = tokenOfRequest(r); token == "" {
				// Its first message must be a token message: no larger.
				t.guard.first = uint64(min(g.cfg.MaxMessageSize, MaxTokenMessageSize))
			}
		}
		// From now on t parses the client's input. The upgrade runs inside
		// the parse of the request, on the goroutine that handles the
		// connection's input one read at a time (a poller, or a wss://
		// connection's handshake goroutine), so t sees every byte after the
		// request, frames sent before the 101 included. The request's
		// parser hands what follows the request in the same read to its
		// ParserCloser (nbio sets none on ws://: those bytes were parsed
		// as HTTP). Later reads go, on ws://, to the poller conn's session;
		// on wss:// that session decrypts and feeds the parser, which hands
		// them to its ParserCloser (tlsSession, serveWSS).
		p := parserOf(w)
		switch {
		case p == nil:
		case nc.Session() == conn:
			nc.SetSession(t)
			p.ParserCloser = t
		case p.ParserCloser == conn:
			p.ParserCloser = t
		default:
			p = nil
		}
		if p == nil {
			g.log.Error("websocket connection read by an unknown parser", "session", fmt.Sprintf("%T", nc.Session()))
			_ = conn.Close()
			return
		}
		c, refused := g.admit(g.clientAddr(r), t, rec)
		if c == nil {
			// After the upgrade, so that the client reads why: an HTTP
			// status is all a browser's WebSocket shows of a refused
			// upgrade, and it cannot tell the page.
			t.close(nil, refused)
			return
		}
		conn.SetSession(c)
		// One batch for both: one NATS round trip per connection, not two.
		g.startClient(c, token, bus.Event{Kind: bus.EventConnect}, bus.Event{Kind: bus.EventWebSocketConnect, WS: &bus.WebSocketInfo{
			Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header,
		}})
	})
	var wss *wssAcceptor
	listen := g.listenClients
	if f := g.cfg.WebSocketTLS; f != nil {
		tlsConfig, err := loadTLS(f, "http/1.1")
		if err != nil {
			return &ListenError{Listener: "websocket", Addr: g.cfg.WebSocketAddr, Err: err}
		}
		wss = &wssAcceptor{g: g, cfg: tlsConfig, hs: hs}
		listen = wss.listen
	}
	e := nbhttp.NewEngine(nbhttp.Config{
		Name:               "gateway-ws",
		Network:            "tcp",
		Addrs:              []string{g.cfg.WebSocketAddr},
		Listen:             listen,
		Handler:            hs.closingAfterRead(mux),
		MaxLoad:            g.cfg.MaxConnections + 64, // the registry refuses first, with a close frame
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		// No read deadline from nbio: see handshakes.
		KeepaliveTime:  noDeadline,
		ReadBufferSize: 16 << 10,
		// Message buffers are recycled: a fresh one per message was a fifth
		// of the gateway's allocations in the echo benchmark.
		ReleaseWebsocketPayload: true,
		ServerExecutor:          wsExecutor,
	})
	e.OnData(hs.guardedData)
	e.OnWrittenSize(countWritten)
	// nbio serves a wss:// connection, which is a crypto/tls conn to it, in
	// its blocking mode: it takes the engine from here, and writes are to go
	// straight through crypto/tls to the poller's queue, not to a writer
	// goroutine.
	up.Engine = e
	up.BlockingModAsyncWrite = false
	opened := raceBridge(e)
	if wss != nil {
		wss.e, wss.opened = e, opened
	}
	e.OnOpen(func(c net.Conn) {
		if nc := pollerConn(c); nc != nil {
			closeOnExec(nc)
			hs.opened(nc)
		}
		opened()
	})
	if err := e.Start(); err != nil {
		return &ListenError{Listener: "websocket", Addr: g.cfg.WebSocketAddr, Err: err}
	}
	g.ws, g.handshakes = e, hs
	g.wsAddr = e.Addrs[0]
	return nil
}

// offersDeflate reports whether r asked for permessage-deflate where the
// gateway grants it, that is, whether the upgrade negotiated compression
// (nbio does not say; its CompressionEnabled is about the last message
// read). A malformed offer that nbio refused but that names the extension
// counts too, and then RSV1 frames reach nbio as they did before the guard.
func (g *Gateway) offersDeflate(r *http.Request) bool {
	if !g.cfg.WebSocketCompression {
		return false
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Extensions") {
		if strings.Contains(v, "permessage-deflate") {
			return true
		}
	}
	return false
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
// pool their messages piled up in memory instead.) wss:// connections too,
// once their TLS handshake is done (tlsSession).
func wsExecutor(f func()) { f() }

// closeReasonOf maps what nbio reports on close to a CloseReason.
func closeReasonOf(err error) bus.CloseReason {
	switch {
	case err == nil:
		return bus.CloseClientClosed
	case errors.Is(err, nbio.ErrOverflow):
		return bus.CloseSlowConsumer
	case errors.Is(err, errTLSBacklog):
		return bus.CloseEventQueueFull
	case errors.Is(err, errTLSProtocol):
		return bus.CloseProtocolError
	case errors.Is(err, websocket.ErrMessageTooLarge), errors.Is(err, errMessageTooLarge):
		return bus.CloseMessageTooLarge
	case errors.Is(err, errFrameProtocol), isNbioProtocolError(err):
		return bus.CloseProtocolError
	}
	return bus.CloseClientClosed
}

// nbioProtocolErrors are the errors nbio closes a connection with when a
// client broke RFC 6455 in a way frameGuard does not see (a close code or
// text that is not UTF-8, a bad extension). Matched by identity: nbio also
// reports a client's own close frame as an error whose text starts with
// "websocket:", and a browser leaving a page (1001) is no protocol error.
var nbioProtocolErrors = []error{
	websocket.ErrInvalidUtf8, websocket.ErrInvalidCloseCode, websocket.ErrInvalidFragmentMessage,
	websocket.ErrInvalidControlFrame, websocket.ErrReserveBitSet, websocket.ErrReservedMessageType,
	websocket.ErrControlMessageFragmented, websocket.ErrControlMessageTooBig,
	websocket.ErrFragmentsShouldNotHaveBinaryOrTextMessage, websocket.ErrInvalidCompression,
}

func isNbioProtocolError(err error) bool {
	for _, e := range nbioProtocolErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	// A close frame with code 1002 is the client saying we broke the protocol.
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == 1002
}

// listenClients opens a client listener. nbio accepts through it, so the
// sockets it accepts get its TCP keepalive (Config.TCPKeepAlive).
func (g *Gateway) listenClients(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: g.cfg.TCPKeepAlive}
	return lc.Listen(context.Background(), network, addr)
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

// stopWebSocket stops the WebSocket listener: the handshakes first, so
// that none is parsed when nbio's engine closes every connection from its
// own goroutine (see handshakes.stop).
func (g *Gateway) stopWebSocket(ctx context.Context) {
	g.handshakes.stop(ctx)
	_ = g.ws.Shutdown(ctx)
}

// stopListeners stops what listen started, after a failed start.
func (g *Gateway) stopListeners() {
	if g.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		g.stopWebSocket(ctx)
		cancel()
	}
	for _, t := range g.tcp {
		t.engine.Stop()
	}
	g.tcp = nil
}
