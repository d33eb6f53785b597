package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// fanoutShards is how many goroutines write group, uid and broadcast pushes.
// A socket write is a system call that can take tens of microseconds on a
// busy machine; one goroutine writing a broadcast to 1,000 clients would
// serialise 1,000 of them, so writes are spread over a few goroutines that
// the kernel runs in parallel. A client always belongs to the same shard,
// so pushes on one subject reach it in order.
const fanoutShards = 8

// fanoutQueue and fanoutBytes bound the pushes waiting for the shards: at
// most fanoutQueue per shard, and fanoutBytes of bodies in all (a body
// counts once per shard it waits in). A push that finds no room is dropped
// for that shard's clients and counted (Stats.PushesDropped): pushes are
// at most once, and the NATS callback that queues them never waits, so
// nothing piles up in nats.go behind it either.
//
// maxInline: a push to at most this many clients, when the shards have
// nothing to write, is written by the goroutine that took it from NATS (see fanOutWith):
// a few non-blocking writes cost less than waking the shards' goroutines,
// which a push to a group of ten did about six times.
const (
	fanoutQueue = 4096
	fanoutBytes = 64 << 20
	maxInline   = 32
)

type fanoutJob struct {
	targets []*client
	cmd     bus.Command
	// pos, for a recoverable push, is its pos frame: clients that opted
	// in to recovery (client.rec) get it before the push.
	pos []byte
}

// fanout owns the shard goroutines. The job channels are never closed: a
// NATS callback may still be queueing when the gateway stops.
type fanout struct {
	// shards carry pointers: a job is ~150 bytes, and a queue's ring is
	// touched whole once as many jobs went through it (3.5 MB a gateway).
	shards [fanoutShards]chan *fanoutJob
	// queued is the body bytes of the jobs in shards.
	queued atomic.Int64
	// jobs counts the jobs queued in shards or being written.
	jobs atomic.Int64
	quit chan struct{}
	wg   sync.WaitGroup
}

func (f *fanout) start(g *Gateway) {
	f.quit = make(chan struct{})
	for i := range f.shards {
		f.shards[i] = make(chan *fanoutJob, fanoutQueue)
		f.wg.Add(1)
		go func(jobs <-chan *fanoutJob) {
			defer f.wg.Done()
			var w coalescer
			var delay *time.Timer
			if d := g.cfg.WriteDelay; d > 0 {
				delay = time.NewTimer(d)
				delay.Stop()
			}
			for {
				select {
				case job := <-jobs:
					w.jobs = append(w.jobs[:0], job)
				case <-f.quit:
					return
				}
				// WriteDelay: wait for more pushes to this shard's clients,
				// to write a client's several with one system call.
				if delay != nil {
					delay.Reset(g.cfg.WriteDelay)
				wait:
					for len(w.jobs) < maxCoalesced {
						select {
						case job := <-jobs:
							w.jobs = append(w.jobs, job)
						case <-delay.C:
							break wait
						case <-f.quit:
							return
						}
					}
					delay.Stop()
				}
				// Pushes that queued up meanwhile go out together: one
				// write per client instead of one per push.
			drain:
				for len(w.jobs) < maxCoalesced {
					select {
					case job := <-jobs:
						w.jobs = append(w.jobs, job)
					default:
						break drain
					}
				}
				if len(w.jobs) == 1 {
					g.write(w.jobs[0].targets, w.jobs[0].cmd, w.jobs[0].pos)
				} else {
					w.write(g)
				}
				for _, job := range w.jobs {
					f.queued.Add(-int64(len(job.cmd.Body)))
				}
				f.jobs.Add(-int64(len(w.jobs)))
				clear(w.jobs)
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

// fanOut queues cmd's body for targets, split by shard, or drops it for
// the shards that have no room. It never waits.
func (g *Gateway) fanOut(targets []*client, cmd bus.Command) { g.fanOutWith(targets, cmd, nil) }

// fanOutWith is fanOut of a recoverable push whose pos frame is pos.
func (g *Gateway) fanOutWith(targets []*client, cmd bus.Command, pos []byte) {
	if len(targets) == 0 {
		return
	}
	// Written here when no shard has work: the pushes of this subject,
	// which one goroutine hands over in order, were all written, so
	// this one cannot overtake them. Not with WriteDelay, which is there
	// to join pushes in the shards.
	if len(targets) <= maxInline && g.cfg.WriteDelay == 0 && g.fan.jobs.Load() == 0 {
		g.write(targets, cmd, pos)
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
		size := int64(len(cmd.Body))
		g.fan.jobs.Add(1) // before the shard may write it
		if g.fan.queued.Add(size) <= fanoutBytes {
			select {
			case g.fan.shards[i] <- &fanoutJob{targets: part, cmd: cmd, pos: pos}:
				continue
			default:
			}
		}
		g.fan.jobs.Add(-1)
		g.fan.queued.Add(-size)
		g.stats.pushesDropped.Add(uint64(len(part)))
		g.warnRateLimited("pushes dropped: the gateway's writers fall behind", "clients", len(part))
	}
}

// maxFrameHeader is the longest header a server frame has (RFC 6455 §5.2).
const maxFrameHeader = 10

// maxCoalesced bounds the pushes a shard writes together.
const maxCoalesced = 64

// coalescer writes several queued pushes with one write per client, in
// the order they were queued. Its buffers are reused from one round to
// the next; one that grew past maxKeptFrames is let go.
//
// What it builds for a client counts against SendQueueLimit together with
// what waits in nbio for that client: a client whose queue is full gets no
// more frames built, so the gateway holds at most SendQueueLimit plus one
// message for any client at any moment. When the next frame would not fit,
// what was built is written first (the socket often takes it at once, and
// nbio then counts only the rest); a frame that still does not fit closes
// the client as a slow consumer.
type coalescer struct {
	jobs    []*fanoutJob
	index   map[*client]int
	clients []*client
	frames  [][]byte
}

const maxKeptFrames = 64 << 10

// uncoalesced marks, in coalescer.index, a client whose transport cannot
// coalesce (a compressed WebSocket): its pushes are sent one by one, and
// nbio's own check bounds its queue.
const uncoalesced = -1

func (w *coalescer) write(g *Gateway) {
	if w.index == nil {
		w.index = map[*client]int{}
	}
	limit := g.cfg.SendQueueLimit
	pushes, bytes := 0, 0
	for _, job := range w.jobs {
		fr := newFraming(job.cmd.Body, job.cmd.Frame, g.cfg.WebSocketType)
		for _, c := range job.targets {
			if c.closing() || len(job.cmd.Exclude) > 0 && slices.Contains(job.cmd.Exclude, c.id) {
				continue
			}
			i, seen := w.index[c]
			if !seen {
				i = len(w.clients)
				w.index[c] = i
				w.clients = append(w.clients, c)
				if i == len(w.frames) {
					w.frames = append(w.frames, nil)
				}
				w.frames[i] = w.frames[i][:0]
			}
			text := fr.text(c)
			pos := job.pos
			if c.rec == nil {
				pos = nil
			}
			if i == uncoalesced {
				sendWithPos(c, pos, job.cmd.Body, text)
			} else if built, ok := appendWithPos(c, w.frames[i], pos, job.cmd.Body, text); !ok {
				w.index[c] = uncoalesced
				sendWithPos(c, pos, job.cmd.Body, text)
			} else if c.t.queued()+len(built) <= limit {
				w.frames[i] = built
			} else if w.frames[i] = flushRoom(g, c, built, len(w.frames[i]), limit); w.frames[i] == nil {
				continue // closed: this push is not counted as sent
			}
			pushes++
			bytes += len(job.cmd.Body)
		}
	}
	for i, c := range w.clients {
		if len(w.frames[i]) > 0 && !c.closing() {
			_ = c.t.writeFrames(w.frames[i])
		}
		if cap(w.frames[i]) > maxKeptFrames {
			w.frames[i] = nil
		}
	}
	clear(w.index)
	clear(w.clients)
	w.clients = w.clients[:0]
	g.stats.pushesOut.Add(uint64(pushes))
	g.stats.bytesOut.Add(uint64(bytes))
}

// flushRoom handles a frame that does not fit c's SendQueueLimit: built is
// c's frames with the new one from offset last on. It writes the frames
// before last, then keeps the new one if it fits what is left, and returns
// c's frames; nil when it closed c as a slow consumer.
func flushRoom(g *Gateway, c *client, built []byte, last, limit int) []byte {
	if last > 0 {
		_ = c.t.writeFrames(built[:last])
		built = append(built[:0], built[last:]...)
	}
	if c.closing() || c.t.queued()+len(built) > limit {
		c.end(bus.CloseSlowConsumer, nil)
		return nil
	}
	return built
}

// write sends cmd's body to targets, skipping the excluded ones and those
// being closed. A client whose queue the message would take past
// SendQueueLimit is closed as a slow consumer, here, with a close frame:
// nbio would refuse the message too, but close the socket without a word.
func (g *Gateway) write(targets []*client, cmd bus.Command, pos []byte) {
	fr := newFraming(cmd.Body, cmd.Frame, g.cfg.WebSocketType)
	sent := 0
	size := len(cmd.Body) + maxFrameHeader
	for _, c := range targets {
		if c.closing() || len(cmd.Exclude) > 0 && slices.Contains(cmd.Exclude, c.id) {
			continue
		}
		p := pos
		if c.rec == nil {
			p = nil
		}
		if c.t.queued()+size+len(p) > g.cfg.SendQueueLimit {
			c.end(bus.CloseSlowConsumer, nil)
			continue
		}
		sendWithPos(c, p, cmd.Body, fr.text(c))
		sent++
	}
	g.stats.pushesOut.Add(uint64(sent))
	g.stats.bytesOut.Add(uint64(sent * len(cmd.Body)))
}

// sendWithPos sends a push to c, after its pos frame if pos is set, in
// one write: a replay (history.go) and the fanout may write to c at once,
// and nothing may come between a pos frame and its push. A transport that
// cannot frame them together (a compressed WebSocket) sends the two under
// c.rec's lock, which every writer of pos frames to c takes.
func sendWithPos(c *client, pos, body []byte, text bool) {
	if pos == nil {
		_ = c.t.send(body, text)
		return
	}
	buf := frameBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledFrame {
			frameBuffers.Put(buf)
		}
	}()
	var ok bool
	if *buf, ok = appendWithPos(c, (*buf)[:0], pos, body, text); ok {
		_ = c.t.writeFrames(*buf)
		return
	}
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	_ = c.t.send(pos, true)
	_ = c.t.send(body, text)
}

// appendWithPos is appendFrame of a push, after its pos frame if pos is set.
func appendWithPos(c *client, dst, pos, body []byte, text bool) ([]byte, bool) {
	if pos != nil {
		var ok bool
		if dst, ok = c.t.appendFrame(dst, pos, true); !ok {
			return dst, false
		}
	}
	return c.t.appendFrame(dst, body, text)
}
