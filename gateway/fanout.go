package gateway

import (
	"context"
	"slices"
	"sync"

	"github.com/gatewayworker/gatewayworker/bus"
)

// fanoutShards is how many goroutines write group, uid and broadcast pushes.
// A socket write is a system call that can take tens of microseconds on a
// busy machine; one goroutine writing a broadcast to 1,000 clients would
// serialise 1,000 of them, so writes are spread over a few goroutines that
// the kernel runs in parallel. A client always belongs to the same shard,
// so pushes on one subject reach it in order.
const fanoutShards = 8

// fanoutQueue bounds the pushes waiting per shard; a full queue slows the
// NATS callback down instead of growing memory.
const fanoutQueue = 256

type fanoutJob struct {
	targets []*client
	cmd     bus.Command
}

// fanout owns the shard goroutines. The job channels are never closed: a
// NATS callback may still be queueing when the gateway stops.
type fanout struct {
	shards [fanoutShards]chan fanoutJob
	quit   chan struct{}
	wg     sync.WaitGroup
}

func (f *fanout) start(g *Gateway) {
	f.quit = make(chan struct{})
	for i := range f.shards {
		f.shards[i] = make(chan fanoutJob, fanoutQueue)
		f.wg.Add(1)
		go func(jobs <-chan fanoutJob) {
			defer f.wg.Done()
			for {
				select {
				case job := <-jobs:
					g.write(job.targets, job.cmd)
				case <-f.quit:
					return
				}
			}
		}(f.shards[i])
	}
}

// stop ends the shard goroutines; pushes still queued are dropped, as their
// clients are being closed.
func (f *fanout) stop() {
	close(f.quit)
	f.wg.Wait()
}

// fanOut queues cmd's body for targets, split by shard.
func (g *Gateway) fanOut(ctx context.Context, targets []*client, cmd bus.Command) {
	if len(targets) == 0 {
		return
	}
	var parts [fanoutShards][]*client
	for _, c := range targets {
		s := c.shard
		parts[s] = append(parts[s], c)
	}
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		select {
		case g.fan.shards[i] <- fanoutJob{targets: part, cmd: cmd}:
		case <-ctx.Done():
			return
		case <-g.fan.quit:
			return
		}
	}
}

// write sends cmd's body to targets, skipping the excluded ones.
func (g *Gateway) write(targets []*client, cmd bus.Command) {
	text := isText(cmd.Body)
	sent := 0
	for _, c := range targets {
		if len(cmd.Exclude) > 0 && slices.Contains(cmd.Exclude, c.id) {
			continue
		}
		_ = c.t.send(cmd.Body, text)
		sent++
	}
	g.stats.pushesOut.Add(uint64(sent))
	g.stats.bytesOut.Add(uint64(sent * len(cmd.Body)))
}
