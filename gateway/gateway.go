package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/nbhttp"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/internal/ratelog"
)

// MaxSessionBytes bounds one client's encoded session.
const MaxSessionBytes = 128 << 10

// ErrAlreadyRunning is returned by a second call to [Gateway.Run].
var ErrAlreadyRunning = errors.New("gateway: already running")

// ErrIDInUse is returned by [Gateway.Run] when a live gateway has the same ID.
var ErrIDInUse = errors.New("gateway: id in use")

// ErrMaxPayload is returned by Run when a client message of MaxMessageSize,
// in its event batch, would not fit the NATS server's max payload.
var ErrMaxPayload = errors.New("gateway: MaxMessageSize does not fit NATS's max_payload")

// EnvelopeOverhead bounds what an event batch carries besides one
// message and the client's session: version, keys, gateway and client
// ids, address, sequence and the longest uid (256 bytes). NATS's
// max_payload must be at least MaxMessageSize plus this (see Run); a
// client whose session is S bytes can send messages of up to max_payload
// less EnvelopeOverhead less S, and a larger one closes it
// (bus.CloseMessageTooLarge).
const EnvelopeOverhead = 512

// Gateway holds client connections and bridges them to the bus.
type Gateway struct {
	cfg Config
	// autoSendQueue: Config.SendQueueLimit was zero, so Run raises it to
	// NATS's max payload when that is larger, so that the largest push
	// does not close its client as slow.
	autoSendQueue bool
	log           *slog.Logger
	bus           *bus.Conn
	// ctl is a second connection (bus.Conn.Sibling) for heartbeats and
	// presence: in a connect storm, event batches, acks and claims queue up
	// in bus's buffers (here, in the NATS server, in workers), and beats
	// behind them came back too late, so the gateway took itself for cut
	// off and closed its clients. Set by Run.
	ctl  *bus.Conn
	subj bus.Subjects
	boot time.Time
	reg  *registry
	// inbox is the prefix of the reply subjects of event batches; the client
	// id follows it, so even a no-responders status names its client.
	inbox string
	// eventsSubject is where event batches go (g.subj.Events()), unless
	// their client sticks to a worker (client.direct).
	eventsSubject string
	// directPrefix is g.subj.WorkerEvents("").
	directPrefix string

	nextSeq atomic.Uint64
	running atomic.Bool
	// stopping refuses new connections while Run shuts down.
	stopping atomic.Bool
	ready    chan struct{}
	// life ends when Run has finished shutting down; flushes use it.
	life context.Context

	// subs are the group and uid subscriptions (see subs.go).
	subs subscriptions
	// hist is the history stream's side (history.go).
	hist history

	// waitMu guards waiting: clients with an unacknowledged batch.
	// Lock order: client.mu, then waitMu.
	waitMu  sync.Mutex
	waiting map[*client]struct{}

	// auth is nil when every connection is trusted at once (auth.go).
	auth     *auth
	fan      fanout
	win      window
	presence presence
	ws       *nbhttp.Engine
	// handshakes are the WebSocket connections not upgraded yet.
	handshakes *handshakes
	tcp        []*tcpServer
	wsAddr     string
	loops      sync.WaitGroup
	warns      ratelog.Limiter
	// lastOwnBeat is when a heartbeat of ours last came back (Unix ns);
	// reconnectForced is set once per silence, when we tried another node.
	lastOwnBeat     atomic.Int64
	reconnectForced atomic.Bool

	stats stats
}

type stats struct {
	accepted     atomic.Uint64
	closed       [bus.NumCloseReasons]atomic.Uint64
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	messagesIn   atomic.Uint64
	batchesSent  atomic.Uint64
	batchResends atomic.Uint64
	pushesOut    atomic.Uint64
	// repliesDropped counts answers past maxWaitingReplies.
	repliesDropped atomic.Uint64
	// pushesDropped counts pushes (per client) the fanout had no room for.
	pushesDropped atomic.Uint64
	// History (history.go): stored pushes replayed to recovering clients,
	// recoveries complete and incomplete, gaps read and given up.
	historyReplayed, recoveries, recoveriesIncomplete atomic.Uint64
	historyGaps, historyGapsLost                      atomic.Uint64
}

// New checks cfg and returns a gateway; it does no I/O. Call Run to start it.
func New(cfg Config) (*Gateway, error) {
	autoSendQueue := cfg.SendQueueLimit == 0
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	a, err := newAuth(cfg.Auth)
	if err != nil {
		return nil, err
	}
	return &Gateway{
		cfg:           cfg,
		autoSendQueue: autoSendQueue,
		auth:          a,
		warns:         ratelog.Limiter{Burst: 10},
		log:           cfg.Logger.With("gateway_id", cfg.ID),
		bus:           cfg.Bus,
		subj:          subj,
		boot:          time.Now(),
		reg:           newRegistry(),
		inbox:         cfg.Bus.NewInbox() + ".",
		eventsSubject: subj.Events(),
		directPrefix:  subj.WorkerEvents(""),
		ready:         make(chan struct{}),
		subs:          newSubscriptions(),
		win:           window{limit: cfg.MaxBatchesInFlight},
		waiting:       map[*client]struct{}{},
	}, nil
}

// checkMaxPayload refuses to start when the largest client message cannot
// reach workers: its batch would exceed the NATS server's max payload, and
// every client sending one would be closed (bus.CloseMessageTooLarge)
// although the gateway accepted it. It also raises a defaulted
// SendQueueLimit to the max payload, the largest push there can be. It runs
// before any goroutine reads g.cfg.
func (g *Gateway) checkMaxPayload() error {
	limit := g.bus.MaxPayload()
	if limit <= 0 {
		return nil // not known: the server did not say
	}
	if need := int64(g.cfg.MaxMessageSize) + EnvelopeOverhead; need > limit {
		return fmt.Errorf("%w: a message of MaxMessageSize %d bytes (--max-message-size) plus %d bytes of envelope needs %d, but the NATS server's max_payload is %d: raise max_payload to at least %d (gatewayworker run or nats: --nats-max-payload; nats-server: max_payload) or lower MaxMessageSize to at most %d",
			ErrMaxPayload, g.cfg.MaxMessageSize, EnvelopeOverhead, need, limit, need, max(0, limit-EnvelopeOverhead))
	}
	if g.autoSendQueue && limit > int64(g.cfg.SendQueueLimit) {
		g.cfg.SendQueueLimit = int(limit)
	}
	return nil
}

// Stats is a snapshot of a gateway's counters, for metrics.
type Stats struct {
	// Connections is the number of connected clients now.
	Connections int
	// Groups and UIDs count the groups and uids with a member here now.
	Groups, UIDs int
	// Accepted counts connections accepted since start.
	Accepted uint64
	// Closed counts closed connections by reason (index: bus.CloseReason).
	Closed []uint64
	// MessagesIn and BytesIn count what clients sent.
	MessagesIn, BytesIn uint64
	// PushesOut and BytesOut count what was sent to clients.
	PushesOut, BytesOut uint64
	// Batches counts event batches sent to workers; Resends those sent again.
	Batches, Resends uint64
	// PendingAcks is the number of clients whose batch waits for a worker.
	PendingAcks int
	// WaitingForWorkers is the number of clients whose events wait for a
	// slot among MaxBatchesInFlight.
	WaitingForWorkers int
	// NATSReconnects counts reconnections to NATS.
	NATSReconnects uint64
	// RepliesDropped counts JoinGroup and BindUID answers dropped because
	// too many waited for NATS to confirm subscriptions (their callers
	// time out).
	RepliesDropped uint64
	// PushesDropped counts pushes, one per client, dropped because the
	// gateway's writers fell fanoutBytes (64 MiB) or 4,096 pushes behind.
	PushesDropped uint64
	// HistoryReplayed counts stored pushes replayed to recovering clients;
	// Recoveries and RecoveriesIncomplete count channels recovered, and
	// those told complete:false; HistoryGaps counts gaps in a live subject
	// read from the stream, HistoryGapsLost those given up (docs/protocol.md).
	HistoryReplayed, Recoveries, RecoveriesIncomplete, HistoryGaps, HistoryGapsLost uint64
	// AuthFailures counts clients refused by Config.Auth, by cause:
	// "missing", "malformed", "invalid" (signature, algorithm, key),
	// "expired", "not_yet_valid", "claims", "rejected" (by a worker),
	// "timeout". Nil without Config.Auth.
	AuthFailures map[string]uint64
}

// Stats returns the gateway's counters now.
func (g *Gateway) Stats() Stats {
	live, _, groups, uids := g.reg.counts()
	g.waitMu.Lock()
	pending := len(g.waiting)
	g.waitMu.Unlock()
	closed := make([]uint64, len(g.stats.closed))
	for i := range closed {
		closed[i] = g.stats.closed[i].Load()
	}
	return Stats{
		Connections: live, Groups: groups, UIDs: uids,
		Accepted: g.stats.accepted.Load(), Closed: closed,
		MessagesIn: g.stats.messagesIn.Load(), BytesIn: g.stats.bytesIn.Load(),
		PushesOut: g.stats.pushesOut.Load(), BytesOut: g.stats.bytesOut.Load(),
		Batches: g.stats.batchesSent.Load(), Resends: g.stats.batchResends.Load(),
		PendingAcks: pending, WaitingForWorkers: g.win.waiting(), NATSReconnects: g.bus.Reconnects(),
		RepliesDropped: g.stats.repliesDropped.Load(), PushesDropped: g.stats.pushesDropped.Load(),
		AuthFailures:    g.authFailures(),
		HistoryReplayed: g.stats.historyReplayed.Load(), Recoveries: g.stats.recoveries.Load(),
		RecoveriesIncomplete: g.stats.recoveriesIncomplete.Load(), HistoryGaps: g.stats.historyGaps.Load(),
		HistoryGapsLost: g.stats.historyGapsLost.Load(),
	}
}

// ID returns the gateway id.
func (g *Gateway) ID() string { return g.cfg.ID }

// Ready is closed once the listeners accept connections.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// WebSocketAddr is the address the WebSocket listener is bound to, once Ready.
func (g *Gateway) WebSocketAddr() string { return g.wsAddr }

// TCPAddr is the address the first TCP listener is bound to, once Ready.
func (g *Gateway) TCPAddr() string {
	if len(g.tcp) == 0 {
		return ""
	}
	return g.tcp[0].addr
}

// Run listens and serves until ctx ends, then closes every client, waits up
// to DrainTimeout for workers to acknowledge their close events, and returns.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	if err := g.checkMaxPayload(); err != nil {
		return err
	}
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	g.life = life

	g.fan.start(g)
	defer g.fan.stop()
	g.lastOwnBeat.Store(time.Now().UnixNano())
	if err := g.checkIDFree(ctx); err != nil {
		return err
	}
	ctl, err := g.bus.Sibling(ctx, " control")
	if err != nil {
		return fmt.Errorf("gateway: heartbeat connection: %w", err)
	}
	defer ctl.Close()
	g.ctl = ctl
	fixed, err := g.subscribeFixed()
	if err != nil {
		return err
	}
	ownBeats, err := g.ctl.Subscribe(g.subj.Heartbeat(), g.onOwnBeat)
	if err != nil {
		unsubscribeAll(fixed)
		return fmt.Errorf("gateway: %w", err)
	}
	fixed = append(fixed, ownBeats)
	// A refused subscription would leave the gateway deaf (to its own beats,
	// its commands or its acks) while it seems to run: fail now instead.
	err = g.bus.CheckSubscriptions(ctx, fixed[:len(fixed)-1]...)
	if err == nil {
		err = g.ctl.CheckSubscriptions(ctx, ownBeats)
	}
	if err != nil {
		unsubscribeAll(fixed)
		return fmt.Errorf("gateway: %w", err)
	}
	if err := g.startHistory(ctx); err != nil {
		unsubscribeAll(fixed)
		return fmt.Errorf("gateway: history: %w", err)
	}
	if err := g.listen(); err != nil {
		unsubscribeAll(fixed)
		return err
	}
	g.loops.Add(1)
	go func() { defer g.loops.Done(); g.syncSubs(life) }()
	for _, b := range g.subs.pushes {
		g.loops.Add(1)
		go func() { defer g.loops.Done(); g.consumeMemberPushes(life, b) }()
	}
	g.startLoop(life, 100*time.Millisecond, g.sweep)
	g.startLoop(life, g.cfg.BeatInterval, func(time.Time) { g.beat(false) })
	if g.cfg.PingInterval > 0 {
		g.startHeartbeat(life)
	}
	if g.hist.on {
		g.startLoop(life, historyRefresh, g.refreshHistory)
	}
	g.beat(false)
	g.log.Info("gateway listening", "websocket", g.wsAddr, "ws_path", g.cfg.WebSocketPath, "addrs", g.Addrs(), "advertised", g.AdvertisedAddrs())
	close(g.ready)

	<-ctx.Done()
	g.shutdown()
	endLife()
	g.loops.Wait()
	g.flushPresence()
	g.beat(true)
	unsubscribeAll(fixed)
	g.unsubscribeMembers()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = g.bus.Flush(flushCtx)
	_ = g.ctl.Flush(flushCtx)
	g.hist.wg.Wait() // history readers end with life
	return nil
}

// wsShutdownAtLeast is the least time the WebSocket engine is given to
// stop: several of nbio's 200 ms checks.
const wsShutdownAtLeast = time.Second

// shutdown closes every client and waits for their close events to be
// acknowledged, at most DrainTimeout.
func (g *Gateway) shutdown() {
	g.stopping.Store(true)
	live, _, _, _ := g.reg.counts()
	g.log.Info("gateway stopping", "clients", live)
	for _, c := range g.reg.liveClients(nil) {
		c.end(bus.CloseGatewayShutdown, nil)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), g.cfg.DrainTimeout)
	defer cancel()
	if g.ws != nil {
		// nbio's Shutdown looks for its connections gone every 200 ms, and
		// returns at its ctx's end without stopping its pollers: a shorter
		// DrainTimeout left them running after Run returned.
		wsCtx, cancel := context.WithTimeout(context.Background(), max(g.cfg.DrainTimeout, wsShutdownAtLeast))
		defer cancel()
		g.stopWebSocket(wsCtx)
	}
	for _, t := range g.tcp {
		t.engine.Stop()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		_, registered, _, _ := g.reg.counts()
		if registered == 0 {
			g.log.Info("gateway drained")
			return
		}
		select {
		case <-tick.C:
		case <-stopCtx.Done():
			g.log.Warn("gateway drain timed out: close events not acknowledged", "clients", registered)
			return
		}
	}
}

func (g *Gateway) startLoop(ctx context.Context, every time.Duration, f func(time.Time)) {
	g.loops.Add(1)
	go func() {
		defer g.loops.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				f(now)
			}
		}
	}()
}

func (g *Gateway) subscribeFixed() ([]*bus.Subscription, error) {
	var subs []*bus.Subscription
	for _, s := range []struct {
		subject string
		h       bus.Handler
	}{
		{g.inbox + "*", g.onAck},
		{g.subj.Gateway(g.cfg.ID), g.onCommand},
		{g.subj.All(), g.onBroadcast},
		{g.subj.Query("*"), g.onQuery},
		{g.subj.GatewayClaim(g.cfg.ID), g.onClaim},
	} {
		sub, err := g.bus.Subscribe(s.subject, s.h)
		if err != nil {
			unsubscribeAll(subs)
			return nil, fmt.Errorf("gateway: %w", err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// checkIDFree asks the live gateway with this id, if any, to answer: two
// gateways with one id would share command subjects and presence, and
// workers would take one's clients for the other's.
func (g *Gateway) checkIDFree(ctx context.Context) error {
	data, err := g.bus.Request(ctx, g.subj.GatewayClaim(g.cfg.ID), nil)
	switch {
	case errors.Is(err, bus.ErrNoResponders):
		return nil
	case err != nil:
		return fmt.Errorf("gateway: cannot check that id %q is free: %w", g.cfg.ID, err)
	}
	var rep bus.Reply
	_ = bus.Unmarshal(data, &rep)
	return fmt.Errorf("%w: %q, by a gateway that booted at %s: give each gateway its own id",
		ErrIDInUse, g.cfg.ID, time.UnixMilli(rep.Count).UTC().Format(time.RFC3339Nano))
}

// onClaim answers a gateway that starts with this gateway's id.
func (g *Gateway) onClaim(m bus.Msg) {
	if m.Reply != "" {
		g.reply(m.Reply, bus.Reply{Count: g.boot.UnixMilli()})
	}
}

func unsubscribeAll(subs []*bus.Subscription) {
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// newClient returns a client with a fresh id, registered, or nil when the
// gateway is full or stopping.
func (g *Gateway) newClient(addr string, t transport) *client {
	c, _ := g.admit(addr, t, nil)
	return c
}

// admit returns a client with a fresh id, registered, or nil and why
// (CloseGatewayShutdown, CloseServerFull) when the gateway is stopping or
// full; a refusal counts as a close for that reason in Stats.Closed. rec
// is the client's recovery state (nil: it did not opt in).
func (g *Gateway) admit(addr string, t transport, rec *recovery) (*client, bus.CloseReason) {
	if g.stopping.Load() {
		g.stats.closed[bus.CloseGatewayShutdown].Add(1)
		return nil, bus.CloseGatewayShutdown
	}
	seq := g.nextSeq.Add(1)
	// The id is the tail of the batches' reply subject: one string for both.
	reply := g.inbox + clientid.Make(g.cfg.ID, uint64(g.boot.UnixMilli()), seq)
	c := &client{
		id:       reply[len(g.inbox):],
		reply:    reply,
		addr:     addr,
		t:        t,
		rec:      rec,
		shard:    uint8(seq % fanoutShards),
		pingPart: uint8(seq % uint64(pingParts(g.cfg.PingInterval))),
		// Until its token came or a worker accepted it (auth.go).
		unaccepted: g.auth != nil,
	}
	if g.auth != nil {
		c.auth = new(clientAuth)
	}
	if !g.reg.add(c, g.cfg.MaxConnections) {
		g.warnRateLimited("connection refused: MaxConnections reached", "max_connections", g.cfg.MaxConnections)
		g.stats.closed[bus.CloseServerFull].Add(1)
		return nil, bus.CloseServerFull
	}
	g.stats.accepted.Add(1)
	return c, bus.CloseUnknown
}

// onSocketClosed ends c's memberships and queues its close event.
func (g *Gateway) onSocketClosed(c *client) {
	c.setReason(bus.CloseClientClosed) // unless a reason is recorded: closing() holds from here
	groups, uid, ok := g.reg.detach(c)
	if !ok {
		return
	}
	if g.auth != nil {
		stopAuthTimer(c)
	}
	if r := c.closeReason(); int(r) < len(g.stats.closed) {
		g.stats.closed[r].Add(1)
	}
	for _, group := range groups {
		g.syncGroupSub(group)
	}
	if uid != "" {
		g.syncUIDSub(uid)
	}
	g.pushEvent(c, bus.Event{Kind: bus.EventClose, Reason: c.closeReason()})
}

// onInput notes that c is alive and forwards one message, which it
// copies if it keeps it. It returns false when c sent too fast and must be
// closed.
func (g *Gateway) onInput(c *client, msg []byte) bool {
	c.silent.Store(0)
	if limit := g.cfg.MaxMessagesPerSecond; limit > 0 && !c.allowMessage(time.Now().Unix(), limit) {
		c.setReason(bus.CloseRateLimited)
		g.warnRateLimited("client closed: over MaxMessagesPerSecond", "client_id", c.id, "limit", limit)
		return false
	}
	g.stats.messagesIn.Add(1)
	g.stats.bytesIn.Add(uint64(len(msg)))
	if g.auth != nil && g.auth.tokens != nil && (c.awaiting.Load() || isTokenMessage(msg)) {
		return g.onTokenInput(c, msg) // never forwarded
	}
	g.pushEvent(c, bus.Event{Kind: bus.EventMessage, Body: msg})
	return true
}

// pushEvent sends evs for c in a batch of their own when no batch is in
// flight, else queues them. What they point to is borrowed (nbio reuses
// message buffers, and a handshake's headers go with its request): it is
// copied only when the events have to wait.
func (g *Gateway) pushEvent(c *client, evs ...bus.Event) { g.push(c, false, evs) }

// push is pushEvent. While c is holding (auth.go: its connect events wait
// for its token, then for the subscriptions the token gave it), events are
// held in c.auth.held, in order; release sends them, evs after them, and ends
// the holding, under one lock so that nothing overtakes them.
func (g *Gateway) push(c *client, release bool, evs []bus.Event) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	if release {
		if c.auth == nil || !c.auth.holding {
			c.mu.Unlock()
			return
		}
		evs = append(c.auth.held, evs...)
		c.auth.held, c.auth.heldBytes, c.auth.holding = nil, 0, false
	}
	announce := false
	size := 0
	for _, ev := range evs {
		switch {
		case ev.Kind == bus.EventConnect:
			c.announced, announce = true, true
		case ev.Kind == bus.EventClose && !c.announced:
			// Gone before its connect event (a TLS handshake that never
			// finished): workers never heard of it, so they hear nothing.
			c.ended = true
			c.mu.Unlock()
			g.reg.remove(c)
			return
		case ev.Kind == bus.EventClose:
			c.ended = true
		}
		size += eventSize(ev)
	}
	if c.auth != nil && c.auth.holding {
		if int(c.auth.heldBytes)+size > g.cfg.MaxPendingEventBytes {
			c.mu.Unlock()
			c.end(bus.CloseEventQueueFull, nil)
			return
		}
		for _, ev := range evs {
			c.auth.held = append(c.auth.held, owned(ev))
		}
		c.auth.heldBytes += int32(size)
		c.mu.Unlock()
		return
	}
	if !c.ended && int(c.queued)+size > g.cfg.MaxPendingEventBytes {
		c.mu.Unlock()
		g.warnRateLimited("client closed: events wait for workers past MaxPendingEventBytes", "client_id", c.id)
		c.end(bus.CloseEventQueueFull, nil)
		return
	}
	var batch []byte
	unsendable := false
	subject := g.batchSubjectLocked(c)
	if c.inflight == nil && len(c.queue) == 0 && g.win.take(c) {
		batch = g.startBatchLocked(c, evs, time.Now())
		unsendable = batch == nil
		if unsendable {
			g.win.release(c, false) // no batch took the slot
		}
		if unsendable && announce {
			// Workers hear nothing of a client whose connect event could
			// not reach them, its close included.
			c.announced, announce = false, false
		}
		c.finished = unsendable && c.ended
	} else {
		for _, ev := range evs {
			c.queue = append(c.queue, owned(ev))
		}
		c.queued += int32(size)
	}
	ended := c.ended
	c.mu.Unlock()
	if announce {
		g.presence.add(c.id)
	}
	if unsendable {
		g.grantSlots()
	}
	switch {
	case batch != nil:
		g.sendBatch(c, subject, batch)
	case unsendable && ended: // its close event: nothing more can go
		g.log.Error("close event dropped: larger than NATS's max payload", "client_id", c.id, "nats_max_payload", g.bus.MaxPayload())
		g.reg.remove(c)
		g.presence.remove(c.id)
	case unsendable:
		g.closeUnsendable(c)
	}
}

// owned returns ev with copies of what it borrowed.
func owned(ev bus.Event) bus.Event {
	ev.Body = bytes.Clone(ev.Body)
	if ev.WS != nil {
		ws := *ev.WS
		ws.Header = http.Header(ws.Header).Clone()
		ev.WS = &ws
	}
	return ev
}

// nextBatchLocked takes the next batch off c's queue and marks it in
// flight; nil when the queue is empty. Events that cannot fit a NATS
// message are dropped, and dropped reports it: c must then be closed.
// c.mu must be held.
func (g *Gateway) nextBatchLocked(c *client, now time.Time) (data []byte, dropped bool) {
	for len(c.queue) > 0 {
		budget := MaxBatchBytes
		if limit := g.bus.MaxPayload(); limit > 0 && limit < MaxBatchBytes {
			budget = int(limit) // events that fit alone then go alone
		}
		budget -= batchOverhead(g.cfg.ID, c, g.reg.uidOf(c))
		n, size := 0, 0
		for n < len(c.queue) && (n == 0 || size+eventSize(c.queue[n]) <= budget) {
			size += eventSize(c.queue[n])
			n++
		}
		data = g.startBatchLocked(c, c.queue[:n], now)
		clear(c.queue[:n])
		c.queue = c.queue[n:]
		c.queued -= int32(size)
		if data != nil {
			break
		}
		dropped = true
	}
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return data, dropped
}

// startBatchLocked encodes events as c's next batch and marks it in
// flight. It returns nil, and changes nothing, when the batch is larger
// than the NATS server accepts: sent again and again, it would only wait
// for an ack that never comes, and hold everything behind it.
// c.mu must be held.
func (g *Gateway) startBatchLocked(c *client, events []bus.Event, now time.Time) []byte {
	batch := bus.EventBatch{
		Gateway: g.cfg.ID, Client: c.id, Seq: c.seq + 1, Addr: c.addr,
		UID: g.reg.uidOf(c), Session: c.session, Events: events,
	}
	data := bus.MarshalBatch(&batch)
	if limit := g.bus.MaxPayload(); limit > 0 && int64(len(data)) > limit {
		return nil
	}
	c.seq++
	c.inflight, c.claimed, c.resent = data, false, false
	c.deadline = now.Add(g.cfg.AckTimeout).UnixNano()
	g.waitMu.Lock()
	g.waiting[c] = struct{}{}
	g.waitMu.Unlock()
	return data
}

// closeUnsendable closes c, whose events were dropped because they
// cannot fit a NATS message.
func (g *Gateway) closeUnsendable(c *client) {
	g.warnRateLimited("client closed: its events do not fit a NATS message", "client_id", c.id, "nats_max_payload", g.bus.MaxPayload())
	c.end(bus.CloseMessageTooLarge, nil)
}

// batchSubjectLocked is where c's next batch goes: its sticky worker's
// subject, or the queue group's. c.mu must be held.
func (g *Gateway) batchSubjectLocked(c *client) string {
	if c.direct != "" {
		return c.direct
	}
	return g.eventsSubject
}

// stickLocked records the worker that acknowledged c's batch: a sticky
// worker's id sends c's next batches to that worker alone, none (or one
// that is not a plain subject token) to the queue group. c.mu must be held.
func (g *Gateway) stickLocked(c *client, worker string) {
	switch {
	case worker == "" || !bus.ValidWorkerID(worker):
		c.direct = ""
	case len(c.direct) != len(g.directPrefix)+len(worker) || c.direct[len(g.directPrefix):] != worker:
		c.direct = g.directPrefix + worker
	}
}

func (g *Gateway) sendBatch(c *client, subject string, data []byte) {
	g.stats.batchesSent.Add(1)
	if err := g.bus.PublishRequest(subject, c.reply, data); err != nil {
		// The sweeper sends it again when the ack does not come.
		g.warnRateLimited("event batch not published", "client_id", c.id, "err", err)
	}
}

// onAck handles a worker's answer to a batch.
func (g *Gateway) onAck(m bus.Msg) {
	suffix := m.Subject[len(g.inbox):]
	if suffix == bus.HeldSuffix {
		g.onHeld(m)
		return
	}
	c := g.reg.get(suffix)
	if c == nil {
		return
	}
	now := time.Now()
	if m.NoResponders {
		c.mu.Lock()
		if c.direct != "" {
			// Its sticky worker stopped or died: the batch goes to the queue
			// group at the next sweep, marked resent like any copy sent
			// again, so it runs only where its gateway grants it.
			c.direct = ""
			if c.inflight != nil {
				c.deadline = now.UnixNano()
			}
			c.mu.Unlock()
			return
		}
		if c.inflight != nil {
			c.deadline = now.Add(g.cfg.NoWorkerRetry).UnixNano()
		}
		c.mu.Unlock()
		g.warnRateLimited("no worker listens: client events wait", "subject", g.eventsSubject)
		return
	}
	var ack bus.Ack
	if err := bus.UnmarshalAck(m.Data, &ack); err != nil {
		g.warnRateLimited("bad ack from a worker", "err", err)
		return
	}
	c.mu.Lock()
	if m.Reply != "" && ack.Status == bus.AckWorking {
		g.answerClaimLocked(c, ack, m.Reply, now)
		return
	}
	if c.inflight == nil || ack.Seq != c.seq {
		c.mu.Unlock()
		return // a duplicate answer to a batch we resent
	}
	if ack.Status == bus.AckWorking {
		// Someone runs this copy: a claim for another one must not succeed.
		c.claimed = true
		c.deadline = now.Add(g.cfg.AckTimeout).UnixNano()
		c.mu.Unlock()
		return
	}
	if ack.SetSession {
		if len(ack.Session) > MaxSessionBytes {
			g.warnRateLimited("session update refused: over MaxSessionBytes", "client_id", c.id, "bytes", len(ack.Session))
		} else {
			c.session = ack.Session
		}
	}
	g.stickLocked(c, ack.Worker)
	c.inflight = nil
	// The next batch waits in line with the other clients' (window.go).
	g.win.release(c, len(c.queue) > 0)
	finished := len(c.queue) == 0 && c.ended
	c.finished = finished
	g.waitMu.Lock()
	delete(g.waiting, c)
	g.waitMu.Unlock()
	c.mu.Unlock()
	g.grantSlots()
	if finished {
		g.reg.remove(c)
		g.presence.remove(c.id)
	}
}

// onHeld takes a worker's report on many batches waiting in it that were
// granted to it: each counts as an AckWorking for its batch.
func (g *Gateway) onHeld(m bus.Msg) {
	var h bus.Held
	if err := bus.Unmarshal(m.Data, &h); err != nil || len(h.Clients) != len(h.Seqs) {
		g.warnRateLimited("bad held report from a worker", "err", err)
		return
	}
	deadline := time.Now().Add(g.cfg.AckTimeout).UnixNano()
	for i, id := range h.Clients {
		c := g.reg.get(id)
		if c == nil {
			continue
		}
		c.mu.Lock()
		if c.inflight != nil && h.Seqs[i] == c.seq {
			c.claimed, c.deadline = true, deadline
		}
		c.mu.Unlock()
	}
}

// answerClaimLocked grants a worker the batch in flight, once per copy
// sent and only while no progress report for it came since: a worker
// claims a batch before running one that waited in its buffer or was
// resent, so a stale copy never runs after (or beside) another. It
// unlocks c.mu.
func (g *Gateway) answerClaimLocked(c *client, ack bus.Ack, reply string, now time.Time) {
	grant := c.inflight != nil && ack.Seq == c.seq && !c.claimed
	answer := bus.Ack{Client: c.id, Seq: ack.Seq, Status: bus.AckDone}
	if grant {
		c.claimed, answer.Status = true, bus.AckWorking
		c.deadline = now.Add(g.cfg.AckTimeout).UnixNano()
	}
	c.mu.Unlock()
	_ = g.bus.Publish(reply, bus.MarshalAck(&answer))
}

// sweep resends batches whose ack is overdue: their worker died, or no
// worker was there. While NATS is down nothing is resent: what was
// published is in the client's reconnect buffer already.
func (g *Gateway) sweep(now time.Time) {
	g.checkBusLiveness(now)
	if !g.bus.Connected() {
		return
	}
	g.flushPresence()
	g.waitMu.Lock()
	overdue := make([]*client, 0, len(g.waiting))
	for c := range g.waiting {
		overdue = append(overdue, c)
	}
	g.waitMu.Unlock()
	nowNano := now.UnixNano()
	for _, c := range overdue {
		c.mu.Lock()
		if c.inflight == nil {
			g.waitMu.Lock()
			delete(g.waiting, c)
			g.waitMu.Unlock()
			c.mu.Unlock()
			continue
		}
		if nowNano < c.deadline {
			c.mu.Unlock()
			continue
		}
		if !c.resent {
			// The first copy may still wait in a worker: from now on only
			// a claimed copy runs (see onAck).
			if marked, err := bus.MarkResent(c.inflight); err == nil {
				c.inflight, c.resent = marked, true
			}
		}
		data := c.inflight
		c.claimed = false
		c.deadline = now.Add(g.cfg.AckTimeout).UnixNano()
		// Its sticky worker, if any, did not answer in time: the queue
		// group takes the client, and the worker that runs the batch next
		// keeps it (its ack names it).
		c.direct = ""
		c.mu.Unlock()
		g.stats.batchResends.Add(1)
		if g.log.Enabled(context.Background(), slog.LevelDebug) {
			g.log.Debug("event batch resent", "client_id", c.id)
		}
		g.sendBatch(c, g.eventsSubject, data)
	}
}

// checkBusLiveness closes every client once the gateway's own heartbeats
// have not come back through NATS for NATSLossTimeout. Workers judge the
// gateway by the same heartbeats (and take it for dead a little later), so
// a gateway cut off from NATS closes its clients before workers run their
// OnClose, and what the handlers heard stays true. Only the sweep loop
// calls it.
func (g *Gateway) checkBusLiveness(now time.Time) {
	last := time.Unix(0, g.lastOwnBeat.Load())
	silent := now.Sub(last)
	if g.cfg.NATSLossTimeout < 0 {
		return
	}
	if silent >= g.cfg.NATSLossTimeout/2 && g.ctl.Connected() && g.reconnectForced.CompareAndSwap(false, true) {
		// The server may be frozen: NATS's own pings would take seconds to
		// say so. Ask it (a flush is a ping), and if it does not answer
		// soon, try another node before the clients have to go. A server
		// that answers is only slow (a connect storm on a busy machine):
		// a reconnect would drop the beat that is on its way, and the
		// clients would go for nothing. Only the heartbeat connection: a
		// reconnect of the event connection would drop what is in flight.
		g.loops.Add(1)
		go func() {
			defer g.loops.Done()
			ctx, cancel := context.WithTimeout(g.life, g.cfg.NATSLossTimeout/4)
			defer cancel()
			if err := g.ctl.Flush(ctx); err != nil && g.life.Err() == nil {
				g.log.Warn("own heartbeats do not come back and NATS does not answer: reconnecting", "silent_for", silent.Round(time.Millisecond), "err", err)
				_ = g.ctl.ForceReconnect()
			}
		}()
	}
	if silent < g.cfg.NATSLossTimeout {
		return
	}
	clients := g.reg.liveClients(nil)
	if len(clients) > 0 {
		g.log.Warn("own heartbeats lost in NATS for too long: closing every client",
			"nats_loss_timeout", g.cfg.NATSLossTimeout, "clients", len(clients))
	}
	for _, c := range clients {
		c.end(bus.CloseGatewayLost, nil)
	}
}

// onOwnBeat notes that a heartbeat of this gateway went round through NATS.
func (g *Gateway) onOwnBeat(m bus.Msg) {
	var b bus.Beat
	if bus.Unmarshal(m.Data, &b) != nil || b.Gateway != g.cfg.ID {
		return
	}
	if b.Boot != g.boot.UnixMilli() {
		g.log.Error("another gateway runs with this id: workers will mix up the clients of both; stop one and give each its own id",
			"other_boot", time.UnixMilli(b.Boot).UTC())
		return
	}
	g.lastOwnBeat.Store(time.Now().UnixNano())
	g.reconnectForced.Store(false)
}

// Addrs lists the listeners' bound addresses as URLs, once Ready:
// "ws://host:port/path", "wss://...", "text://host:port",
// "frame+tls://host:port". A wildcard listener shows as bound
// ("ws://[::]:7272/"); AdvertisedAddrs is where clients connect.
func (g *Gateway) Addrs() []string {
	var addrs []string
	for _, l := range g.listeners() {
		addrs = append(addrs, l.url(l.hostport))
	}
	return addrs
}

// AdvertisedAddrs is what heartbeats and info queries carry, once Ready:
// Config.AdvertiseAddrs if set, else Addrs with each wildcard listener
// listed once per usable address of the host (loopback included), since a
// client cannot connect to "0.0.0.0". Every wildcard stands for all of
// them: Go listens on "0.0.0.0" with a dual-stack socket (bound as "[::]").
func (g *Gateway) AdvertisedAddrs() []string {
	if len(g.cfg.AdvertiseAddrs) > 0 {
		return slices.Clone(g.cfg.AdvertiseAddrs)
	}
	var addrs []string
	for _, l := range g.listeners() {
		host, port, err := net.SplitHostPort(l.hostport)
		ip, perr := netip.ParseAddr(host)
		if err != nil || (host != "" && (perr != nil || !ip.IsUnspecified())) {
			addrs = append(addrs, l.url(l.hostport))
			continue
		}
		hosts := hostAddrs()
		if len(hosts) == 0 { // no interface up: the bound address says at least the port
			addrs = append(addrs, l.url(l.hostport))
		}
		for _, h := range hosts {
			addrs = append(addrs, l.url(net.JoinHostPort(h.String(), port)))
		}
	}
	return addrs
}

// hostAddrs lists the host's loopback and unicast addresses; link-local
// ones are left out: they need a zone to be dialled.
func hostAddrs() []netip.Addr {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifaddrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsLoopback() && !ip.IsGlobalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// listenerURL is one listener: url puts a host:port between its parts.
type listenerURL struct{ scheme, hostport, path string }

func (l listenerURL) url(hostport string) string { return l.scheme + "://" + hostport + l.path }

func (g *Gateway) listeners() []listenerURL {
	var ls []listenerURL
	if g.wsAddr != "" {
		scheme := "ws"
		if g.cfg.WebSocketTLS != nil {
			scheme = "wss"
		}
		ls = append(ls, listenerURL{scheme, g.wsAddr, g.cfg.WebSocketPath})
	}
	for _, t := range g.tcp {
		scheme := t.codec.Name()
		if t.tls {
			scheme += "+tls"
		}
		ls = append(ls, listenerURL{scheme, t.addr, ""})
	}
	return ls
}

// beat announces this gateway to API clients and workers.
func (g *Gateway) beat(leaving bool) {
	live, _, _, _ := g.reg.counts()
	data, err := bus.Marshal(&bus.Beat{Gateway: g.cfg.ID, Boot: g.boot.UnixMilli(), Leaving: leaving, Addrs: g.AdvertisedAddrs(), Conns: int64(live),
		Interval: g.cfg.BeatInterval.Milliseconds()})
	if err == nil {
		_ = g.ctl.Publish(g.subj.Heartbeat(), data)
	}
}

// warnRateLimited logs a warning unless too many were logged this second:
// a storm of bad input must not become a storm of log lines.
func (g *Gateway) warnRateLimited(msg string, args ...any) {
	g.warns.Log(g.log, slog.LevelWarn, msg, args...)
}
