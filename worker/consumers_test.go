package worker

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// memQueue is a batchSource in memory: what bus.Buffered is around a
// NATS subscription's channel, without NATS.
type memQueue struct{ ch chan bus.Msg }

func newMemQueue() *memQueue { return &memQueue{ch: make(chan bus.Msg, 64)} }

func (q *memQueue) push(data ...string) {
	for _, d := range data {
		q.ch <- bus.Msg{Data: []byte(d)}
	}
}

func (q *memQueue) Next(stop <-chan struct{}) (bus.Msg, bool) {
	select {
	case m := <-q.ch:
		return m, true
	case <-stop:
		return bus.Msg{}, false
	}
}

func (q *memQueue) NextOr(stop, wake <-chan struct{}) (bus.Msg, bool) {
	select {
	case m := <-q.ch:
		return m, true
	case <-stop:
		return bus.Msg{}, false
	case <-wake:
		return bus.Msg{}, false
	}
}

func (q *memQueue) TryNext() (bus.Msg, bool) {
	select {
	case m := <-q.ch:
		return m, true
	default:
		return bus.Msg{}, false
	}
}

func (q *memQueue) Waiting() int { return len(q.ch) }

// TestConsumersAddOneEachTimeBatchesWait: one consumer runs batches while
// it keeps up; each backlogDelay that batches wait behind running handlers
// adds one, up to the limit; the added ones end once the queue is empty.
func TestConsumersAddOneEachTimeBatchesWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue()
		release := make(chan struct{})
		var running, ran atomic.Int32
		cs := startConsumers(q, 3, func(bus.Msg, time.Time, bool) {
			running.Add(1)
			<-release
			running.Add(-1)
			ran.Add(1)
		})
		q.push("a", "b", "c", "d", "e")
		synctest.Wait()
		require.Equal(t, int32(1), running.Load(), "before backlogDelay, one consumer")

		time.Sleep(backlogDelay)
		synctest.Wait()
		require.Equal(t, int32(2), running.Load(), "after one backlogDelay, a second")

		time.Sleep(10 * backlogDelay)
		synctest.Wait()
		require.Equal(t, int32(3), running.Load(), "never more than the limit")
		require.Equal(t, int32(3), cs.n.Load())

		close(release)
		synctest.Wait()
		require.Equal(t, int32(5), ran.Load())
		require.Equal(t, int32(1), cs.n.Load(), "the added consumers ended with the backlog")

		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, int32(1), cs.n.Load(), "and none is added while nothing waits")
		require.False(t, cs.armed.Load(), "the watchdog disarms once no batch runs")
		cs.finish()
		cs.wait()
	})
}

// TestConsumersClaimBatchesThatWaited: a batch taken while the queue has
// not been empty for claimAfter is claimed before it runs; one taken from
// a queue that was just empty is not.
func TestConsumersClaimBatchesThatWaited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue()
		var mu sync.Mutex
		claims := map[string]bool{}
		cs := startConsumers(q, 1, func(m bus.Msg, _ time.Time, claim bool) {
			mu.Lock()
			claims[string(m.Data)] = claim
			mu.Unlock()
			if string(m.Data) == "slow" {
				time.Sleep(2 * claimAfter)
			}
		})
		q.push("slow", "behind the slow one")
		synctest.Wait()
		time.Sleep(3 * claimAfter)
		q.push("after a quiet spell")
		synctest.Wait()
		cs.finish()
		cs.wait()
		require.Equal(t, map[string]bool{"slow": false, "behind the slow one": true, "after a quiet spell": false}, claims)
	})
}

// TestConsumersAbandonLeavesWaitingBatches: abandon ends the consumers
// without running what waits (the gateways resend it); finish runs it.
func TestConsumersAbandonLeavesWaitingBatches(t *testing.T) {
	for _, abandon := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			q := newMemQueue()
			release := make(chan struct{})
			var ran atomic.Int32
			cs := startConsumers(q, 1, func(bus.Msg, time.Time, bool) {
				<-release
				ran.Add(1)
			})
			q.push("running", "waiting 1", "waiting 2")
			synctest.Wait()
			if abandon {
				cs.abandon()
			} else {
				cs.finish()
			}
			close(release)
			cs.wait()
			if abandon {
				require.Equal(t, int32(1), ran.Load(), "only the batch that had started")
			} else {
				require.Equal(t, int32(3), ran.Load())
			}
		})
	}
}
