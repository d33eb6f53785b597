package worker

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gatewayworker/gatewayworker/bus"
)

// Timing of the reaper. A gateway is dead after gatewayDeadAfter without a
// heartbeat (it beats every second). A gateway cut off from NATS closes its
// clients itself after its NATSLossTimeout (2.5 s by default), just before
// that, so an OnClose run here is never for a client still connected. A
// worker leads the reaping while it has the smallest id among the workers
// heard within workerDeadAfter.
const (
	workerBeatEvery  = time.Second
	workerDeadAfter  = 3 * time.Second
	gatewayDeadAfter = 3500 * time.Millisecond
	reaperTick       = 250 * time.Millisecond
	reapRetry        = 2 * time.Second
	reapAttempts     = 5
)

// reapSeq is the sequence of a synthesized close batch: above any real one,
// and the same on every resend, so workers drop duplicates.
const reapSeq = math.MaxUint64 - 1

// reaper gives workers GatewayWorker's missing guarantee: when a gateway
// dies without a word, the handlers still hear of each of its clients'
// close (ARCHITECTURE.md G5). Every worker follows every gateway's presence
// reports (bus.Presence), so each knows every gateway's clients; the worker
// with the smallest id among the live ones sends their close events
// (reason bus.CloseGatewayLost) to the worker queue group.
type reaper struct {
	w *Worker

	mu       sync.Mutex
	gateways map[string]*gatewayTable
	workers  map[string]time.Time
	// pending holds the synthesized close batches not yet acknowledged.
	pending map[string]*reapJob
	inbox   string
}

type gatewayTable struct {
	boot     int64
	seq      uint64
	synced   bool
	syncing  bool
	clients  map[string]struct{}
	early    []bus.Presence // reports that came before the list
	lastBeat time.Time
	leaving  time.Time // when its last ("leaving") beat came
}

type reapJob struct {
	data     []byte
	attempts int
	sentAt   time.Time
}

func newReaper(w *Worker) *reaper {
	return &reaper{w: w, gateways: map[string]*gatewayTable{}, workers: map[string]time.Time{}, pending: map[string]*reapJob{}}
}

// run follows presence, gateway and worker beats until ctx ends.
func (r *reaper) run(ctx context.Context) error {
	w := r.w
	r.inbox = w.bus.NewInbox() + "."
	subs := []struct {
		subject string
		h       bus.Handler
	}{
		{w.subj.AllPresence(), r.onPresence},
		{w.subj.Heartbeat(), r.onGatewayBeat},
		{w.subj.WorkerBeat(), r.onWorkerBeat},
		{r.inbox + "*", r.onAck},
	}
	for _, s := range subs {
		sub, err := w.bus.Subscribe(s.subject, s.h)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	beat, err := bus.Marshal(&bus.WorkerBeat{ID: w.id})
	if err != nil {
		return err
	}
	r.noteWorker(w.id, time.Now())
	_ = w.bus.Publish(w.subj.WorkerBeat(), beat)
	beats := time.NewTicker(workerBeatEvery)
	defer beats.Stop()
	tick := time.NewTicker(reaperTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beats.C:
			_ = w.bus.Publish(w.subj.WorkerBeat(), beat)
		case now := <-tick.C:
			r.send(r.check(now))
		}
	}
}

func (r *reaper) noteWorker(id string, now time.Time) {
	r.mu.Lock()
	r.workers[id] = now
	r.mu.Unlock()
}

func (r *reaper) onWorkerBeat(m bus.Msg) {
	var b bus.WorkerBeat
	if bus.Unmarshal(m.Data, &b) == nil && b.ID != "" {
		r.noteWorker(b.ID, time.Now())
	}
}

// closeSend is a synthesized close batch to publish.
type closeSend struct {
	client string
	data   []byte
}

// send publishes close batches; called without r.mu.
func (r *reaper) send(batch []closeSend) {
	for _, c := range batch {
		_ = r.w.bus.PublishRequest(r.w.subj.LostEvents(), r.inbox+c.client, c.data)
	}
}

// tableLocked returns the table of gateway gw at boot, starting a fresh
// one when the gateway restarted; the old process's clients are then
// reaped, and their close batches returned to send. r.mu must be held.
func (r *reaper) tableLocked(gw string, boot int64, now time.Time) (*gatewayTable, []closeSend) {
	t := r.gateways[gw]
	var out []closeSend
	if t != nil && boot > t.boot && len(t.clients) > 0 {
		out = r.reapLocked(gw, t, now) // the process before this one died
	}
	if t == nil || boot > t.boot {
		t = &gatewayTable{boot: boot, clients: map[string]struct{}{}, lastBeat: now}
		r.gateways[gw] = t
	}
	return t, out
}

func (r *reaper) onGatewayBeat(m bus.Msg) {
	var b bus.Beat
	if bus.Unmarshal(m.Data, &b) != nil || b.Gateway == "" {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if t := r.gateways[b.Gateway]; t != nil && b.Boot < t.boot {
		r.mu.Unlock()
		return // an old process's last words
	}
	t, reaped := r.tableLocked(b.Gateway, b.Boot, now)
	defer r.send(reaped)
	defer r.mu.Unlock()
	t.lastBeat = now
	if b.Leaving {
		t.leaving = now
	}
	if !t.synced && !t.syncing {
		t.syncing = true
		go r.sync(b.Gateway, b.Boot)
	}
}

func (r *reaper) onPresence(m bus.Msg) {
	var p bus.Presence
	if bus.Unmarshal(m.Data, &p) != nil || p.Gateway == "" {
		return
	}
	r.mu.Lock()
	if t := r.gateways[p.Gateway]; t != nil && p.Boot < t.boot {
		r.mu.Unlock()
		return
	}
	t, reaped := r.tableLocked(p.Gateway, p.Boot, time.Now())
	defer r.send(reaped)
	defer r.mu.Unlock()
	switch {
	case !t.synced:
		t.early = append(t.early, p)
		if !t.syncing {
			t.syncing = true
			go r.sync(p.Gateway, p.Boot)
		}
	case p.Seq == t.seq+1:
		t.apply(p)
	case p.Seq > t.seq+1: // a report was lost: ask for the whole list again
		t.synced, t.syncing, t.early = false, true, append(t.early, p)
		go r.sync(p.Gateway, p.Boot)
	}
}

func (t *gatewayTable) apply(p bus.Presence) {
	for _, id := range p.Added {
		t.clients[id] = struct{}{}
	}
	for _, id := range p.Removed {
		delete(t.clients, id)
	}
	t.seq = p.Seq
}

// sync asks gateway gw for its client list and replays the reports that
// came meanwhile.
func (r *reaper) sync(gw string, boot int64) {
	ctx, cancel := context.WithTimeout(r.w.handlerCtx, 5*time.Second)
	defer cancel()
	data := bus.MarshalCommand(&bus.Command{Op: bus.OpClientList})
	var ids []string
	var seq uint64
	err := r.w.bus.Gather(ctx, r.w.subj.Gateway(gw), data, func(m bus.Msg) bool {
		var rep bus.Reply
		if bus.Unmarshal(m.Data, &rep) != nil {
			return false
		}
		ids, seq = append(ids, rep.Items...), rep.Seq
		return !rep.More
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.gateways[gw]
	if t == nil || t.boot != boot {
		return
	}
	t.syncing = false
	if err != nil {
		return // the next beat or report tries again
	}
	for _, id := range ids {
		t.clients[id] = struct{}{}
	}
	t.seq, t.synced = seq, true
	slices.SortFunc(t.early, func(a, b bus.Presence) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, p := range t.early {
		if p.Seq > t.seq {
			t.apply(p)
		}
	}
	t.early = nil
}

// leaderLocked reports whether this worker is the smallest live one.
// r.mu must be held.
func (r *reaper) leaderLocked(now time.Time) bool {
	for id, at := range r.workers {
		if now.Sub(at) > workerDeadAfter {
			delete(r.workers, id)
			continue
		}
		if id < r.w.id {
			return false
		}
	}
	return true
}

// check reaps the gateways that died (or left with clients whose close
// was never acknowledged) and returns those close batches and the ones to
// send again.
func (r *reaper) check(now time.Time) []closeSend {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []closeSend
	for gw, t := range r.gateways {
		dead := now.Sub(t.lastBeat) > gatewayDeadAfter
		left := !t.leaving.IsZero() && now.Sub(t.leaving) > 2*reaperTick
		if !dead && !left {
			continue
		}
		if len(t.clients) > 0 {
			out = append(out, r.reapLocked(gw, t, now)...)
		}
		delete(r.gateways, gw)
	}
	for id, j := range r.pending {
		if now.Sub(j.sentAt) < reapRetry {
			continue
		}
		if j.attempts >= reapAttempts {
			r.w.log.Error("close event of a lost client not acknowledged: given up", "client_id", id)
			delete(r.pending, id)
			continue
		}
		j.attempts++
		j.sentAt = now
		out = append(out, closeSend{id, j.data})
	}
	return out
}

// reapLocked returns, if this worker leads, the close batch of every
// client left in t. r.mu must be held.
func (r *reaper) reapLocked(gw string, t *gatewayTable, now time.Time) []closeSend {
	if !r.leaderLocked(now) {
		return nil
	}
	var out []closeSend
	r.w.log.Warn("gateway lost: telling handlers its clients are gone", "gateway_id", gw, "clients", len(t.clients))
	for id := range t.clients {
		data := bus.MarshalBatch(&bus.EventBatch{Gateway: gw, Client: id, Seq: reapSeq,
			Events: []bus.Event{{Kind: bus.EventClose, Reason: bus.CloseGatewayLost}}})
		r.pending[id] = &reapJob{data: data, attempts: 1, sentAt: now}
		out = append(out, closeSend{id, data})
	}
	t.clients = map[string]struct{}{}
	return out
}

// onAck settles a synthesized close batch.
func (r *reaper) onAck(m bus.Msg) {
	var ack bus.Ack
	if m.NoResponders || bus.Unmarshal(m.Data, &ack) != nil || ack.Status != bus.AckDone {
		return
	}
	r.mu.Lock()
	delete(r.pending, ack.Client)
	r.mu.Unlock()
}
