package gateway

import (
	"bytes"
	"errors"

	"github.com/lesismal/nbio"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

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

func (g *Gateway) listenTCP() error {
	e := nbio.NewEngine(nbio.Config{
		Name:               "gateway-tcp",
		Network:            "tcp",
		Addrs:              []string{g.cfg.TCPAddr},
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		ReadBufferSize:     16 << 10,
	})
	e.OnOpen(func(conn *nbio.Conn) {
		c := g.newClient(conn.RemoteAddr().String(), &tcpTransport{c: conn, codec: g.cfg.TCPCodec})
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
		g.onTCPData(conn, c, data)
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
		return &ListenError{Listener: "tcp", Addr: g.cfg.TCPAddr, Err: err}
	}
	g.tcp = e
	g.tcpAddr = e.Addrs[0]
	return nil
}

func (g *Gateway) onTCPData(conn *nbio.Conn, c *client, data []byte) {
	buf := data
	if len(c.carry) > 0 {
		c.carry = append(c.carry, data...)
		buf = c.carry
	}
	for len(buf) > 0 {
		msg, n, err := g.cfg.TCPCodec.Split(buf, g.cfg.MaxMessageSize)
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
		g.onInput(c, bytes.Clone(msg))
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0:
		c.carry = nil
	case len(c.carry) == 0 || &buf[0] != &c.carry[0]:
		c.carry = append([]byte(nil), buf...)
	}
}
