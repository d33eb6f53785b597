package main

import (
	"math"
	"sync/atomic"
	"time"
)

// maxMissing bounds the gaps one receiver remembers. Past it, a late
// message can no longer be told from a duplicate; Untracked counts them.
const maxMissing = 100_000

// seqTracker checks that one receiver gets sequence numbers 1, 2, 3, ...
// each exactly once and in order. It is used by the connection's reader
// goroutine only; unique is atomic so the end can poll progress.
type seqTracker struct {
	last      int64
	unique    atomic.Int64
	dups      int64
	reorders  int64
	wrong     int64
	unexpect  int64
	untracked int64
	// missing holds the numbers skipped by a gap, until they arrive late.
	missing map[int64]struct{}
}

// observe records seq and reports whether it is a first delivery (in
// order, or late after a gap).
func (t *seqTracker) observe(seq int64) bool {
	switch {
	case seq <= 0:
		t.unexpect++
		return false
	case seq == t.last+1:
		t.last = seq
	case seq > t.last+1:
		if t.missing == nil {
			t.missing = make(map[int64]struct{})
		}
		for m := t.last + 1; m < seq; m++ {
			if len(t.missing) >= maxMissing {
				t.untracked += seq - m
				break
			}
			t.missing[m] = struct{}{}
		}
		t.last = seq
	default:
		if _, ok := t.missing[seq]; !ok {
			t.dups++
			return false
		}
		delete(t.missing, seq)
		t.reorders++
	}
	t.unique.Add(1)
	return true
}

// parseFields parses up to len(out) non-negative decimal fields separated
// by ':' and reports whether msg had exactly len(out) of them.
func parseFields(msg []byte, out []int64) bool {
	f, v, digits := 0, int64(0), 0
	for _, b := range msg {
		switch {
		case b >= '0' && b <= '9':
			d := int64(b - '0')
			if v > (math.MaxInt64-d)/10 {
				return false
			}
			v = v*10 + d
			digits++
		case b == ':' && digits > 0 && f < len(out)-1:
			out[f] = v
			f, v, digits = f+1, 0, 0
		default:
			return false
		}
	}
	if digits == 0 || f != len(out)-1 {
		return false
	}
	out[f] = v
	return true
}

// recvLoop reads a fanout receiver or a group member: "<seq>:<unix-nanos>"
// or "<group>:<seq>:<unix-nanos>". First deliveries record their latency.
func (s *localShard) recvLoop(c *benchConn) {
	defer s.wg.Done()
	buf := make([]byte, 64)
	var f [3]int64
	fields := f[:2]
	if s.cfg.Mode == modeGroup {
		fields = f[:3]
	}
	for {
		n, long, err := readInto(c.ws, buf)
		if err != nil {
			s.readErr(err)
			return
		}
		now := time.Now().UnixNano()
		if long || !parseFields(buf[:n], fields) {
			c.tr.unexpect++
			continue
		}
		seq, ts := fields[len(fields)-2], fields[len(fields)-1]
		if len(fields) == 3 && int(fields[0]) != c.group {
			c.tr.wrong++
			continue
		}
		if c.tr.observe(seq) {
			s.lat.record(time.Duration(now - ts))
		}
	}
}

// seqStats adds up the trackers; the readers have ended.
func (s *localShard) seqStats(st *shardStats, e endInfo) {
	st.Receivers = int64(len(s.conns))
	for _, c := range s.conns {
		st.Expected += s.expectedFor(c, e)
		st.Delivered += c.tr.unique.Load()
		st.Duplicates += c.tr.dups
		st.Reorders += c.tr.reorders
		st.Wrong += c.tr.wrong
		st.Unexpected += c.tr.unexpect
		st.Untracked += c.tr.untracked
	}
}
