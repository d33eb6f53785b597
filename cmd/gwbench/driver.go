package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// driver is the sending side of fanout (one broadcaster), group (the
// senders) and conns --broadcast (one broadcast). It always runs in the
// parent process, on connections with indexes N, N+1, ... so they spread
// over the sources like the others.
// Its goroutines are waited for by run and close.
type driver struct {
	cfg   config
	d     *dialer
	conns []*websocket.Conn
	errs  errCounts
	// sent counts the messages sent: one count for fanout, one per group.
	sent     []int64
	readers  sync.WaitGroup
	stopping atomic.Bool
	lost     atomic.Int64
	received atomic.Int64
}

func newDriver(cfg config) *driver {
	n := 1
	if cfg.Mode == modeGroup {
		n = cfg.Groups
	}
	return &driver{cfg: cfg, d: newDialer(cfg), sent: make([]int64, n)}
}

// senders is the number of driver connections.
func (dr *driver) senders() int {
	if dr.cfg.Mode == modeGroup {
		return dr.cfg.Senders
	}
	return 1
}

// prepare dials the driver's connections and starts a reader on each,
// which discards what arrives (the broadcaster gets its own broadcasts).
func (dr *driver) prepare(ctx context.Context) error {
	for j := range dr.senders() {
		ws, err := dr.d.dial(ctx, dr.cfg.N+j)
		if err != nil {
			dr.errs.add("driver dial", err)
			return fmt.Errorf("sender %d: %w", j, err)
		}
		dr.conns = append(dr.conns, ws)
		dr.readers.Add(1)
		go dr.discard(ws)
	}
	return nil
}

func (dr *driver) discard(ws *websocket.Conn) {
	defer dr.readers.Done()
	buf := make([]byte, 256)
	for {
		if _, _, err := readInto(ws, buf); err != nil {
			if !dr.stopping.Load() {
				dr.lost.Add(1)
				dr.errs.add("driver read", err)
			}
			return
		}
		dr.received.Add(1)
	}
}

// run sends for d (or until ctx ends) and returns how long it sent.
//
// fanout: a:<seq>:<unix-nanos> at Rate per second.
// group: g:<name>:<g>:<seq>:<unix-nanos>; sender j owns the groups g with
// g mod Senders == j, goes round them, and every group gets Rate/Groups
// per second, so each group has one sender and one order.
func (dr *driver) run(ctx context.Context, d time.Duration) time.Duration {
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for j, ws := range dr.conns {
		var groups []int
		rate := dr.cfg.Rate
		if dr.cfg.Mode == modeGroup {
			for g := j; g < dr.cfg.Groups; g += len(dr.conns) {
				groups = append(groups, g)
			}
			rate = dr.cfg.Rate * float64(len(groups)) / float64(dr.cfg.Groups)
		} else {
			groups = []int{0}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dr.send(ctx, ws, groups, rate, start, stop)
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		return d // the last message went out before d; the window is d
	}
	return min(time.Since(start), d)
}

// send paces messages at rate from start until stop: message i goes at
// start + i/rate, at once when late, so a stall is made up for and every
// message carries its real send time.
func (dr *driver) send(ctx context.Context, ws *websocket.Conn, groups []int, rate float64, start, stop time.Time) {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = groupName(dr.cfg.RunID, g)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	buf := make([]byte, 0, 128)
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if !at.Before(stop) {
			return
		}
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		k := int(i % int64(len(groups)))
		g := groups[k]
		seq := dr.sent[g] + 1
		if dr.cfg.Mode == modeGroup {
			buf = append(append(append(buf[:0], "g:"...), names[k]...), ':')
			buf = append(strconv.AppendInt(buf, int64(g), 10), ':')
		} else {
			buf = append(buf[:0], "a:"...)
		}
		buf = append(strconv.AppendInt(buf, seq, 10), ':')
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		if err := ws.WriteMessage(websocket.TextMessage, buf); err != nil {
			dr.errs.add("driver write", err)
			return
		}
		dr.sent[g] = seq
	}
}

// broadcastOnce sends conns mode's one broadcast: a:<prefix><unix-nanos>.
func (dr *driver) broadcastOnce() {
	msg := "a:" + broadcastPrefix(dr.cfg.RunID) + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := dr.conns[0].WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		dr.errs.add("driver write", err)
		return
	}
	dr.sent[0] = 1
}

// close closes the driver's connections and waits for its readers.
func (dr *driver) close() {
	dr.stopping.Store(true)
	for _, ws := range dr.conns {
		closeConn(ws)
	}
	dr.readers.Wait()
}

func (dr *driver) totalSent() int64 {
	var n int64
	for _, v := range dr.sent {
		n += v
	}
	return n
}
