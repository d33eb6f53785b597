package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
	"golang.org/x/sys/unix"
)

// leanShard runs conns mode: idle connections on nbio epoll loops, no
// goroutine and no buffer per connection. A connection is dialled and
// upgraded on a blocking socket by one of DialParallel goroutines, then
// handed to a poller, which answers pings, counts broadcasts and checks
// sample echoes. Every goroutine it starts is waited for by end or kill.
type leanShard struct {
	spec  shardSpec
	cfg   config
	urls  []*url.URL
	eng   *nbio.Engine
	conns []*leanConn
	errs  errCounts
	dialH *hist
	lat   *hist
	// stopping is set at the end: closes after it are not losses.
	stopping  atomic.Bool
	lost      atomic.Int64
	delivered atomic.Int64 // connections that got the broadcast
	dups      atomic.Int64
	unexpect  atomic.Int64
	// bcastPrefix starts the broadcast's payload; its send time follows.
	bcastPrefix []byte
	// echoDone gets a token back for each sample echo answered.
	echoDone chan struct{}
	sampleOK atomic.Int64
	// sampleTwice counts sample echoes answered again after their answer:
	// events are handled at least once (docs/guarantees.md), so a batch
	// whose ack NATS delayed past the gateway's AckTimeout may run twice.
	sampleTwice atomic.Int64
	closeOnce   sync.Once
	maskMu      sync.Mutex
	maskState   uint64
}

// leanConn is one connection: its socket, its index and what the poller
// parsed. bcasts and echo are written by the poller and read at the end.
type leanConn struct {
	nc     *nbio.Conn
	idx    int32
	bcasts atomic.Uint32
	// echo is echoNone, echoWaiting or echoOK.
	echo atomic.Uint32
	rd   frameReader
}

// States of a connection's sample echo.
const (
	echoNone uint32 = iota
	echoWaiting
	echoOK
)

// leanGOGC is the GC target of a process running a leanShard.
const leanGOGC = 20

// samplePrefix starts a sample echo's payload; the connection index follows.
const samplePrefix = "sample-"

// broadcastPrefix is the payload of conns mode's broadcast before its send
// time: "bc" + run id + ":".
func broadcastPrefix(runID string) string { return "bc" + runID + ":" }

func newLeanShard(spec shardSpec) *leanShard {
	s := &leanShard{spec: spec, cfg: spec.Cfg, dialH: newHist(), lat: newHist(),
		bcastPrefix: []byte(broadcastPrefix(spec.Cfg.RunID))}
	for _, raw := range spec.Cfg.URLs {
		u, _ := url.Parse(raw) // validated by parseMode
		s.urls = append(s.urls, u)
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	s.maskState = binary.LittleEndian.Uint64(seed[:]) | 1 // xorshift needs a non-zero state
	return s
}

// mask returns the next frame mask (xorshift: masks need not be secret
// for a load tool, only present).
func (s *leanShard) mask() uint32 {
	s.maskMu.Lock()
	x := s.maskState
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	s.maskState = x
	s.maskMu.Unlock()
	return uint32(x >> 32)
}

func (s *leanShard) write(c *leanConn, op byte, payload []byte) error {
	var buf [160]byte
	_, err := c.nc.Write(appendFrame(buf[:0], op, payload, s.mask()))
	return err
}

// leanHandler adapts one connection's frames to its shard.
type leanHandler struct {
	s *leanShard
	c *leanConn
}

func (h leanHandler) control(op byte, payload []byte) {
	switch op {
	case opPing:
		_ = h.s.write(h.c, opPong, payload)
	case opClose:
		_ = h.s.write(h.c, opClose, payload)
		_ = h.c.nc.CloseWithError(fmt.Errorf("server sent close %q", closeReason(payload)))
	}
}

func (h leanHandler) message(_ byte, payload []byte) {
	s, c := h.s, h.c
	if rest, ok := bytes.CutPrefix(payload, s.bcastPrefix); ok {
		if c.bcasts.Add(1) > 1 {
			s.dups.Add(1)
			return
		}
		if sent, err := strconv.ParseInt(string(rest), 10, 64); err == nil {
			s.lat.record(time.Duration(time.Now().UnixNano() - sent))
		}
		s.delivered.Add(1)
		return
	}
	if rest, ok := bytes.CutPrefix(payload, []byte(samplePrefix)); ok {
		if idx, err := strconv.Atoi(string(rest)); err == nil && idx == int(c.idx) {
			switch c.echo.Load() {
			case echoWaiting:
				c.echo.Store(echoOK)
				s.sampleOK.Add(1)
				s.echoDone <- struct{}{}
				return
			case echoOK:
				s.sampleTwice.Add(1)
				return
			}
		}
	}
	s.unexpect.Add(1)
}

// closeReason renders a close frame's payload: code and reason.
func closeReason(p []byte) string {
	if len(p) < 2 {
		return ""
	}
	return strconv.Itoa(int(p[0])<<8|int(p[1])) + " " + string(p[2:])
}

// start creates and starts the shard's engine: one poller, which reads
// into one 16 KiB buffer shared by its connections. Unless GOGC is set,
// the heap may grow 20 % over what is live (idle connections allocate
// little, so the GC costs little).
func (s *leanShard) start() error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(leanGOGC)
	}
	logging.SetLevel(logging.LevelNone)
	s.eng = nbio.NewEngine(nbio.Config{Name: "gwbench", NPoller: 1, ReadBufferSize: 16 << 10})
	s.eng.OnData(func(nc *nbio.Conn, data []byte) {
		c, ok := nc.Session().(*leanConn)
		if !ok {
			return
		}
		if err := c.rd.feed(data, leanHandler{s, c}); err != nil {
			_ = nc.CloseWithError(err)
		}
	})
	s.eng.OnClose(func(nc *nbio.Conn, err error) {
		if s.stopping.Load() {
			return
		}
		s.lost.Add(1)
		if err == nil {
			err = errors.New("closed by the server")
		}
		s.errs.add("read", err)
	})
	return s.eng.Start()
}

// bindNoPort lets the kernel pick the source port at connect time, by the
// whole 4-tuple (IP_BIND_ADDRESS_NO_PORT): one source address then holds
// a port range of connections to each server, not one range in all.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	return errors.Join(err, serr)
}

// dial opens connection idx: TCP from its source to its URL, the upgrade,
// then the socket moves to the poller.
func (s *leanShard) dial(ctx context.Context, idx int) (*leanConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	u := s.urls[idx%len(s.urls)]
	// No TCP keepalive: the server's WebSocket pings check liveness. Go's
	// default (a probe every 15 s of silence) is 67,000 probes/s per
	// million idle connections, enough to overflow loopback's backlog.
	d := net.Dialer{Control: bindNoPort, KeepAlive: -1}
	if src := s.cfg.Sources; len(src) > 0 {
		d.LocalAddr = tcpAddr(src[(idx/len(s.urls))%len(src)])
	}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	var key [16]byte
	_, _ = rand.Read(key[:])
	rest, err := handshake(conn, u, base64.StdEncoding.EncodeToString(key[:]))
	if !stop() || err != nil {
		_ = conn.Close()
		return nil, errors.Join(err, ctx.Err())
	}
	nc, err := nbio.NBConn(conn) // dups the socket and closes conn
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	// Frames sent right after the upgrade wait for the next read.
	c := &leanConn{nc: nc, idx: int32(idx), rd: frameReader{partial: rest}}
	if len(rest) == 0 {
		c.rd.partial = nil
	}
	nc.SetSession(c)
	if _, err := s.eng.AddConn(nc); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *leanShard) prepare(ctx context.Context) (*shardStats, error) {
	if err := s.start(); err != nil {
		return nil, fmt.Errorf("nbio engine: %w", err)
	}
	lo, hi := s.spec.Lo, s.spec.Hi
	slots := make([]*leanConn, hi-lo)
	var failed, attempted atomic.Int64
	t0 := time.Now()
	forEach(ctx, lo, hi, max(1, s.spec.DialParallel), func(i int) {
		if !pace(ctx, t0, i-lo, s.spec.DialRate) {
			return
		}
		attempted.Add(1)
		t := time.Now()
		c, err := s.dial(ctx, i)
		if err != nil {
			failed.Add(1)
			s.errs.add("dial", err)
			return
		}
		s.dialH.record(time.Since(t))
		slots[i-lo] = c
	})
	st := &shardStats{DialNanos: int64(time.Since(t0)), Dial: s.dialH}
	s.conns = make([]*leanConn, 0, len(slots))
	for _, c := range slots {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	if notTried := int64(hi-lo) - attempted.Load(); notTried > 0 {
		failed.Add(notTried)
		s.errs.addKey("dial: not attempted (interrupted)", notTried)
	}
	st.Opened = int64(len(s.conns))
	st.Failed = failed.Load()
	st.Errors = s.errs.snapshot()
	// What dialling left (goroutine stacks, handshake buffers) goes back
	// to the system: the hold measures what holding costs.
	debug.FreeOSMemory()
	return st, nil
}

func (s *leanShard) begin() error { return nil }

func (s *leanShard) end(ctx context.Context, e endInfo) (*shardStats, error) {
	st := &shardStats{}
	if kb, err := readRSS(syscall.Getpid()); err == nil {
		st.ClientRSSKB = kb
	}
	if len(e.Sent) > 0 && e.Sent[0] > 0 {
		s.awaitBroadcast(ctx, s.cfg.Drain)
		st.Receivers = int64(len(s.conns))
		st.Expected = st.Receivers
		st.Delivered = s.delivered.Load()
		st.Duplicates = s.dups.Load()
		st.Latency = s.lat
	}
	if !e.Interrupted {
		s.sample(ctx, st)
	}
	st.Unexpected, st.SampleTwice = s.unexpect.Load(), s.sampleTwice.Load()
	st.Lost = s.lost.Load()
	st.Errors = s.errs.snapshot()
	return st, nil // the connections stay open until kill: see execute
}

// awaitBroadcast waits until every connection got the broadcast, or for
// drain at most.
func (s *leanShard) awaitBroadcast(ctx context.Context, drain time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, drain)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.delivered.Load() < int64(len(s.conns)) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sample checks that sampled connections are alive with one echo each,
// DialParallel of them in flight at once (more floods the workers of a
// gateway on a small box: 4,096 at once over 300,000 connections made
// gateways resend batches the workers had no room for). The sample is spread evenly over
// all connection indexes, so a split run samples the same connections as
// one process would. It stops when no echo came back for DialTimeout.
func (s *leanShard) sample(ctx context.Context, st *shardStats) {
	n, want := s.cfg.N, s.cfg.Sample
	if want < 0 || want > n {
		want = n
	}
	k := 0
	for j := 0; j < want; j++ {
		if idx := j * n / want; idx >= s.spec.Lo && idx < s.spec.Hi {
			k++
		}
	}
	k = min(k, len(s.conns))
	picked := make([]*leanConn, k)
	for j := range picked {
		picked[j] = s.conns[j*len(s.conns)/k]
	}
	st.Sampled = int64(len(picked))
	if len(picked) == 0 {
		return
	}
	window := max(1, s.spec.DialParallel)
	s.echoDone = make(chan struct{}, len(picked))
	stall := time.NewTimer(s.cfg.DialTimeout)
	defer stall.Stop()
	inFlight, answered := 0, 0
	for i := 0; answered < len(picked); {
		if i < len(picked) && inFlight < window {
			c := picked[i]
			c.echo.Store(echoWaiting)
			if err := s.write(c, opText, []byte(samplePrefix+strconv.Itoa(int(c.idx)))); err != nil {
				s.errs.add("sample", err)
				answered++ // nothing to wait for
			} else {
				inFlight++
			}
			i++
			continue
		}
		select {
		case <-s.echoDone:
			inFlight--
			answered++
			stall.Reset(s.cfg.DialTimeout)
		case <-stall.C:
			s.errs.addKey(fmt.Sprintf("sample: no echo within %v", s.cfg.DialTimeout), int64(inFlight))
			st.SampleOK = s.sampleOK.Load()
			return
		case <-ctx.Done():
			st.SampleOK = s.sampleOK.Load()
			return
		}
	}
	st.SampleOK = s.sampleOK.Load()
}

// kill closes every connection (a normal close frame first) and stops the
// engine. Idempotent.
func (s *leanShard) kill() {
	s.stopping.Store(true)
	s.closeOnce.Do(func() {
		if s.eng == nil {
			return
		}
		for _, c := range s.conns {
			_ = s.write(c, opClose, []byte{0x03, 0xE8})
			_ = c.nc.Close()
		}
		s.eng.Stop()
	})
}
