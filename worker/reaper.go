package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// Timing of the reaper. A gateway is dead after bus.GatewayDeadAfter of
// its beat interval (3.5 beats) without a heartbeat, counted only while
// this worker hears NATS. A gateway cut off from NATS closes its clients
// itself before that (its NATSLossTimeout is validated against it), so an
// OnClose run here is never for a client still connected. A worker leads
// the reaping while it has the smallest id among the workers heard within
// workerDeadAfter.
const (
	workerBeatEvery = time.Second
	workerDeadAfter = 3 * time.Second
	// selfSilentAfter: a worker whose own beats do not come back for this
	// long is cut off from NATS, whatever its connection says.
	selfSilentAfter = 2 * workerBeatEvery
	reaperTick      = 250 * time.Millisecond
	reapRetry       = 2 * time.Second
	reapAttempts    = 5
	// goneFor is how long a worker remembers the clients of a lost
	// gateway, to drop events that still come from it.
	goneFor = 10 * time.Minute
)

// reapSeq is the sequence of a synthesized close batch: above any real one,
// and the same on every resend, so workers drop duplicates.
const reapSeq = math.MaxUint64 - 1

// reaper gives workers GatewayWorker's missing guarantee: when a gateway
// dies without a word, the handlers still hear of each of its clients'
// close (docs/architecture.md, G5). Every worker follows every gateway's presence
// reports (bus.Presence), so each knows every gateway's clients; the worker
// with the smallest id among the live ones sends their close events
// (reason bus.CloseGatewayLost) to the worker queue group. The decisions
// are reapCore's; reaper does the I/O around it.
type reaper struct {
	w     *Worker
	inbox string

	// ctx is run's: it ends the syncs when run returns.
	ctx context.Context
	// syncs are the client-list requests in flight; run waits for them.
	syncs sync.WaitGroup

	mu   sync.Mutex
	core *reapCore
	// stopped is set when run returns: no sync starts after it.
	stopped bool
	// reconnects is the bus's reconnect count at the last tick.
	reconnects uint64
}

func newReaper(w *Worker) *reaper {
	return &reaper{w: w, core: newReapCore(w.id, w.log, time.Now())}
}

// run follows presence, gateway and worker beats until ctx ends.
//
// Beats and presence come and go on ctl, a connection of their own
// (bus.Conn.Sibling), so that they never wait behind event batches: late
// beats would make gateways look lost. So this worker hears NATS while ctl
// is connected and its own beats come back on it.
func (r *reaper) run(ctx context.Context, ctl *bus.Conn) error {
	// Deferred first, so it runs last: after the subscriptions ended and
	// ctx was cancelled, no sync starts and those running end soon.
	defer func() {
		r.mu.Lock()
		r.stopped = true
		r.mu.Unlock()
		r.syncs.Wait()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.ctx = ctx
	w := r.w
	r.inbox = w.bus.NewInbox() + "."
	r.reconnects = ctl.Reconnects()
	subs := []struct {
		conn    *bus.Conn
		subject string
		h       bus.Handler
	}{
		{ctl, w.subj.AllPresence(), r.onPresence},
		{ctl, w.subj.Heartbeat(), r.onGatewayBeat},
		{ctl, w.subj.WorkerBeat(), r.onWorkerBeat},
		{w.bus, r.inbox + "*", r.onAck},
	}
	for _, s := range subs {
		sub, err := s.conn.Subscribe(s.subject, s.h)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	beat, err := bus.Marshal(&bus.WorkerBeat{ID: w.id})
	if err != nil {
		return err
	}
	_ = ctl.Publish(w.subj.WorkerBeat(), beat)
	beats := time.NewTicker(workerBeatEvery)
	defer beats.Stop()
	tick := time.NewTicker(reaperTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beats.C:
			_ = ctl.Publish(w.subj.WorkerBeat(), beat)
		case now := <-tick.C:
			// A reconnect between two ticks is a cut too: beats were missed.
			n := ctl.Reconnects()
			connected := ctl.Connected() && n == r.reconnects
			r.reconnects = n
			r.mu.Lock()
			out, gone := r.core.check(now, connected)
			r.mu.Unlock()
			r.w.gone.addAll(gone, now, false)
			r.send(out)
		}
	}
}

func (r *reaper) onWorkerBeat(m bus.Msg) {
	var b bus.WorkerBeat
	if bus.Unmarshal(m.Data, &b) == nil && b.ID != "" {
		r.mu.Lock()
		r.core.workerBeat(b.ID, time.Now())
		r.mu.Unlock()
	}
}

func (r *reaper) onGatewayBeat(m bus.Msg) {
	var b bus.Beat
	if bus.Unmarshal(m.Data, &b) == nil && b.Gateway != "" {
		r.decide(b.Gateway, b.Boot, func(now time.Time) ([]string, bool) { return r.core.gatewayBeat(b, now) })
	}
}

func (r *reaper) onPresence(m bus.Msg) {
	var p bus.Presence
	if bus.Unmarshal(m.Data, &p) == nil && p.Gateway != "" {
		r.decide(p.Gateway, p.Boot, func(now time.Time) ([]string, bool) { return r.core.presence(p, now) })
	}
}

// decide runs one of the core's decisions about gateway gw at boot under
// r.mu, then does what it says without r.mu: notes gone clients, asks the
// gateway for its list.
func (r *reaper) decide(gw string, boot int64, core func(now time.Time) (gone []string, sync bool)) {
	now := time.Now()
	r.mu.Lock()
	gone, sync := core(now)
	sync = sync && !r.stopped
	if sync {
		r.syncs.Add(1) // under r.mu, so never after run's Wait began
	}
	r.mu.Unlock()
	r.w.gone.addAll(gone, now, false)
	if sync {
		go func() {
			defer r.syncs.Done()
			r.sync(gw, boot)
		}()
	}
}

// send publishes close batches; called without r.mu.
func (r *reaper) send(batch []closeSend) {
	for _, c := range batch {
		_ = r.w.bus.PublishRequest(r.w.subj.LostEvents(), r.inbox+c.client, c.data)
	}
}

// known returns how many clients of live gateways the reaper knows, for
// `gatewayworker status`: operators (and the integration tests, which
// wait for it instead of sleeping) see whether presence reaches it.
func (r *reaper) known() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.core.known()
}

// sync asks gateway gw for its client list.
func (r *reaper) sync(gw string, boot int64) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
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
	r.core.synced(gw, boot, ids, seq, err == nil)
}

// onAck settles a synthesized close batch.
func (r *reaper) onAck(m bus.Msg) {
	var ack bus.Ack
	if m.NoResponders || bus.Unmarshal(m.Data, &ack) != nil || ack.Status != bus.AckDone {
		return
	}
	r.mu.Lock()
	delete(r.core.pending, ack.Client)
	r.mu.Unlock()
}

// closeSend is a synthesized close batch to publish.
type closeSend struct {
	client string
	data   []byte
}

// reapCore holds what a worker knows of gateways and workers, and decides
// which clients are gone. It does no I/O: every input comes with the time
// it happened, so tests drive it with their own clock.
type reapCore struct {
	self string
	log  *slog.Logger

	gateways map[string]*gatewayTable
	workers  map[string]time.Time
	// pending holds the synthesized close batches not yet acknowledged.
	pending map[string]*reapJob
	// selfHeard is when this worker last heard its own beat through NATS;
	// offline the last tick it found itself cut off. A gateway's silence
	// counts only from then: a cut-off worker hears no beats.
	selfHeard, offline time.Time
}

type gatewayTable struct {
	gw      string
	boot    int64
	seq     uint64
	synced  bool
	syncing bool
	clients map[string]struct{}
	early   []bus.Presence // reports that came before the list
	// deadAfter is bus.GatewayDeadAfter of the interval its beats carry.
	deadAfter time.Duration
	lastBeat  time.Time
	leaving   time.Time // when its last ("leaving") beat came
	// lost is when this worker took the gateway for lost; its table stays
	// until this worker leads or the leader outlived the decision.
	lost time.Time
}

type reapJob struct {
	data     []byte
	attempts int
	sentAt   time.Time
}

func newReapCore(self string, log *slog.Logger, now time.Time) *reapCore {
	return &reapCore{self: self, log: log, gateways: map[string]*gatewayTable{}, workers: map[string]time.Time{self: now},
		pending: map[string]*reapJob{}, selfHeard: now}
}

func (c *reapCore) workerBeat(id string, now time.Time) {
	c.workers[id] = now
	if id == c.self {
		c.selfHeard = now
	}
}

// table returns the table of gateway gw at boot, nil for an older
// process's last words. A newer boot means the process before died: its
// clients are gone, and its table is kept, lost, for check to reap.
func (c *reapCore) table(gw string, boot int64, now time.Time) (t *gatewayTable, gone []string) {
	t = c.gateways[gw]
	if t != nil && boot < t.boot {
		return nil, nil
	}
	if t != nil && boot > t.boot {
		if t.lost.IsZero() {
			t.lost, gone = now, t.ids()
		}
		c.gateways[fmt.Sprintf("%s@%d", gw, t.boot)] = t
	}
	if t == nil || boot > t.boot {
		t = &gatewayTable{gw: gw, boot: boot, clients: map[string]struct{}{}, lastBeat: now, deadAfter: bus.GatewayDeadAfter(bus.DefaultBeatInterval)}
		c.gateways[gw] = t
	}
	return t, gone
}

// gatewayBeat notes a gateway's beat; sync says to ask it for its clients.
func (c *reapCore) gatewayBeat(b bus.Beat, now time.Time) (gone []string, sync bool) {
	t, gone := c.table(b.Gateway, b.Boot, now)
	if t == nil {
		return nil, false
	}
	t.lastBeat, t.deadAfter = now, bus.GatewayDeadAfter(b.Every())
	if b.Leaving {
		t.leaving = now
	}
	if t.lost.IsZero() && !t.synced && !t.syncing {
		t.syncing, sync = true, true
	}
	return gone, sync
}

// presence applies a gateway's report; sync says to ask for the whole list.
func (c *reapCore) presence(p bus.Presence, now time.Time) (gone []string, sync bool) {
	t, gone := c.table(p.Gateway, p.Boot, now)
	if t == nil || !t.lost.IsZero() {
		return gone, false
	}
	switch {
	case !t.synced:
		t.early = append(t.early, p)
		if !t.syncing {
			t.syncing, sync = true, true
		}
	case p.Seq == t.seq+1:
		t.apply(p)
	case p.Seq > t.seq+1: // a report was lost: ask for the whole list again
		t.synced, t.syncing, t.early, sync = false, true, append(t.early, p), true
	}
	return gone, sync
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

func (t *gatewayTable) ids() []string {
	ids := make([]string, 0, len(t.clients))
	for id := range t.clients {
		ids = append(ids, id)
	}
	return ids
}

// synced takes gateway gw's client list (ok false: the request failed;
// the next beat or report tries again) and replays the reports that came
// meanwhile. The list replaces the table: clients that left while reports
// were lost must not be reaped later.
func (c *reapCore) synced(gw string, boot int64, ids []string, seq uint64, ok bool) {
	t := c.gateways[gw]
	if t == nil || t.boot != boot || !t.lost.IsZero() {
		return
	}
	t.syncing = false
	if !ok {
		return
	}
	t.clients = make(map[string]struct{}, len(ids))
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

// known counts the clients of the synced tables of live gateways.
func (c *reapCore) known() int64 {
	var n int64
	for _, t := range c.gateways {
		if t.synced && t.lost.IsZero() {
			n += int64(len(t.clients))
		}
	}
	return n
}

// leader returns the smallest live worker id (this one included).
func (c *reapCore) leader(now time.Time) string {
	lead := c.self
	for id, at := range c.workers {
		if id != c.self && now.Sub(at) > workerDeadAfter {
			delete(c.workers, id)
			continue
		}
		lead = min(lead, id)
	}
	return lead
}

// check runs every reaperTick. connected is false when this worker's NATS
// connection is down or came back since the last tick. It takes for lost
// the gateways silent for their deadAfter (or that left with clients whose
// close was never acknowledged), and returns the close batches to send
// (when this worker leads), again or for the first time, and the clients
// whose later events must be dropped.
func (c *reapCore) check(now time.Time, connected bool) (out []closeSend, gone []string) {
	if !connected || now.Sub(c.selfHeard) > selfSilentAfter {
		if c.offline.IsZero() || now.Sub(c.offline) > reaperTick*3/2 {
			// Reports were missed while cut off: ask every gateway again.
			for _, t := range c.gateways {
				t.synced = false
			}
		}
		c.offline = now
	}
	lead := c.leader(now)
	for key, t := range c.gateways {
		if t.lost.IsZero() {
			quiet := now.Sub(later(t.lastBeat, c.offline))
			left := !t.leaving.IsZero() && now.Sub(t.leaving) > 2*reaperTick
			if quiet <= t.deadAfter && !left {
				continue
			}
			t.lost = now
			gone = append(gone, t.ids()...)
		}
		switch {
		case len(t.clients) == 0:
		case lead == c.self:
			out = append(out, c.reap(t, now)...)
		case c.workers[lead].Before(t.lost.Add(t.deadAfter + 2*reaperTick)):
			// The leader may not have seen this gateway die yet, or may
			// have died with it: keep the table until it is heard alive
			// long enough after this decision to have decided the same,
			// or until this worker leads.
			continue
		}
		delete(c.gateways, key)
	}
	for id, j := range c.pending {
		if now.Sub(j.sentAt) < reapRetry {
			continue
		}
		if j.attempts >= reapAttempts {
			c.log.Error("close event of a lost client not acknowledged: given up", "client_id", id)
			delete(c.pending, id)
			continue
		}
		j.attempts++
		j.sentAt = now
		out = append(out, closeSend{id, j.data})
	}
	return out, gone
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// reap returns the close batch of every client left in t, and empties t.
func (c *reapCore) reap(t *gatewayTable, now time.Time) []closeSend {
	gw := t.gw
	var out []closeSend
	c.log.Warn("gateway lost: telling handlers its clients are gone", "gateway_id", gw, "clients", len(t.clients))
	for id := range t.clients {
		data := bus.MarshalBatch(&bus.EventBatch{Gateway: gw, Client: id, Seq: reapSeq,
			Events: []bus.Event{{Kind: bus.EventClose, Reason: bus.CloseGatewayLost}}})
		c.pending[id] = &reapJob{data: data, attempts: 1, sentAt: now}
		out = append(out, closeSend{id, data})
	}
	t.clients = map[string]struct{}{}
	return out
}

// goneSet holds the clients of gateways taken for lost. Their synthesized
// close is their last event: later events from the gateway (it was cut
// off, not dead, and its queue drains on reconnect) are acknowledged
// without running handlers.
type goneSet struct {
	mu  sync.Mutex
	ids map[string]goneClient
}

type goneClient struct {
	at time.Time
	// closed: its synthesized close ran here.
	closed bool
}

// addAll notes clients as gone at now.
func (g *goneSet) addAll(ids []string, now time.Time, closed bool) {
	if len(ids) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.ids[id] = goneClient{at: now, closed: closed || g.ids[id].closed}
	}
}

// closing notes that id's synthesized close runs now; false when it ran
// here already.
func (g *goneSet) closing(id string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ids[id].closed {
		return false
	}
	g.ids[id] = goneClient{at: now, closed: true}
	return true
}

func (g *goneSet) has(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.ids[id]
	return ok
}

// forget drops what is older than goneFor.
func (g *goneSet) forget(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, c := range g.ids {
		if now.Sub(c.at) > goneFor {
			delete(g.ids, id)
		}
	}
}
