package gateway

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/lesismal/nbio"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// TCPListener is one raw TCP listener and the protocol its clients speak.
type TCPListener struct {
	// Addr is the listen address ("127.0.0.1:7273").
	Addr string
	// Codec cuts the stream into messages. Nil means protocol.Text.
	Codec protocol.Codec
	// TLS, if set, makes clients speak TLS first (Go's crypto/tls, TLS 1.2
	// and later).
	TLS *TLSFiles
}

type tcpTransport struct {
	// sendQueue is the socket's: its own, or its tlsSession's.
	*sendQueue
	// c is the *nbio.Conn, or the *tls.Conn over it (see tlsSession).
	c     net.Conn
	codec protocol.Codec
	// carry is input not yet cut into messages; only the connection's
	// reader touches it.
	carry []byte
}

func (t *tcpTransport) send(data []byte, text bool) error {
	_, err := sendFramed(t, data, text)
	return err
}

func (t *tcpTransport) appendFrame(dst, data []byte, _ bool) ([]byte, bool) {
	return t.codec.Append(dst, data), true
}

func (t *tcpTransport) writeFrames(frames []byte) error {
	t.adding(len(frames))
	_, err := t.c.Write(frames)
	return err
}

func (t *tcpTransport) ping() {}

// close sends last and closes: the text and frame protocols have no close
// message, so the client sees only the socket close (docs/clients.md).
func (t *tcpTransport) close(last []byte, _ bus.CloseReason) {
	if len(last) > 0 {
		_ = t.send(last, false)
	}
	_ = t.c.Close()
}

// tcpServer is one running TCP listener.
type tcpServer struct {
	engine *nbio.Engine
	codec  protocol.Codec
	addr   string
	tls    bool
}

func (g *Gateway) listenTCP(l TCPListener) (*tcpServer, error) {
	codec := l.Codec
	if codec == nil {
		codec = protocol.Text{}
	}
	var tlsConfig *tls.Config
	if l.TLS != nil {
		var err error
		if tlsConfig, err = loadTLS(l.TLS); err != nil {
			return nil, &ListenError{Listener: codec.Name(), Addr: l.Addr, Err: err}
		}
	}
	e := nbio.NewEngine(nbio.Config{
		Name:               "gateway-" + codec.Name(),
		Network:            "tcp",
		Addrs:              []string{l.Addr},
		Listen:             g.listenClients,
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		ReadBufferSize:     16 << 10,
	})
	e.OnWrittenSize(countWritten)
	if tlsConfig != nil {
		g.tlsTCPHandlers(e, tlsConfig, codec)
	} else {
		g.tcpHandlers(e, codec)
	}
	if err := e.Start(); err != nil {
		return nil, &ListenError{Listener: codec.Name(), Addr: l.Addr, Err: err}
	}
	return &tcpServer{engine: e, codec: codec, addr: e.Addrs[0], tls: tlsConfig != nil}, nil
}

func (g *Gateway) tcpHandlers(e *nbio.Engine, codec protocol.Codec) {
	opened := raceBridgeTCP(e)
	e.OnOpen(func(conn *nbio.Conn) {
		defer opened()
		closeOnExec(conn)
		c := g.newClient(conn.RemoteAddr().String(), &tcpTransport{sendQueue: new(sendQueue), c: conn, codec: codec})
		if c == nil {
			_ = conn.Close()
			return
		}
		conn.SetSession(c)
		g.startClient(c, "", bus.Event{Kind: bus.EventConnect})
	})
	// OnData runs on the poller goroutine, and data is the poller's buffer:
	// everything kept is copied.
	e.OnData(func(conn *nbio.Conn, data []byte) {
		c, ok := conn.Session().(*client)
		if !ok {
			_ = conn.Close()
			return
		}
		t, ok := c.t.(*tcpTransport)
		if !ok {
			_ = conn.Close()
			return
		}
		g.onTCPData(conn, c, t, data)
	})
	e.OnClose(func(conn *nbio.Conn, err error) {
		if c, ok := conn.Session().(*client); ok {
			g.closedTCP(c, err)
		}
	})
}

// closedTCP ends a TCP client whose socket closed with err.
func (g *Gateway) closedTCP(c *client, err error) {
	if errors.Is(err, nbio.ErrOverflow) {
		c.setReason(bus.CloseSlowConsumer)
	}
	g.onSocketClosed(c)
}

func (g *Gateway) onTCPData(conn *nbio.Conn, c *client, t *tcpTransport, data []byte) {
	buf := data
	if len(t.carry) > 0 {
		t.carry = append(t.carry, data...)
		buf = t.carry
	}
	for len(buf) > 0 {
		limit := g.cfg.MaxMessageSize
		if c.awaiting.Load() {
			// Its first message must be a token message: no larger (auth.go).
			limit = min(limit, MaxTokenMessageSize)
		}
		msg, n, err := t.codec.Split(buf, limit)
		if err != nil {
			reason := bus.CloseProtocolError
			if errors.Is(err, protocol.ErrTooLarge) {
				reason = bus.CloseMessageTooLarge
			}
			c.setReason(reason)
			t.carry = nil
			g.warnRateLimited("tcp client closed", "client_id", c.id, "reason", reason, "err", err)
			_ = conn.Close()
			return
		}
		if n == 0 {
			break
		}
		if !g.onInput(c, msg) {
			t.carry = nil
			_ = conn.Close()
			return
		}
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0:
		t.carry = nil
	case len(t.carry) == 0 || &buf[0] != &t.carry[0]:
		t.carry = append([]byte(nil), buf...)
	}
}
