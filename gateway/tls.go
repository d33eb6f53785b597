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

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// errTLSBacklog closes a TLS client whose ciphertext arrives faster than
// it is decrypted, past MaxPendingEventBytes.
var errTLSBacklog = errors.New("gateway: TLS input waits past MaxPendingEventBytes")

// errTLSProtocol wraps what crypto/tls refused in a client's input.
var errTLSProtocol = errors.New("gateway: bad TLS input")

// wouldBlock is what a live tlsSession gives crypto/tls when the rest of a
// record has not arrived yet: for a temporary net.Error, crypto/tls keeps
// the partial record and its state, and the next Read goes on from there.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "gateway: TLS record incomplete" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// loadTLS reads a certificate for Go's crypto/tls.
func loadTLS(f *TLSFiles, nextProtos ...string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: nextProtos}, nil
}

// plaintextBuffers hold what crypto/tls decrypted while it is handled.
var plaintextBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// tlsKeptInput is the largest input buffer a TLS connection keeps between
// reads: enough for small messages, not for a handshake's.
const tlsKeptInput = 1 << 10

// tlsSession serves one TLS client with Go's crypto/tls on a poller's
// socket (nbio's own TLS is a 2021 fork of crypto/tls). The poller reads
// the socket and hands the ciphertext in (Parse); what crypto/tls writes
// goes to the nbio.Conn, which queues what the socket does not take, up to
// SendQueueLimit, as for plain clients, so writers never block.
//
// crypto/tls's handshake only blocks, so it runs on a goroutine of its own,
// which waits in Read for what the poller hands in. Once it is done the
// session goes live: the poller decrypts what it read and feeds the
// plaintext to the listener's usual code (handle), as for plain clients,
// and Read says wouldBlock instead of waiting. No goroutine stays with an
// idle client. To nbhttp the session is the connection's parser: its engine
// feeds it and tells it when the socket closed (CloseAndClean).
type tlsSession struct {
	nbc   *nbio.Conn
	tls   *tls.Conn
	limit int
	// sent counts what the client's transport wrote and the socket has
	// not taken yet: crypto/tls adds its record overhead, which is only
	// reported (see sendQueue).
	sent sendQueue
	// handle takes plaintext, and end learns that the socket closed and
	// why; both are set when the session goes live, and run one at a time.
	handle func([]byte) error
	end    func(error)

	mu   sync.Mutex
	wake sync.Cond // the handshake waits on it for input or the close
	// in[off:] is ciphertext not yet taken by crypto/tls.
	in  []byte
	off int
	// live: the handshake is done. draining: a goroutine is decrypting and
	// handling input; others only append to in. ended: end has run.
	live, draining, closed, ended bool
	// cause is what nbio reported when the socket closed (nil: orderly).
	cause error
}

func newTLSSession(c *nbio.Conn, cfg *tls.Config, limit int) *tlsSession {
	s := &tlsSession{nbc: c, limit: limit}
	s.wake.L = &s.mu
	s.tls = tls.Server(s, cfg)
	return s
}

// Parse takes ciphertext the poller read (it copies it) and, once the
// session is live, decrypts and handles it unless another goroutine is at
// it. An error means the socket must close.
func (s *tlsSession) Parse(data []byte) error {
	s.mu.Lock()
	if len(s.in)-s.off+len(data) > s.limit {
		s.mu.Unlock()
		return errTLSBacklog
	}
	s.in = append(s.in, data...)
	if !s.live {
		s.wake.Signal()
	}
	if !s.live || s.draining {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	s.mu.Unlock()
	return s.drain()
}

// goLive ends the handshake's goroutine: from now on the poller drains. It
// drains once itself, for input that came with the handshake's last flight.
func (s *tlsSession) goLive(handle func([]byte) error, end func(error)) {
	s.mu.Lock()
	s.handle, s.end, s.live = handle, end, true
	if s.closed {
		s.ended = true
		s.mu.Unlock()
		end(s.cause)
		return
	}
	s.draining = true
	s.mu.Unlock()
	if err := s.drain(); err != nil {
		s.nbc.CloseWithError(err)
	}
}

// drain decrypts and handles input until crypto/tls needs more. The caller
// set draining; drain clears it, and runs end if the socket closed
// meanwhile. It returns why the socket must close, if it must.
func (s *tlsSession) drain() (err error) {
	buf := plaintextBuffers.Get().(*[]byte)
	defer plaintextBuffers.Put(buf)
	for err == nil {
		n, rerr := s.tls.Read(*buf)
		if n > 0 {
			// Input that came before the client closed is handled; once
			// the gateway closed the socket (a bad message), no more is.
			wasClosed, _ := s.nbc.IsClosed()
			err = s.handle((*buf)[:n])
			if closed, _ := s.nbc.IsClosed(); err == nil && closed && !wasClosed {
				err = net.ErrClosed
			}
		}
		switch {
		case err != nil:
		case errors.As(rerr, new(wouldBlock)):
			s.mu.Lock()
			if s.off < len(s.in) { // more came while we worked
				s.mu.Unlock()
				continue
			}
			s.stopDraining()
			return nil
		case errors.Is(rerr, io.EOF): // close_notify, or the socket closed
			err = rerr
		case rerr != nil:
			err = fmt.Errorf("%w: %w", errTLSProtocol, rerr)
		}
	}
	s.mu.Lock()
	s.stopDraining()
	return err
}

// stopDraining clears draining and runs end if the socket closed; s.mu is
// held on entry and released.
func (s *tlsSession) stopDraining() {
	s.draining = false
	run := s.closed && !s.ended
	s.ended = s.ended || run
	cause := s.cause
	s.mu.Unlock()
	if run {
		s.end(cause)
	}
}

// CloseAndClean is told that the socket closed, and why. end runs now,
// unless the handshake is not done or a drain is under way (they run it).
func (s *tlsSession) CloseAndClean(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed, s.cause = true, err
	s.wake.Signal()
	if !s.live || s.draining {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	s.end(err)
}

// UnderlayerConn is the socket, for nbhttp.
func (s *tlsSession) UnderlayerConn() net.Conn { return s.nbc }

// Read gives crypto/tls the ciphertext the poller read. During the
// handshake it waits for it; then it says wouldBlock.
func (s *tlsSession) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.off == len(s.in) {
		switch {
		case s.closed:
			return 0, io.EOF
		case s.live:
			return 0, wouldBlock{}
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
	hs  *handshakes
	// e and opened (raceBridge's) are set once the engine exists, before
	// it starts listening.
	e      *nbhttp.Engine
	opened func()
}

// listen is the engine's Listen.
func (a *wssAcceptor) listen(network, addr string) (net.Listener, error) {
	ln, err := a.g.listenClients(network, addr)
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
	go a.serveWSS(s)
}

// serveWSS is a wss:// connection's handshake goroutine. Once live, nbhttp's
// parser reads the upgrade request from the plaintext, its head bounded as
// on ws://, then the frame guard and the WebSocket conn it made (the
// upgrade installs them as the parser's ParserCloser); handlers run on the
// poller, as for plain connections.
func (a *wssAcceptor) serveWSS(s *tlsSession) {
	if err := s.tls.Handshake(); err != nil {
		a.g.log.Debug("TLS handshake failed", "remote", s.nbc.RemoteAddr().String(), "err", err)
		_ = s.nbc.Close()
		return
	}
	conn := &nbhttp.Conn{Conn: s.tls}
	parser := nbhttp.NewParser(conn, a.e, nbhttp.NewServerProcessor(), false, nbhttp.SyncExecutor)
	conn.Parser = parser
	var pc nbhttp.ParserCloser = parser
	s.goLive(func(data []byte) error {
		if parser != nil { // not upgraded yet
			if err := a.hs.bound(s.nbc, s.tls, data); err != nil {
				return err
			}
		}
		err := pc.Parse(data)
		switch {
		case parser == nil:
		case parser.ParserCloser != nil: // upgraded
			pc = parser.ParserCloser
			parser.CloseAndClean(nil) // frees the HTTP parser's buffers only
			parser = nil
		case a.hs.refused(s.nbc): // answered without an upgrade
			_ = s.tls.Close()
		}
		return err
	}, func(err error) { pc.CloseAndClean(err) })
}

// tlsTCPHandlers serve a +tls raw TCP listener's clients through
// tlsSession; the engine accepts and polls as for plain TCP.
func (g *Gateway) tlsTCPHandlers(e *nbio.Engine, cfg *tls.Config, codec protocol.Codec) {
	opened := raceBridgeTCP(e)
	e.OnOpen(func(conn *nbio.Conn) {
		defer opened()
		closeOnExec(conn)
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
			conn.CloseWithError(err)
		}
	})
	e.OnClose(func(conn *nbio.Conn, err error) {
		if s, ok := conn.Session().(*tlsSession); ok {
			s.CloseAndClean(err)
		}
	})
}

// serveTLSTCP is a +tls TCP connection's handshake goroutine. Its client
// exists from the end of the handshake on: nothing can be sent before.
func (g *Gateway) serveTLSTCP(s *tlsSession, codec protocol.Codec) {
	timer := time.AfterFunc(g.cfg.HandshakeTimeout, func() { _ = s.nbc.Close() })
	err := s.tls.Handshake()
	if !timer.Stop() || err != nil {
		g.log.Debug("TLS handshake failed", "remote", s.nbc.RemoteAddr().String(), "err", err)
		_ = s.nbc.Close()
		return
	}
	t := &tcpTransport{sendQueue: &s.sent, c: s.tls, codec: codec}
	c := g.newClient(s.nbc.RemoteAddr().String(), t)
	if c == nil {
		_ = s.nbc.Close()
		return
	}
	g.startClient(c, "", bus.Event{Kind: bus.EventConnect})
	s.goLive(func(data []byte) error {
		g.onTCPData(s.nbc, c, t, data)
		return nil
	}, func(err error) {
		switch {
		case errors.Is(err, errTLSBacklog):
			c.setReason(bus.CloseEventQueueFull)
		case errors.Is(err, errTLSProtocol):
			c.setReason(bus.CloseProtocolError)
		}
		g.closedTCP(c, err)
	})
}
