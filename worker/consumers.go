package worker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/bus"
)

const (
	// backlogDelay is how long batches may wait behind busy consumers
	// before another consumer starts.
	backlogDelay = time.Millisecond
	// claimAfter: a batch taken when the buffer has not been empty for
	// this long may have waited so long that its gateway sent it again
	// (AckTimeout is at least 500 ms, and the first progress report comes
	// up to 375 ms after a batch starts), so it is claimed before it runs.
	claimAfter = 100 * time.Millisecond
	// bufferedBatches bounds the batches waiting in a worker (nats.go's
	// own default for pulled subscriptions). A batch that finds the buffer
	// full is dropped by NATS; its gateway resends it when no ack comes
	// (at-least-once), so it is late, not lost.
	bufferedBatches = 1 << 16
)

// consumers run the batches of one subscription. One consumer takes
// batches off the buffer and runs them, one after the other, while that
// keeps up: no goroutine hand-off per batch (handing every batch to a
// runner goroutine cost 7 % of the echo rate). A watchdog, armed while a
// batch runs, adds a consumer whenever batches have waited backlogDelay (a
// slow handler, or more work than one goroutine does), up to
// MaxConcurrency; added consumers end when the buffer is empty.
//
// The consumers know nothing of NATS or of the worker: they take batches
// from a batchSource and hand them to runBatch, so consumers_test.go
// drives them with an in-memory queue under testing/synctest's clock.
type consumers struct {
	sub batchSource
	// max bounds the consumer goroutines (Config.MaxConcurrency).
	max int
	// runBatch runs one batch taken at now; claim says it may have
	// waited long enough to have been resent (see claimAfter).
	runBatch func(m bus.Msg, now time.Time, claim bool)
	// n counts consumer goroutines, busy those running a batch.
	n, busy atomic.Int32
	armed   atomic.Bool
	watch   *time.Timer
	stop    chan struct{}
	wg      sync.WaitGroup
	// mu orders the watchdog's spawns before finish: none after it.
	mu       sync.Mutex
	stopping bool
	// abandoned: batches not started are left to their gateways, which
	// resend them when no ack comes.
	abandoned atomic.Bool
	// emptyAt (Unix nanoseconds) is when a consumer last found the buffer
	// empty: every batch in it arrived later, so none waited longer.
	emptyAt atomic.Int64
}

// batchSource is where consumers take batches: a *bus.Buffered.
type batchSource interface {
	// Next waits for a batch until stop is closed (ok false then).
	Next(stop <-chan struct{}) (m bus.Msg, ok bool)
	// TryNext takes a batch if one waits.
	TryNext() (m bus.Msg, ok bool)
	// Waiting is the number of batches that wait.
	Waiting() int
}

func (w *Worker) startConsumers(sub *bus.Buffered) *consumers {
	return startConsumers(sub, w.cfg.MaxConcurrency, w.onBatch)
}

func startConsumers(sub batchSource, max int, run func(bus.Msg, time.Time, bool)) *consumers {
	cs := &consumers{sub: sub, max: max, runBatch: run, stop: make(chan struct{})}
	cs.emptyAt.Store(time.Now().UnixNano())
	cs.watch = time.AfterFunc(time.Hour, cs.check)
	cs.watch.Stop()
	cs.spawn(false)
	return cs
}

func (cs *consumers) spawn(extra bool) {
	cs.n.Add(1)
	cs.wg.Add(1)
	go cs.consume(extra)
}

func (cs *consumers) consume(extra bool) {
	defer cs.wg.Done()
	defer cs.n.Add(-1)
	for {
		m, ok := cs.sub.TryNext()
		if !ok {
			cs.emptyAt.Store(time.Now().UnixNano())
			if extra {
				return
			}
			m, ok = cs.sub.Next(cs.stop)
			// The buffer was empty until this batch came.
			cs.emptyAt.Store(time.Now().UnixNano())
			if !ok {
				// Stopping: the subscription ended; run what is left.
				for m, ok := cs.sub.TryNext(); ok && !cs.abandoned.Load(); m, ok = cs.sub.TryNext() {
					cs.run(m)
				}
				return
			}
		}
		if cs.abandoned.Load() {
			return
		}
		cs.run(m)
	}
}

func (cs *consumers) run(m bus.Msg) {
	cs.busy.Add(1)
	// Load first: while batches keep coming the watchdog stays armed, and
	// a failed CompareAndSwap would still take the cache line for writing.
	if !cs.armed.Load() && cs.armed.CompareAndSwap(false, true) {
		cs.watch.Reset(backlogDelay)
	}
	now := time.Now()
	cs.runBatch(m, now, now.UnixNano()-cs.emptyAt.Load() > int64(claimAfter))
	cs.busy.Add(-1)
}

// check is the watchdog: it adds a consumer when batches wait, and stays
// armed while any batch runs.
func (cs *consumers) check() {
	if cs.sub.Waiting() > 0 && int(cs.n.Load()) < cs.max {
		cs.mu.Lock()
		if !cs.stopping {
			cs.spawn(true)
		}
		cs.mu.Unlock()
	}
	if cs.busy.Load() > 0 {
		cs.watch.Reset(backlogDelay)
		return
	}
	cs.armed.Store(false)
	// A batch that started after the load above saw armed still set and
	// did not arm: arm for it.
	if cs.busy.Load() > 0 && cs.armed.CompareAndSwap(false, true) {
		cs.watch.Reset(backlogDelay)
	}
}

// finish lets the consumers run what is buffered and end; call it once the
// subscription has ended (drained or unsubscribed).
func (cs *consumers) finish() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cs.stopping {
		cs.stopping = true
		close(cs.stop)
	}
}

// abandon ends the consumers without running the batches that wait.
func (cs *consumers) abandon() {
	cs.abandoned.Store(true)
	cs.finish()
}

// wait returns when every consumer has ended; call it after finish.
func (cs *consumers) wait() {
	cs.wg.Wait()
	cs.watch.Stop()
}
