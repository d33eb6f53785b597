package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// errTLSBacklog closes a TLS client whose ciphertext arrives faster than
// its goroutine decrypts it, past MaxPendingEventBytes.
var errTLSBacklog = errors.New("gateway: TLS input waits past MaxPendingEventBytes")

// loadTLS reads a certificate for Go's crypto/tls.
func loadTLS(f *TLSFiles, nextProtos ...string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: nextProtos}, nil
}

// tlsReadSize is how much plaintext a TLS connection's goroutine takes at
// a time. Small, because an idle connection holds it; a larger record is
// taken in several reads without a system call.
const tlsReadSize = 4 << 10

// tlsKeptInput is the largest input buffer a TLS connection keeps between
// reads: enough for small messages, not for a handshake's.
const tlsKeptInput = 1 << 10

// tlsSession serves one TLS client with Go's crypto/tls on a poller's
// socket (nbio's own TLS is a 2021 fork of crypto/tls). The poller reads
// the socket and hands the ciphertext in (Parse); what crypto/tls writes
// goes to the nbio.Conn, which queues what the socket does not take, up to
// SendQueueLimit, as for plain clients, so writers never block. A
// goroutine per connection runs the handshake, decrypts, and feeds the
// plaintext to the listener's usual code (serve). To nbhttp the session is
// the connection's parser: its engine feeds it and tells it when the socket
// closed (CloseAndClean).
type tlsSession struct {
	nbc   *nbio.Conn
	tls   *tls.Conn
	limit int

	mu   sync.Mutex
	wake sync.Cond // signalled when input arrives or the socket closes
	// in[off:] is ciphertext not yet taken by crypto/tls.
	in     []byte
	off    int
	closed bool
	// cause is what nbio reported when the socket closed (nil: orderly).
	cause error
	// client is a raw TCP listener's client, once the handshake is done.
	client *client
}

func newTLSSession(c *nbio.Conn, cfg *tls.Config, limit int) *tlsSession {
	s := &tlsSession{nbc: c, limit: limit}
	s.wake.L = &s.mu
	s.tls = tls.Server(s, cfg)
	return s
}

// Parse takes ciphertext the poller read; it copies it.
func (s *tlsSession) Parse(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.in)-s.off+len(data) > s.limit {
		return errTLSBacklog
	}
	s.in = append(s.in, data...)
	s.wake.Signal()
	return nil
}

// CloseAndClean is told that the socket closed, and why.
func (s *tlsSession) CloseAndClean(err error) { s.socketClosed(err) }

// socketClosed ends the input and returns the client, if one was attached.
func (s *tlsSession) socketClosed(err error) *client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed, s.cause = true, err
		s.wake.Signal()
	}
	return s.client
}

// attach records c as the session's client; false when the socket closed
// already, and nobody else will close c.
func (s *tlsSession) attach(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.client = c
	return true
}

// closedBy reports whether the socket closed, and what nbio said then.
func (s *tlsSession) closedBy() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed, s.cause
}

// UnderlayerConn is the socket, for nbhttp.
func (s *tlsSession) UnderlayerConn() net.Conn { return s.nbc }

// Read gives crypto/tls the ciphertext the poller read, waiting for it.
func (s *tlsSession) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.off == len(s.in) {
		if s.closed {
			return 0, io.EOF
		}
		s.wake.Wait()
	}
	n := copy(b, s.in[s.off:])
	s.off += n
	if s.off == len(s.in) {
		s.in, s.off = s.in[:0], 0
		if cap(s.in) > tlsKeptInput { // a handshake or a burst grew it: not kept idle
			s.in = nil
		}
	}
	return n, nil
}

func (s *tlsSession) Write(b []byte) (int, error) { return s.nbc.Write(b) }
func (s *tlsSession) Close() error                { return s.nbc.Close() }
func (s *tlsSession) LocalAddr() net.Addr         { return s.nbc.LocalAddr() }
func (s *tlsSession) RemoteAddr() net.Addr        { return s.nbc.RemoteAddr() }

// Deadlines are the gateway's timers (HandshakeTimeout, heartbeats), which
// close the socket; writes never wait.
func (s *tlsSession) SetDeadline(time.Time) error      { return nil }
func (s *tlsSession) SetReadDeadline(time.Time) error  { return nil }
func (s *tlsSession) SetWriteDeadline(time.Time) error { return nil }

// handshake runs the TLS handshake on a goroutine of its own, so that the
// deep stack it grows (ML-KEM's arrays among others) goes away with it
// rather than stay with the connection's goroutine while the client idles.
func (s *tlsSession) handshake() error {
	done := make(chan error, 1)
	go func() { done <- s.tls.Handshake() }()
	return <-done
}

// serve decrypts until the connection ends and hands the plaintext to
// handle. It returns nbio's close error when the socket closed under it
// (nil for an orderly close), else the TLS or handle error that stopped it;
// the caller closes the socket then.
func (s *tlsSession) serve(handle func([]byte) error) error {
	buf := make([]byte, tlsReadSize)
	for {
		n, err := s.tls.Read(buf)
		if n > 0 {
			if herr := handle(buf[:n]); herr != nil {
				return herr
			}
		}
		if err != nil {
			if closed, cause := s.closedBy(); closed {
				return cause
			}
			return err
		}
	}
}

// tlsListener hands the connections it accepts to serve instead of
// returning them: nbhttp would serve them with its own TLS. nbhttp sees
// only its errors, and closes it when its engine stops.
type tlsListener struct {
	net.Listener
	serve func(net.Conn)
}

func (l tlsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.serve(c)
	}
}

// wssAcceptor serves a wss:// listener's connections: the engine's pollers
// do their sockets' I/O, crypto/tls the rest (tlsSession).
type wssAcceptor struct {
	g   *Gateway
	cfg *tls.Config
	// e and opened (raceBridge's) are set once the engine exists, before
	// it starts listening.
	e      *nbhttp.Engine
	opened func()
}

// listen is the engine's Listen.
func (a *wssAcceptor) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return tlsListener{Listener: ln, serve: a.accept}, nil
}

func (a *wssAcceptor) accept(raw net.Conn) {
	nbc, err := nbio.NBConn(raw)
	if err != nil {
		_ = raw.Close()
		return
	}
	s := newTLSSession(nbc, a.cfg, a.g.cfg.MaxPendingEventBytes)
	nbc.SetSession(s)
	nbc.OnData(a.e.DataHandler)
	// The engine may read the socket before OnOpen returns: the race
	// detector's edge goes first.
	a.opened()
	// It runs OnOpen, which starts the handshake clock: HandshakeTimeout
	// bounds the TLS and the WebSocket handshake together.
	if a.e.AddTransferredConn(nbc) != nil {
		return // refused and closed (MaxLoad)
	}
	go a.g.serveWSS(s, a.e)
}

// serveWSS is a wss:// connection's goroutine: nbhttp's parser reads the
// upgrade request from the plaintext, then the WebSocket conn it made.
// Handlers run here, as a plain connection's run on its poller.
func (g *Gateway) serveWSS(s *tlsSession, e *nbhttp.Engine) {
	if err := s.handshake(); err != nil {
		g.log.Debug("TLS handshake failed", "remote", s.nbc.RemoteAddr().String(), "err", err)
		_ = s.nbc.Close()
		return
	}
	conn := &nbhttp.Conn{Conn: s.tls}
	parser := nbhttp.NewParser(conn, e, nbhttp.NewServerProcessor(), false, nbhttp.SyncExecutor)
	conn.Parser = parser
	var pc nbhttp.ParserCloser = parser
	err := s.serve(func(data []byte) error {
		err := pc.Parse(data)
		if parser != nil && parser.ParserCloser != nil { // upgraded
			pc = parser.ParserCloser
			parser.CloseAndClean(nil) // frees the HTTP parser's buffers only
			parser = nil
		}
		return err
	})
	if err != nil {
		g.log.Debug("wss connection ended", "remote", s.nbc.RemoteAddr().String(), "err", err)
	}
	pc.CloseAndClean(err)
	_ = s.nbc.Close()
}

// tlsTCPHandlers serve a +tls raw TCP listener's clients through
// tlsSession; the engine accepts and polls as for plain TCP.
func (g *Gateway) tlsTCPHandlers(e *nbio.Engine, cfg *tls.Config, codec protocol.Codec) {
	opened := raceBridgeTCP(e)
	e.OnOpen(func(conn *nbio.Conn) {
		defer opened()
		s := newTLSSession(conn, cfg, g.cfg.MaxPendingEventBytes)
		conn.SetSession(s)
		go g.serveTLSTCP(s, codec)
	})
	e.OnData(func(conn *nbio.Conn, data []byte) {
		s, ok := conn.Session().(*tlsSession)
		if !ok {
			_ = conn.Close()
			return
		}
		if err := s.Parse(data); err != nil {
			if c := s.socketClosed(err); c != nil {
				c.setReason(bus.CloseEventQueueFull)
			}
			_ = conn.Close()
		}
	})
	e.OnClose(func(conn *nbio.Conn, err error) {
		s, ok := conn.Session().(*tlsSession)
		if !ok {
			return
		}
		if c := s.socketClosed(err); c != nil {
			g.closedTCP(c, err)
		}
	})
}

// serveTLSTCP is a +tls TCP connection's goroutine. Its client exists from
// the end of the handshake on: nothing can be sent to it before.
func (g *Gateway) serveTLSTCP(s *tlsSession, codec protocol.Codec) {
	defer func() { _ = s.nbc.Close() }()
	timer := time.AfterFunc(g.cfg.HandshakeTimeout, func() { _ = s.nbc.Close() })
	err := s.handshake()
	if !timer.Stop() || err != nil {
		g.log.Debug("TLS handshake failed", "remote", s.nbc.RemoteAddr().String(), "err", err)
		return
	}
	t := &tcpTransport{c: s.tls, codec: codec}
	c := g.newClient(s.nbc.RemoteAddr().String(), t)
	if c == nil {
		return
	}
	if !s.attach(c) {
		g.onSocketClosed(c) // closed during the handshake's last step
		return
	}
	g.pushEvent(c, bus.Event{Kind: bus.EventConnect})
	err = s.serve(func(data []byte) error {
		g.onTCPData(s.nbc, c, t, data)
		return nil
	})
	if closed, _ := s.closedBy(); !closed && err != nil && !errors.Is(err, io.EOF) {
		c.setReason(bus.CloseProtocolError)
	}
}
