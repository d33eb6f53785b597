package gateway

import (
	"errors"
	"fmt"
	"sync"

	"github.com/lesismal/llib/std/crypto/tls"

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
	// TLS, if set, makes clients speak TLS first.
	TLS *TLSFiles
}

type tcpTransport struct {
	sendQueue
	c     *nbio.Conn
	codec protocol.Codec
	// tls is the TLS layer on c, or nil for plain TCP.
	tls *tls.Conn
	// Only the connection's reader touches these: secured is set once the
	// TLS handshake is done; carry is input not yet cut into messages.
	secured bool
	carry   []byte
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
	var err error
	if t.tls != nil {
		_, err = t.tls.Write(frames)
	} else {
		_, err = t.c.Write(frames)
	}
	return err
}

func (t *tcpTransport) ping() {}

func (t *tcpTransport) close(last []byte) {
	if len(last) > 0 {
		_ = t.send(last, false)
	}
	_ = t.c.Close()
}

// tlsReadBuffers hold decrypted input between a poller's read and the codec.
var tlsReadBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// loadTLS reads a certificate for nbio's TLS (llib's fork of crypto/tls).
func loadTLS(f *TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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
		MaxWriteBufferSize: g.cfg.SendQueueLimit,
		ReadBufferSize:     16 << 10,
	})
	e.OnWrittenSize(func(conn *nbio.Conn, _ []byte, n int) {
		if c, ok := conn.Session().(*client); ok {
			c.t.(*tcpTransport).written(n)
		}
	})
	opened := raceBridgeTCP(e)
	e.OnOpen(func(conn *nbio.Conn) {
		defer opened()
		t := &tcpTransport{c: conn, codec: codec}
		if tlsConfig != nil {
			t.tls = tls.NewConn(conn, tlsConfig, false, true)
		}
		c := g.newClient(conn.RemoteAddr().String(), t)
		if c == nil {
			_ = conn.Close()
			return
		}
		conn.SetSession(c)
		if t.tls == nil {
			g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
		} // else at the end of the handshake: nothing can be sent before it
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
		if t.tls != nil {
			g.onTLSData(conn, c, t, data)
			return
		}
		g.onTCPData(conn, c, t, data)
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
	return &tcpServer{engine: e, codec: codec, addr: e.Addrs[0], tls: tlsConfig != nil}, nil
}

// onTLSData decrypts what arrived and hands the plain bytes to onTCPData.
func (g *Gateway) onTLSData(conn *nbio.Conn, c *client, t *tcpTransport, data []byte) {
	buf := tlsReadBuffers.Get().(*[]byte)
	defer tlsReadBuffers.Put(buf)
	defer t.tls.ResetOrFreeBuffer()
	in := data
	for {
		_, n, err := t.tls.AppendAndRead(in, *buf)
		in = nil
		if err != nil {
			c.setReason(bus.CloseProtocolError)
			_ = conn.Close()
			return
		}
		if !t.secured && t.tls.ConnectionState().HandshakeComplete {
			t.secured = true
			g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
		}
		if n == 0 {
			return
		}
		g.onTCPData(conn, c, t, (*buf)[:n])
	}
}

func (g *Gateway) onTCPData(conn *nbio.Conn, c *client, t *tcpTransport, data []byte) {
	buf := data
	if len(t.carry) > 0 {
		t.carry = append(t.carry, data...)
		buf = t.carry
	}
	for len(buf) > 0 {
		msg, n, err := t.codec.Split(buf, g.cfg.MaxMessageSize)
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
