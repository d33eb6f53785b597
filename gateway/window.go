package gateway

import (
	"sync"
	"time"
)

// window bounds the event batches a gateway has in flight (sent, not yet
// acknowledged) to Config.MaxBatchesInFlight. When workers fall behind,
// their acks come slower and so do the gateway's sends: a client whose
// batch finds the window full keeps its events in its own queue (bounded by
// MaxPendingEventBytes) and waits in line, first come first served; each
// ack lets the next client in line send. A client keeps at most one batch
// in flight either way.
type window struct {
	// limit is MaxBatchesInFlight; negative means no limit.
	limit int

	mu sync.Mutex
	// used counts the clients with a batch in flight.
	used int
	// line holds the clients whose queued events wait for a slot; a client
	// is in it at most once (it has no batch in flight and queued events).
	line []*client
}

// take gives c a slot, or puts c in line and reports false. c.mu must be
// held, c must have no batch in flight and nothing queued.
func (w *window) take(c *client) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limit < 0 || w.used < w.limit {
		w.used++
		return true
	}
	w.line = append(w.line, c)
	return false
}

// release frees the slot of c's acknowledged batch; c goes to the back of
// the line when it has events queued. c.mu must be held. Call grantSlots
// once c.mu is released.
func (w *window) release(c *client, queued bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.used--
	if queued {
		w.line = append(w.line, c)
	}
}

// next takes the first client in line if a slot is free, and gives it the
// slot.
func (w *window) next() *client {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) == 0 || w.limit >= 0 && w.used >= w.limit {
		return nil
	}
	c := w.line[0]
	w.line[0] = nil
	w.line = w.line[1:]
	if len(w.line) == 0 {
		w.line = nil
	}
	w.used++
	return c
}

// waiting is the number of clients in line.
func (w *window) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.line)
}

// grantSlots sends the next batch of the clients in line while slots are
// free. It holds no lock while it publishes.
func (g *Gateway) grantSlots() {
	for {
		c := g.win.next()
		if c == nil {
			return
		}
		c.mu.Lock()
		var batch []byte
		dropped := false
		if c.inflight == nil {
			batch, dropped = g.nextBatchLocked(c, time.Now())
		}
		subject := g.batchSubjectLocked(c)
		// Its events that cannot fit a NATS message were dropped: an ended
		// client has nothing more to send, another is closed.
		finished := batch == nil && c.inflight == nil && c.ended && !c.finished
		c.finished = c.finished || finished
		dropped = dropped && !c.ended
		if batch == nil { // nothing to send after all: hand the slot back
			g.win.release(c, false)
		}
		c.mu.Unlock()
		if batch != nil {
			g.sendBatch(c, subject, batch)
		}
		switch {
		case finished:
			g.reg.remove(c)
			g.presence.remove(c.id)
		case dropped:
			g.closeUnsendable(c)
		}
	}
}
