package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of the reference server.
const (
	DefaultRefAddr         = "127.0.0.1:7300"
	DefaultRefSendQueue    = 256
	DefaultRefReadBuffer   = 1024
	DefaultRefWriteBuffer  = 4096
	DefaultRefMaxMessage   = 1 << 20
	DefaultRefWriteTimeout = 10 * time.Second
)

// refConfig configures the reference server. Zero means the default.
type refConfig struct {
	// SendQueue is the capacity, in messages, of a connection's send
	// channel; a connection whose channel is full is dropped. Default 256.
	SendQueue int
	// ReadBuffer and WriteBuffer are gorilla's buffer sizes in bytes;
	// write buffers come from a pool shared by all connections.
	// Defaults 1024 and 4096.
	ReadBuffer, WriteBuffer int
	// MaxMessage is the largest message read, in bytes. Default 1 MiB.
	MaxMessage int64
	// WriteTimeout bounds one write. Default 10 s.
	WriteTimeout time.Duration
	// Logger gets lifecycle and drop messages; nil means slog.Default().
	Logger *slog.Logger
}

func (c refConfig) withDefaults() refConfig {
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultRefSendQueue
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultRefReadBuffer
	}
	if c.WriteBuffer <= 0 {
		c.WriteBuffer = DefaultRefWriteBuffer
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = DefaultRefMaxMessage
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultRefWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// refServer is the reference the stack is compared against: the whole
// bench protocol on gorilla/websocket and net/http with an in-memory hub,
// written the usual Go way. Each connection has a reading goroutine and a
// writing goroutine fed by a buffered channel; a
// connection whose channel is full is dropped. A broadcast shares one
// payload slice between all its recipients, write buffers are pooled, and
// reads go through pooled scratch buffers, so a message costs one
// allocation of its exact size.
type refServer struct {
	cfg  refConfig
	up   websocket.Upgrader
	mu   sync.RWMutex
	all  map[*refConn]struct{}
	grps map[string]map[*refConn]struct{}
	// closed refuses new connections; wg counts the connection goroutines
	// and is only added to under mu while !closed.
	closed  bool
	wg      sync.WaitGroup
	drops   atomic.Int64
	lastLog atomic.Int64
	// scratch holds *[]byte read buffers; ok is the join reply, shared.
	scratch sync.Pool
	ok      []byte
}

// refConn is one client of the reference server.
type refConn struct {
	ws   *websocket.Conn
	send chan []byte
	done chan struct{}
	once sync.Once
	// dropped is set when the send queue overflowed.
	dropped atomic.Bool
	// groups is the connection's memberships, used by its reader only.
	groups []string
}

// maxScratch is the largest scratch buffer kept in the pool.
const maxScratch = 64 << 10

func newRefServer(cfg refConfig) *refServer {
	cfg = cfg.withDefaults()
	return &refServer{
		cfg: cfg,
		up: websocket.Upgrader{
			ReadBufferSize:  cfg.ReadBuffer,
			WriteBufferSize: cfg.WriteBuffer,
			WriteBufferPool: &sync.Pool{},
			CheckOrigin:     func(*http.Request) bool { return true },
		},
		all:     make(map[*refConn]struct{}),
		grps:    make(map[string]map[*refConn]struct{}),
		scratch: sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		ok:      []byte("ok"),
	}
}

// serve serves ln until ctx is done, then closes every connection and
// returns once all their goroutines have.
func (s *refServer) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err == nil {
		err = <-errc
	}
	s.closeAll()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// closeAll refuses new connections and closes the current ones.
func (s *refServer) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*refConn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

func (s *refServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered with an HTTP error.
	}
	ws.SetReadLimit(s.cfg.MaxMessage)
	c := &refConn{ws: ws, send: make(chan []byte, s.cfg.SendQueue), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.all[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	// Both loops get fresh goroutines and the handler returns, as in
	// gorilla's chat example: the net/http goroutine, whose stack grew
	// while serving HTTP, ends instead of idling as the reader.
	go s.writeLoop(c)
	go s.readLoop(c)
}

// kill stops the connection: the writer returns and the reader's next
// read fails. Safe from any goroutine, any number of times.
func (c *refConn) kill() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.NetConn().Close()
	})
}

// deliver queues m without blocking; a full queue drops the connection.
func (s *refServer) deliver(c *refConn, m []byte) {
	select {
	case c.send <- m:
	default:
		// Until its reader has left the hub, a dropped connection may be
		// delivered to again: count and log it once.
		if !c.dropped.CompareAndSwap(false, true) {
			return
		}
		c.kill()
		n := s.drops.Add(1)
		// At most one log line per second, with the running count.
		now := time.Now().Unix()
		if last := s.lastLog.Load(); now > last && s.lastLog.CompareAndSwap(last, now) {
			s.cfg.Logger.Warn("refserver: send queue full, connection dropped",
				"remote", c.ws.RemoteAddr().String(), "queue", cap(c.send), "drops_total", n)
		}
	}
}

func (s *refServer) writeLoop(c *refConn) {
	defer s.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.send:
			_ = c.ws.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, m); err != nil {
				c.kill()
				return
			}
		}
	}
}

func (s *refServer) readLoop(c *refConn) {
	defer s.wg.Done()
	defer s.leave(c)
	defer c.kill()
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		// The scratch buffer is held only while a message is handled, so
		// an idle connection holds none.
		bp := s.scratch.Get().(*[]byte)
		buf, err := readAll(r, (*bp)[:0])
		if err == nil {
			s.handle(c, buf)
		}
		if cap(buf) <= maxScratch {
			*bp = buf
			s.scratch.Put(bp)
		}
		if err != nil {
			return
		}
	}
}

// readAll appends r to buf, growing it as needed.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// handle runs one bench frame; msg is the reader's scratch buffer, so
// what is queued is copied out of it.
func (s *refServer) handle(c *refConn, msg []byte) {
	if len(msg) >= 2 && msg[1] == ':' {
		switch msg[0] {
		case 'a':
			s.broadcast(bytes.Clone(msg[2:]))
			return
		case 'j':
			s.join(c, string(msg[2:]))
			s.deliver(c, s.ok)
			return
		case 'g':
			if i := bytes.IndexByte(msg[2:], ':'); i >= 0 {
				s.toGroup(string(msg[2:2+i]), bytes.Clone(msg[3+i:]))
				return
			}
		}
	}
	s.deliver(c, bytes.Clone(msg))
}

// broadcast and toGroup hold the read lock while they queue: deliver never
// blocks (a full queue drops the connection instead).
func (s *refServer) broadcast(m []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.all {
		s.deliver(c, m)
	}
}

func (s *refServer) toGroup(g string, m []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.grps[g] {
		s.deliver(c, m)
	}
}

func (s *refServer) join(c *refConn, g string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	members := s.grps[g]
	if members == nil {
		members = make(map[*refConn]struct{})
		s.grps[g] = members
	}
	if _, ok := members[c]; !ok {
		members[c] = struct{}{}
		c.groups = append(c.groups, g)
	}
}

// leave removes c from the hub and from its groups.
func (s *refServer) leave(c *refConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.all, c)
	for _, g := range c.groups {
		if members := s.grps[g]; members != nil {
			delete(members, c)
			if len(members) == 0 {
				delete(s.grps, g)
			}
		}
	}
}

// runRefServer is `gwbench refserver`.
func runRefServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg refConfig
	fs := flag.NewFlagSet("gwbench refserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", DefaultRefAddr, "listen `address`")
	fs.IntVar(&cfg.SendQueue, "send-queue", DefaultRefSendQueue, "messages queued per connection before it is dropped")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", DefaultRefReadBuffer, "read buffer bytes per connection")
	fs.IntVar(&cfg.WriteBuffer, "write-buffer", DefaultRefWriteBuffer, "write buffer bytes (pooled)")
	fs.Int64Var(&cfg.MaxMessage, "max-message", DefaultRefMaxMessage, "largest message read, in bytes")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", DefaultRefWriteTimeout, "timeout of one write")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: gwbench refserver [flags]\n\nThe reference bench-protocol server: gorilla/websocket, a goroutine pair per connection, an in-memory hub.\n\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "gwbench refserver: pid %d listening on ws://%s/\n", os.Getpid(), ln.Addr())
	err = newRefServer(cfg).serve(ctx, ln)
	fmt.Fprintln(stdout, "gwbench refserver: stopped")
	return err
}
