package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// A run's connections are cut into shards: contiguous ranges [Lo, Hi) of
// the connection indexes. One shard runs in this process (localShard) or,
// when the open-file limit is too small, each runs in a child process
// (childShard) that speaks wireMsg lines on its stdin and stdout. The
// driver (broadcaster, group senders) always runs in the parent.
//
// The phases are the same for every mode and both kinds:
//
//	prepare  dial (and join); the stats say how that went
//	begin    start the load (echo loops); receivers already read
//	end      stop, wait for what is still due, close, report
type shard interface {
	prepare(ctx context.Context) (*shardStats, error)
	begin() error
	end(ctx context.Context, e endInfo) (*shardStats, error)
	// kill releases everything at once; for error paths. Idempotent.
	kill()
}

// shardSpec is what one shard is told.
type shardSpec struct {
	Cfg          config `json:"cfg"`
	Index        int    `json:"index"`
	Lo           int    `json:"lo"`
	Hi           int    `json:"hi"`
	DialParallel int    `json:"dial_parallel"`
	// DialRate is this shard's share of --dial-rate (0: no cap).
	DialRate float64   `json:"dial_rate"`
	Deadline time.Time `json:"deadline"`
}

// endInfo tells the shards how the load went: how many messages were sent
// (fanout: one count; group: one per group).
type endInfo struct {
	Sent        []int64 `json:"sent,omitempty"`
	Interrupted bool    `json:"interrupted,omitempty"`
}

// shardStats is what a shard reports after prepare and after end. Stats of
// several shards merge by summing (and by max for DialNanos).
type shardStats struct {
	Opened int64 `json:"opened"`
	Failed int64 `json:"failed"`
	// JoinFailed counts connections that opened but failed their first
	// round trip: the join (group) or the hello echo (fanout).
	JoinFailed int64            `json:"join_failed"`
	Lost       int64            `json:"lost"`
	DialNanos  int64            `json:"dial_nanos"`
	Dial       *hist            `json:"dial,omitempty"`
	Errors     map[string]int64 `json:"errors,omitempty"`
	// echo
	RoundTrips int64 `json:"round_trips"`
	Mismatches int64 `json:"mismatches"`
	InFlight   int64 `json:"in_flight"`
	// fanout and group
	Receivers  int64 `json:"receivers"`
	Expected   int64 `json:"expected"`
	Delivered  int64 `json:"delivered"`
	Duplicates int64 `json:"duplicates"`
	Reorders   int64 `json:"reorders"`
	Wrong      int64 `json:"wrong"`
	Unexpected int64 `json:"unexpected"`
	Untracked  int64 `json:"untracked"`
	// Latency is the echo round trip or the send-to-receive time.
	Latency *hist `json:"latency,omitempty"`
	// conns
	Sampled  int64 `json:"sampled"`
	SampleOK int64 `json:"sample_ok"`
	// SampleTwice counts sample echoes answered a second time (leanShard.sampleTwice).
	SampleTwice int64 `json:"sample_twice"`
	// ClientRSSKB is the VmRSS of the shard's process at the end of the
	// hold (conns), summed over processes.
	ClientRSSKB int64 `json:"client_rss_kb"`
}

func (s *shardStats) merge(o *shardStats) {
	if o == nil {
		return
	}
	s.Opened += o.Opened
	s.Failed += o.Failed
	s.JoinFailed += o.JoinFailed
	s.Lost += o.Lost
	s.DialNanos = max(s.DialNanos, o.DialNanos)
	s.Dial = mergeHist(s.Dial, o.Dial)
	if len(o.Errors) > 0 && s.Errors == nil {
		s.Errors = make(map[string]int64)
	}
	for k, v := range o.Errors {
		s.Errors[k] += v
	}
	s.RoundTrips += o.RoundTrips
	s.Mismatches += o.Mismatches
	s.InFlight += o.InFlight
	s.Receivers += o.Receivers
	s.Expected += o.Expected
	s.Delivered += o.Delivered
	s.Duplicates += o.Duplicates
	s.Reorders += o.Reorders
	s.Wrong += o.Wrong
	s.Unexpected += o.Unexpected
	s.Untracked += o.Untracked
	s.Latency = mergeHist(s.Latency, o.Latency)
	s.Sampled += o.Sampled
	s.SampleOK += o.SampleOK
	s.SampleTwice += o.SampleTwice
	s.ClientRSSKB += o.ClientRSSKB
}

func mergeHist(a, b *hist) *hist {
	if b == nil {
		return a
	}
	if a == nil {
		a = newHist()
	}
	a.merge(b)
	return a
}

// benchConn is one connection of a shard.
type benchConn struct {
	ws    *websocket.Conn
	idx   int
	group int
	tr    seqTracker
}

// echoGrace is how long echo loops may take to finish their round trip
// after the end.
const echoGrace = 2 * time.Second

// localShard runs a shard's connections in this process. Every goroutine
// it starts (readers, echo loops) is waited for by end or kill.
type localShard struct {
	spec  shardSpec
	cfg   config
	d     *dialer
	conns []*benchConn
	errs  errCounts
	dialH *hist
	lat   *hist
	wg    sync.WaitGroup
	// stopping is set at the end: read errors after it are not errors.
	stopping   atomic.Bool
	lost       atomic.Int64
	roundTrips atomic.Int64
	mismatches atomic.Int64
	active     atomic.Int64 // echo loops running
	closeOnce  sync.Once
}

// newShard returns the shard that runs spec in this process: the lean
// nbio client for conns mode, goroutines on gorilla connections otherwise.
func newShard(spec shardSpec) shard {
	if spec.Cfg.Mode == modeConns {
		return newLeanShard(spec)
	}
	return newLocalShard(spec)
}

func newLocalShard(spec shardSpec) *localShard {
	return &localShard{spec: spec, cfg: spec.Cfg, d: newDialer(spec.Cfg), dialH: newHist(), lat: newHist()}
}

// groupName is group g's name in this run; the run id keeps runs sharing
// a server apart, and the name has no colon.
func groupName(runID string, g int) string {
	return "gb" + runID + "_" + strconv.Itoa(g)
}

func (s *localShard) prepare(ctx context.Context) (*shardStats, error) {
	lo, hi := s.spec.Lo, s.spec.Hi
	slots := make([]*benchConn, hi-lo)
	var failed, joinFailed, attempted atomic.Int64
	t0 := time.Now()
	forEach(ctx, lo, hi, max(1, s.spec.DialParallel), func(i int) {
		if !pace(ctx, t0, i-lo, s.spec.DialRate) {
			return
		}
		attempted.Add(1)
		t := time.Now()
		ws, err := s.d.dial(ctx, i)
		if err != nil {
			failed.Add(1)
			s.errs.add("dial", err)
			return
		}
		s.dialH.record(time.Since(t))
		c := &benchConn{ws: ws, idx: i}
		switch s.cfg.Mode {
		case modeGroup:
			c.group = i % s.cfg.Groups
			if err := s.join(c); err != nil {
				joinFailed.Add(1)
				s.errs.add("join", err)
				closeConn(ws)
				return
			}
			s.wg.Add(1)
			go s.recvLoop(c)
		case modeFanout:
			if err := s.hello(c); err != nil {
				joinFailed.Add(1)
				s.errs.add("hello", err)
				closeConn(ws)
				return
			}
			s.wg.Add(1)
			go s.recvLoop(c)
		}
		slots[i-lo] = c
	})
	st := &shardStats{DialNanos: int64(time.Since(t0)), Dial: s.dialH}
	for _, c := range slots {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	// Dials never started because the run was interrupted count as failed.
	if notTried := int64(hi-lo) - attempted.Load(); notTried > 0 {
		failed.Add(notTried)
		s.errs.addKey("dial: not attempted (interrupted)", notTried)
	}
	st.Opened = int64(len(s.conns))
	st.Failed = failed.Load()
	st.JoinFailed = joinFailed.Load()
	st.Errors = s.errs.snapshot()
	return st, nil
}

// join sends j:<group> and waits for "ok" (within the dial timeout),
// before the connection's reader starts. A reply "err..." (what
// examples/bench answers when JoinGroup fails) fails it at once.
func (s *localShard) join(c *benchConn) error {
	return s.handshake(c, "j:"+groupName(s.cfg.RunID, c.group), "ok", 16)
}

// hello makes a fanout receiver do one echo round trip before its reader
// starts. A server registers a connection after its handshake response
// is sent, so a client that only finished dialling may miss a broadcast
// sent right away; once its echo is back, the server has it.
func (s *localShard) hello(c *benchConn) error {
	msg := "hello-" + strconv.Itoa(c.idx)
	return s.handshake(c, msg, msg, 16)
}

// handshake sends msg and waits, within the dial timeout, for want,
// skipping at most skip other frames.
func (s *localShard) handshake(c *benchConn, msg, want string, skip int) error {
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return err
	}
	if err := c.ws.SetReadDeadline(time.Now().Add(s.cfg.DialTimeout)); err != nil {
		return err
	}
	buf := make([]byte, 64)
	for {
		n, _, err := readInto(c.ws, buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == want {
			return c.ws.SetReadDeadline(time.Time{})
		}
		if skip--; skip < 0 || bytes.HasPrefix(buf[:n], []byte("err")) {
			return fmt.Errorf("reply %q, want %q", buf[:n], want)
		}
	}
}

func (s *localShard) begin() error {
	if s.cfg.Mode != modeEcho {
		return nil
	}
	payload := bytes.Repeat([]byte{'x'}, s.cfg.Size)
	for _, c := range s.conns {
		s.wg.Add(1)
		s.active.Add(1)
		go s.echoLoop(c, payload)
	}
	return nil
}

// readErr records a read error of a connection that ended before the end.
func (s *localShard) readErr(err error) {
	if s.stopping.Load() {
		return
	}
	s.lost.Add(1)
	s.errs.add("read", err)
}

// echoLoop sends the payload, waits for the echo and records the round
// trip, until the end. A frame that is not the echo counts as a mismatch
// and the loop keeps waiting for the echo.
func (s *localShard) echoLoop(c *benchConn, payload []byte) {
	defer s.wg.Done()
	defer s.active.Add(-1)
	buf := make([]byte, len(payload))
	for !s.stopping.Load() {
		t0 := time.Now()
		if err := c.ws.WriteMessage(websocket.TextMessage, payload); err != nil {
			s.readErr(fmt.Errorf("write: %w", err))
			return
		}
		for {
			n, long, err := readInto(c.ws, buf)
			if err != nil {
				s.readErr(err)
				return
			}
			if !long && n == len(payload) && bytes.Equal(buf, payload) {
				break
			}
			s.mismatches.Add(1)
		}
		s.lat.record(time.Since(t0))
		s.roundTrips.Add(1)
	}
}

// closeAll closes every connection, on up to DialParallel goroutines.
func (s *localShard) closeAll() {
	s.closeOnce.Do(func() {
		s.stopping.Store(true)
		forEach(context.Background(), 0, len(s.conns), max(1, s.spec.DialParallel), func(i int) {
			closeConn(s.conns[i].ws)
		})
	})
}

func (s *localShard) kill() {
	s.stopping.Store(true)
	s.closeOnce.Do(func() {
		for _, c := range s.conns {
			_ = c.ws.Close()
		}
	})
	s.wg.Wait()
}

// waitGroupTimeout waits for wg at most d; it reports whether wg is done.
// The helper goroutine ends when wg does, which every caller guarantees by
// closing the connections afterwards.
func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (s *localShard) end(ctx context.Context, e endInfo) (*shardStats, error) {
	st := &shardStats{}
	switch s.cfg.Mode {
	case modeEcho:
		s.stopping.Store(true)
		if !waitGroupTimeout(&s.wg, echoGrace) {
			// Loops still waiting for their echo after the grace period.
			st.InFlight = s.active.Load()
		}
		s.closeAll()
		s.wg.Wait()
		st.RoundTrips = s.roundTrips.Load()
		st.Mismatches = s.mismatches.Load()
		st.Latency = s.lat
	case modeFanout, modeGroup:
		s.awaitDeliveries(ctx, e)
		s.closeAll()
		s.wg.Wait()
		s.seqStats(st, e)
		st.Latency = s.lat
	}
	st.Lost = s.lost.Load()
	st.Errors = s.errs.snapshot()
	return st, nil
}

// expectedFor is how many messages connection c should get.
func (s *localShard) expectedFor(c *benchConn, e endInfo) int64 {
	g := 0
	if s.cfg.Mode == modeGroup {
		g = c.group
	}
	if g < len(e.Sent) {
		return e.Sent[g]
	}
	return 0
}

// awaitDeliveries waits until every receiver got every message, or the
// drain period is over.
func (s *localShard) awaitDeliveries(ctx context.Context, e endInfo) {
	var want int64
	for _, c := range s.conns {
		want += s.expectedFor(c, e)
	}
	deadline := time.NewTimer(s.cfg.Drain)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var got int64
		for _, c := range s.conns {
			got += c.tr.unique.Load()
		}
		if got >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}
