package gateway

import (
	"bytes"
	"errors"

	"github.com/lesismal/nbio"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// TCPListener is one raw TCP listener and the protocol its clients speak.
type TCPListener struct {
	// Addr is the listen address ("127.0.0.1:7273").
	Addr string
	// Codec cuts the stream into messages. Nil means protocol.Text.
	Codec protocol.Codec
}

type tcpTransport struct {
	c     *nbio.Conn
	codec protocol.Codec
}

func (t *tcpTransport) send(data []byte, _ bool) error {
	_, err := t.c.Write(t.codec.Append(make([]byte, 0, len(data)+8), data))
	return err
}

func (t *tcpTransport) ping() {}

func (t *tcpTransport) close(last []byte) {
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
}

func (g *Gateway) listenTCP(l TCPListener) (*tcpServer, error) {
	codec := l.Codec
	if codec == nil {
		codec = protocol.Text{}
	}
	e := nbio.NewEngine(nbio.Config{
		Name:               "gateway-" + codec.Name(),
		Network:            "tcp",
		Addrs:              []string{l.Addr},
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		ReadBufferSize:     16 << 10,
	})
	e.OnOpen(func(conn *nbio.Conn) {
		c := g.newClient(conn.RemoteAddr().String(), &tcpTransport{c: conn, codec: codec})
		if c == nil {
			_ = conn.Close()
			return
		}
		conn.SetSession(c)
		g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
	})
	// OnData runs on the poller goroutine, and data is the poller's buffer:
	// everything kept is copied.
	e.OnData(func(conn *nbio.Conn, data []byte) {
		c, ok := conn.Session().(*client)
		if !ok {
			_ = conn.Close()
			return
		}
		g.onTCPData(conn, c, codec, data)
	})
	e.OnClose(func(conn *nbio.Conn, err error) {
		c, ok := conn.Session().(*client)
		if !ok {
			return
		}
		if errors.Is(err, nbio.ErrOverflow) {
			c.setReason(bus.CloseSlowConsumer)
		}
		g.onSocketClosed(c)
	})
	if err := e.Start(); err != nil {
		return nil, &ListenError{Listener: codec.Name(), Addr: l.Addr, Err: err}
	}
	return &tcpServer{engine: e, codec: codec, addr: e.Addrs[0]}, nil
}

func (g *Gateway) onTCPData(conn *nbio.Conn, c *client, codec protocol.Codec, data []byte) {
	buf := data
	if len(c.carry) > 0 {
		c.carry = append(c.carry, data...)
		buf = c.carry
	}
	for len(buf) > 0 {
		msg, n, err := codec.Split(buf, g.cfg.MaxMessageSize)
		if err != nil {
			reason := bus.CloseProtocolError
			if errors.Is(err, protocol.ErrTooLarge) {
				reason = bus.CloseMessageTooLarge
			}
			c.setReason(reason)
			c.carry = nil
			g.warnRateLimited("tcp client closed", "client_id", c.id, "reason", reason, "err", err)
			_ = conn.Close()
			return
		}
		if n == 0 {
			break
		}
		if !g.onInput(c, bytes.Clone(msg)) {
			c.carry = nil
			_ = conn.Close()
			return
		}
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0:
		c.carry = nil
	case len(c.carry) == 0 || &buf[0] != &c.carry[0]:
		c.carry = append([]byte(nil), buf...)
	}
}
