package worker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
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
	// claimTick is how often the batches waiting in nats.go's buffer are
	// moved to the worker's queue (spill), and those that waited
	// claimAfter are claimed.
	claimTick = 50 * time.Millisecond
	// bufferedBatches bounds nats.go's buffer of a worker's subscription:
	// it holds what came since the last spill (claimTick; its own
	// goroutine, which never waits on the network). A batch that finds it
	// full is dropped by NATS (a slow consumer): 262,144 is what gateways
	// at the default window may have in flight, 64 of them, and costs
	// memory only when used.
	bufferedBatches = maxQueued
)

// consumers run the batches of one subscription. One consumer takes
// batches off the buffer and runs them, one after the other, while that
// keeps up: no goroutine hand-off per batch (handing every batch to a
// runner goroutine cost 7 % of the echo rate). A watchdog, armed while a
// batch runs, adds a consumer whenever batches have waited backlogDelay (a
// slow handler, or more work than one goroutine does), up to
// MaxConcurrency; added consumers end when the buffer is empty.
//
// Every claimTick, spill moves what waits in the subscription's buffer to
// the worker's own queue (q), where it is claimed and reported
// (claimWaiting) and from which NATS never drops; consumers take from q
// first (older), then from the buffer.
//
// The consumers know nothing of NATS or of the worker: they take batches
// from a batchSource and hand them to runBatch, so consumers_test.go
// drives them with an in-memory queue under testing/synctest's clock.
type consumers struct {
	sub batchSource
	// q holds the batches spill moved out of sub's buffer: the older ones.
	q *batchQueue
	// max bounds the consumer goroutines (Config.MaxConcurrency).
	max int
	// runBatch runs one batch taken at now; e.at is when it arrived, at
	// the latest (see claimAfter).
	runBatch func(e *queued, now time.Time)
	// dropped is called for a batch spill found no room for in q.
	dropped func()
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
	// emptyAt (Unix nanoseconds) is when sub's buffer was last seen
	// empty: every batch in it arrived later, so none waited longer.
	emptyAt atomic.Int64
}

// batchSource is where consumers take batches: a *bus.Buffered.
type batchSource interface {
	// NextOr waits for a batch until stop is closed or wake signalled
	// (ok false then).
	NextOr(stop, wake <-chan struct{}) (m bus.Msg, ok bool)
	// TryNext takes a batch if one waits.
	TryNext() (m bus.Msg, ok bool)
	// Waiting is the number of batches that wait.
	Waiting() int
}

// subscribe queue-subscribes to subject and starts the consumers of what
// comes, and the spill of what waits.
func (w *Worker) subscribe(subject string) (*consumers, *bus.Buffered, error) {
	sub, err := w.bus.QueueSubscribeBuffered(subject, bus.WorkerQueue, bufferedBatches)
	if err != nil {
		return nil, nil, err
	}
	cs := newConsumers(sub, w.cfg.MaxConcurrency, w.onBatch)
	cs.dropped = func() {
		w.claimLogs.Log(w.log, slog.LevelError, "event batch dropped: the worker holds too many (its gateway sends it again)", "subject", subject, "waiting", maxQueued)
	}
	cs.wg.Add(1)
	go cs.spillEvery(claimTick)
	return cs, sub, nil
}

// startConsumers starts consumers without spill (consumers_test.go): run
// gets claim true for a batch that waited claimAfter.
func startConsumers(sub batchSource, max int, run func(m bus.Msg, now time.Time, claim bool)) *consumers {
	return newConsumers(sub, max, func(e *queued, now time.Time) { run(e.m, now, now.Sub(e.at) > claimAfter) })
}

func newConsumers(sub batchSource, max int, run func(*queued, time.Time)) *consumers {
	cs := &consumers{sub: sub, q: newBatchQueue(), max: max, runBatch: run, dropped: func() {}, stop: make(chan struct{})}
	cs.emptyAt.Store(time.Now().UnixNano())
	cs.watch = time.AfterFunc(time.Hour, cs.check)
	cs.watch.Stop()
	cs.spawn(false)
	return cs
}

// spillEvery spills until the consumers stop (then they run, or abandon,
// what is left).
func (cs *consumers) spillEvery(d time.Duration) {
	defer cs.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			cs.spill()
		case <-cs.stop:
			return
		}
	}
}

// spill moves the batches waiting in sub's buffer to q, oldest first.
func (cs *consumers) spill() {
	// They all came after the buffer was last seen empty.
	at := time.Unix(0, cs.emptyAt.Load())
	moved := false
	for m, ok := cs.sub.TryNext(); ok; m, ok = cs.sub.TryNext() {
		if !cs.q.push(m, at) {
			cs.dropped()
		}
		moved = true
	}
	cs.emptyAt.Store(time.Now().UnixNano())
	if moved {
		select {
		case cs.q.notify <- struct{}{}:
		default:
		}
	}
}

// take returns a waiting batch: from q first (spill put older ones there),
// then from sub's buffer into own, the calling consumer's: a batch that was
// never in q is nobody else's (claimWaiting sees only q), and runBatch
// keeps nothing of it, so one per consumer does for all of them.
func (cs *consumers) take(own *queued) (*queued, bool) {
	if e, ok := cs.q.pop(); ok {
		return e, true
	}
	m, ok := cs.sub.TryNext()
	if !ok {
		return nil, false
	}
	own.m, own.at = m, time.Unix(0, cs.emptyAt.Load())
	return own, true
}

func (cs *consumers) spawn(extra bool) {
	cs.n.Add(1)
	cs.wg.Add(1)
	go cs.consume(extra)
}

func (cs *consumers) consume(extra bool) {
	defer cs.wg.Done()
	defer cs.n.Add(-1)
	own := new(queued)
	for {
		e, ok := cs.take(own)
		if !ok {
			cs.emptyAt.Store(time.Now().UnixNano())
			if extra {
				return
			}
			m, ok := cs.sub.NextOr(cs.stop, cs.q.notify)
			// The buffer was empty until this batch came.
			cs.emptyAt.Store(time.Now().UnixNano())
			if !ok {
				select {
				case <-cs.stop:
				default:
					continue // spill queued batches: take them
				}
				// Stopping: the subscription ended; run what is left.
				for e, ok := cs.take(own); ok && !cs.abandoned.Load(); e, ok = cs.take(own) {
					cs.run(e)
				}
				return
			}
			own.m, own.at = m, time.Now()
			e = own
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
	cs.runBatch(e, time.Now())
	cs.busy.Add(-1)
}

// check is the watchdog: it adds a consumer when batches wait, and stays
// armed while any batch runs.
func (cs *consumers) check() {
	if cs.q.len()+cs.sub.Waiting() > 0 && int(cs.n.Load()) < cs.max {
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
