package worker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/bus"
)

const (
	// backlogDelay is how long batches may wait behind busy consumers
	// before another consumer starts.
	backlogDelay = time.Millisecond
	// claimAfter: a batch that has waited this long may have waited so
	// long that its gateway sent it again (AckTimeout is at least 500 ms,
	// and the first progress report comes up to 375 ms after a batch
	// starts), so it is claimed before it runs: while it waits, by
	// claimWaiting, or when it is taken.
	claimAfter = 100 * time.Millisecond
	// claimTick is how often claimWaiting looks for batches to claim.
	claimTick = 50 * time.Millisecond
)

// consumers run the batches of one subscription. One consumer takes
// batches off the buffer and runs them, one after the other, while that
// keeps up: no goroutine hand-off per batch (handing every batch to a
// runner goroutine cost 7 % of the echo rate). A watchdog, armed while a
// batch runs, adds a consumer whenever batches have waited backlogDelay (a
// slow handler, or more work than one goroutine does), up to
// MaxConcurrency; added consumers end when the buffer is empty.
type consumers struct {
	w   *Worker
	sub *bus.Subscription
	q   *batchQueue
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
}

// subscribe queue-subscribes to subject and starts the consumers of what
// comes: NATS's callback only queues each batch (batchQueue), so nothing
// waits in nats.go's buffer, which would drop batches when full.
func (w *Worker) subscribe(subject string) (*consumers, error) {
	q := newBatchQueue()
	sub, err := w.bus.QueueSubscribe(subject, bus.WorkerQueue, func(m bus.Msg) {
		if !q.push(m, time.Now()) {
			w.claimLogs.Log(w.log, slog.LevelError, "event batch dropped: the worker holds too many (its gateway sends it again)", "subject", subject, "waiting", maxQueued)
		}
	})
	if err != nil {
		return nil, err
	}
	return w.startConsumers(sub, q), nil
}

func (w *Worker) startConsumers(sub *bus.Subscription, q *batchQueue) *consumers {
	cs := &consumers{w: w, sub: sub, q: q, stop: make(chan struct{})}
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
		e, ok := cs.q.pop()
		if !ok {
			if extra {
				return
			}
			select {
			case <-cs.q.notify:
				continue
			case <-cs.stop:
			}
			// Stopping: the subscription ended; run what is left.
			for e, ok := cs.q.pop(); ok && !cs.abandoned.Load(); e, ok = cs.q.pop() {
				cs.run(e)
			}
			return
		}
		if cs.abandoned.Load() {
			return
		}
		cs.run(e)
	}
}

func (cs *consumers) run(e *queued) {
	cs.busy.Add(1)
	// Load first: while batches keep coming the watchdog stays armed, and
	// a failed CompareAndSwap would still take the cache line for writing.
	if !cs.armed.Load() && cs.armed.CompareAndSwap(false, true) {
		cs.watch.Reset(backlogDelay)
	}
	cs.w.onBatch(e, time.Now())
	cs.busy.Add(-1)
}

// check is the watchdog: it adds a consumer when batches wait, and stays
// armed while any batch runs.
func (cs *consumers) check() {
	if cs.q.len() > 0 && int(cs.n.Load()) < cs.w.cfg.MaxConcurrency {
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
