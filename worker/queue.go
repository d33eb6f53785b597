package worker

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// maxQueued bounds the batches waiting in one worker for a consumer. The
// gateways bound what they have in flight (MaxBatchesInFlight, 4,096 each)
// and send a batch again only when no word about it came for AckTimeout,
// while this worker claims and reports every batch it holds: so 64
// gateways at the default window fit, and a worker
// does not let its batches be dropped (a drop would only come back as a
// resend, and a storm would feed itself). Past it, a batch is dropped and
// logged; its gateway sends it again.
const maxQueued = 1 << 18

// Claim states of a queued batch (queued.state).
const (
	claimNone    uint32 = iota // not asked: a consumer may run it at once if it is fresh
	claimAsking                // claim sent, no answer yet
	claimGranted               // its gateway granted it: it runs when taken, and is reported meanwhile
	claimRefused               // another copy runs, or no answer came in time: dropped when taken
	claimExempt                // never claimed: a synthesized close, or undecodable
)

// queued is a batch waiting in a worker.
type queued struct {
	m  bus.Msg
	at time.Time
	// state is a claim state; answered is closed when it leaves claimAsking.
	state    atomic.Uint32
	answered chan struct{}
	// asked is when claimWaiting took it; client and seq are set before
	// the claim is sent.
	client string
	seq    uint64
	asked  time.Time
}

// settle moves e from claimAsking to to, once.
func (e *queued) settle(to uint32) {
	if e.state.CompareAndSwap(claimAsking, to) {
		close(e.answered)
	}
}

// batchQueue holds the batches of one subscription that waited for a
// consumer (see consumers.spill), first in, first out. Unlike nats.go's
// own buffer it shows its content: a batch that waits is claimed from its gateway while it waits
// (claimWaiting) and, once granted, reported to it as in progress
// (reportProgress), so its gateway does not send it again meanwhile.
type batchQueue struct {
	mu    sync.Mutex
	items []*queued
	head  int
	// scan: items[head:scan] were looked at by claimWaiting.
	scan int
	// notify wakes a consumer waiting for a batch (spill signals it).
	notify  chan struct{}
	dropped atomic.Uint64
}

func newBatchQueue() *batchQueue { return &batchQueue{notify: make(chan struct{}, 1)} }

// push adds m, arrived at; false when the queue is full.
func (q *batchQueue) push(m bus.Msg, at time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items)-q.head >= maxQueued {
		q.dropped.Add(1)
		return false
	}
	q.items = append(q.items, &queued{m: m, at: at})
	return true
}

// pop takes the oldest batch.
func (q *batchQueue) pop() (*queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return nil, false
	}
	e := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	q.scan = max(q.scan, q.head)
	if q.head == len(q.items) {
		q.items, q.head, q.scan = q.items[:0], 0, 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.scan, q.head = q.items[:n], q.scan-q.head, 0
	}
	return e, true
}

// len is the number of batches waiting.
func (q *batchQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// toClaim marks claimAsking, and returns, the batches that arrived
// claimAfter or more before now and were not looked at yet.
func (q *batchQueue) toClaim(now time.Time) []*queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*queued
	for ; q.scan < len(q.items); q.scan++ {
		e := q.items[q.scan]
		if now.Sub(e.at) < claimAfter {
			break
		}
		e.answered, e.asked = make(chan struct{}), now
		e.state.Store(claimAsking)
		out = append(out, e)
	}
	return out
}

// heldPerReport bounds the batches of one bus.Held report (about 100 KiB,
// well under NATS's max payload).
const heldPerReport = 4096

// granted adds every waiting batch its gateway granted to the report for
// that gateway, by subject.
func (q *batchQueue) granted(held map[string]*bus.Held) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.items[q.head:] {
		if e.state.Load() != claimGranted {
			continue
		}
		// The reply subject is the gateway's inbox, then the client id.
		i := strings.LastIndexByte(e.m.Reply, '.')
		if i < 0 {
			continue
		}
		to := e.m.Reply[:i+1] + bus.HeldSuffix
		h := held[to]
		if h == nil {
			h = &bus.Held{}
			held[to] = h
		}
		h.Clients, h.Seqs = append(h.Clients, e.client), append(h.Seqs, e.seq)
	}
}

// claims tracks the claims sent for waiting batches: their answers come to
// inbox+token.
type claims struct {
	inbox string
	mu    sync.Mutex
	next  uint64
	ask   map[string]*queued
}

// claimWaiting sends a claim for every batch of q that has waited
// claimAfter, so that the batch is its gateway's to keep before AckTimeout
// passes (its first claim comes at most claimAfter + claimTick after it
// arrived), and ends the claims that got no answer within claimTimeout.
// The claims go out as published requests: no goroutine waits for them.
func (w *Worker) claimWaiting(q *batchQueue, now time.Time) {
	w.claims.expire(now)
	for _, e := range q.toClaim(now) {
		var b bus.EventBatch
		if err := bus.UnmarshalBatch(e.m.Data, &b); err != nil || b.Client == "" || e.m.Reply == "" || b.Seq == reapSeq {
			e.settle(claimExempt) // onBatch drops or runs it as before
			continue
		}
		// Read by onClaimAnswer and, once granted, by reportProgress:
		// both after claims.mu and the state's change.
		e.client, e.seq = b.Client, b.Seq
		w.claims.mu.Lock()
		w.claims.next++
		token := strconv.FormatUint(w.claims.next, 36)
		w.claims.ask[token] = e
		w.claims.mu.Unlock()
		if err := w.bus.PublishRequest(e.m.Reply, w.claims.inbox+token, bus.MarshalAck(&bus.Ack{Client: b.Client, Seq: b.Seq, Status: bus.AckWorking})); err != nil {
			w.claims.end(token, claimRefused)
		}
	}
}

// expire refuses the claims unanswered for claimTimeout: their gateway
// sends the batch again.
func (c *claims) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for token, e := range c.ask {
		if now.Sub(e.asked) >= claimTimeout {
			delete(c.ask, token)
			e.settle(claimRefused)
		}
	}
}

// end settles the claim of token.
func (c *claims) end(token string, to uint32) {
	c.mu.Lock()
	e := c.ask[token]
	delete(c.ask, token)
	c.mu.Unlock()
	if e != nil {
		e.settle(to)
	}
}

// onClaimAnswer takes a gateway's answer to a claim sent by claimWaiting.
func (w *Worker) onClaimAnswer(m bus.Msg) {
	token := m.Subject[len(w.claims.inbox):]
	var ack bus.Ack
	if m.NoResponders || bus.UnmarshalAck(m.Data, &ack) != nil {
		w.claims.end(token, claimRefused)
		return
	}
	w.claims.mu.Lock()
	e := w.claims.ask[token]
	w.claims.mu.Unlock()
	if e != nil && ack.Status == bus.AckWorking && ack.Seq == e.seq {
		w.claims.end(token, claimGranted)
		return
	}
	w.claims.end(token, claimRefused)
}

// claimed says whether e, whose batch b must be claimed before it runs,
// may run: as its claim was answered, or, if none was sent, as a claim
// sent now is.
func (w *Worker) claimed(e *queued, b bus.EventBatch) bool {
	switch e.state.Load() {
	case claimGranted:
		return true
	case claimAsking:
		wait := time.NewTimer(max(claimTimeout-time.Since(e.asked), 0) + claimTick)
		defer wait.Stop()
		select {
		case <-e.answered:
		case <-wait.C:
			e.settle(claimRefused)
		}
		return e.state.Load() == claimGranted
	case claimRefused:
		return false
	}
	return w.claim(b, e.m.Reply)
}
