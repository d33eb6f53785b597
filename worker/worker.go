package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/ratelog"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// Defaults for [Config].
const (
	DefaultMaxConcurrency = 1024
	DefaultDrainTimeout   = 30 * time.Second
)

// claimTimeout bounds a claim's round trip to the gateway.
const claimTimeout = time.Second

// ErrAlreadyRunning is returned by a second call to [Worker.Run].
var ErrAlreadyRunning = errors.New("worker: already running")

// MessageEvent is a message a client sent.
type MessageEvent struct {
	// Data is the message; the handler may keep it. It shares memory with
	// the event batch it came in (which may hold other events): to keep a
	// few bytes of it for long, copy them.
	Data []byte
}

// WebSocketConnectEvent describes a client's WebSocket handshake.
type WebSocketConnectEvent struct {
	Path   string
	Query  string
	Header http.Header
	// RemoteAddr is the client's address as the gateway saw it.
	RemoteAddr string
}

// CloseEvent says why a client left. It is the client's last event.
type CloseEvent struct {
	Reason CloseReason
}

// Handlers are the user's callbacks. Nil means "not interested", except
// OnMessage, which is required. For one client the event handlers run one
// at a time, in the order the events happened: connect, websocket-connect,
// messages, close. Handlers of different clients run in parallel, so
// shared state needs its own locking: while one goroutine keeps up, a
// worker runs batches one after the other on it, and a batch that has
// waited about a millisecond behind running handlers gets a goroutine of
// its own (up to MaxConcurrency). A returned error is logged with the
// client id; the event counts as handled. A panic is recovered and logged
// the same way. If the worker dies while a handler runs, the client's events
// since its last acknowledged batch run again on another worker.
type Handlers struct {
	// OnWorkerStart runs once, before any event is taken.
	OnWorkerStart func(ctx context.Context, w *Worker) error
	// OnConnect runs when a client connects (for WebSocket: after the handshake).
	OnConnect func(ctx context.Context, c *Client) error
	// OnWebSocketConnect runs after OnConnect for WebSocket clients.
	OnWebSocketConnect func(ctx context.Context, c *Client, e WebSocketConnectEvent) error
	// OnMessage runs for every message a client sends.
	OnMessage func(ctx context.Context, c *Client, e MessageEvent) error
	// OnClose runs when a client has gone, whatever the reason.
	OnClose func(ctx context.Context, c *Client, e CloseEvent) error
	// OnWorkerStop runs once, after the last event was handled.
	OnWorkerStop func(ctx context.Context, w *Worker) error
}

// Config configures a [Worker].
type Config struct {
	// Bus is the NATS connection. Required.
	Bus *bus.Conn
	// Prefix is the subject prefix of the deployment. Empty means bus.DefaultPrefix.
	Prefix string
	// Handlers are the callbacks; Handlers.OnMessage is required.
	Handlers Handlers
	// MaxConcurrency bounds how many clients' batches run at once. Zero
	// means DefaultMaxConcurrency (1024).
	MaxConcurrency int
	// DrainTimeout bounds how long Run waits, when stopping, for running
	// handlers; then their ctx is cancelled. Zero means DefaultDrainTimeout (30s).
	DrainTimeout time.Duration
	// API configures the worker's API client; its Bus and Prefix are set
	// from the fields above.
	API api.Config
	// ObserveHandler, if set, is called after every handler with the event
	// kind, how long the handler ran and what it returned (a recovered panic
	// counts as an error): the hook for latency metrics. It must be fast.
	ObserveHandler func(kind EventKind, took time.Duration, err error)
	// Logger receives the worker's logs. Nil means slog.Default().
	Logger *slog.Logger
	// ReapOnly makes a worker that takes no events: it follows the
	// gateways' presence and, when it leads, sends the close events of a
	// lost gateway's clients (see [Worker]'s reaper) for the workers that
	// take events. For deployments whose workers are written in another
	// language and do not reap (the PHP BusinessWorker). Handlers are then
	// not needed, and not called.
	ReapOnly bool
	// Sticky keeps each client's events on the worker process that ran
	// its last batch, as GatewayWorker's routerBind did, so state kept in
	// memory per client (or per room of clients) stays where it is
	// needed. The worker also listens on a subject of its own, and its
	// acks name it (docs/protocol.md, "Sticky workers"): the gateway then
	// sends that client's batches there. When the worker stops or dies, or does not acknowledge in
	// time, the gateway falls back to the queue group and the client
	// sticks to the worker that takes it next: order and at-least-once
	// hold as without it. Default false: any worker takes any batch.
	Sticky bool
}

// Worker runs handlers for client events.
type Worker struct {
	cfg   Config
	id    string
	log   *slog.Logger
	bus   *bus.Conn
	subj  bus.Subjects
	api   *api.Client
	start time.Time
	ready chan struct{}

	running atomic.Bool
	// sem bounds the batches whose handlers run at once (MaxConcurrency);
	// they run on the subscriptions' consumers.
	sem     chan struct{}
	batches sync.WaitGroup
	// handlerCtx is cancelled when the drain deadline passes.
	handlerCtx context.Context

	// mu guards recent: per-client duplicate detection.
	mu     sync.Mutex
	recent map[string]*clientState

	handled  atomic.Uint64
	inFlight atomic.Int64
	// unstuck is set when a sticky worker starts draining: its acks stop
	// naming it, so its clients go back to the queue group.
	unstuck atomic.Bool
	// errLogs limits handler error logs: clients can cause them at will.
	errLogs ratelog.Limiter
	// claimLogs limits the logs of batches not run: forged or unclaimed.
	claimLogs ratelog.Limiter
	// gone holds the clients whose synthesized close ran or was decided
	// here (their gateway taken for lost): their later events are dropped.
	gone goneSet
	// consumers take the batches of the subscriptions; their queues hold
	// those that wait (set by Run before it takes any); claims are the
	// claims sent for them.
	consumers []*consumers
	claims    claims
	// reaper is Run's, for tests that wait until it knows a gateway's
	// clients (export_test.go).
	reaper atomic.Pointer[reaper]
}

// clientState remembers the last batch of a client handled here, so that a
// resent batch is answered without running handlers twice.
type clientState struct {
	running uint64
	done    uint64
	lastAck []byte
	at      time.Time
	// reply is where the running batch's acks go.
	reply string
}

func (c Config) withDefaults() Config {
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.API.Bus, c.API.Prefix = c.Bus, c.Prefix
	if c.API.Logger == nil {
		c.API.Logger = c.Logger
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Bus == nil:
		return errors.New("worker: Config.Bus is required")
	case c.Handlers.OnMessage == nil && !c.ReapOnly:
		return errors.New("worker: Config.Handlers.OnMessage is required")
	case c.MaxConcurrency < 0:
		return fmt.Errorf("worker: MaxConcurrency (%d) must not be negative", c.MaxConcurrency)
	case c.DrainTimeout < 0:
		return fmt.Errorf("worker: DrainTimeout (%v) must not be negative", c.DrainTimeout)
	}
	return nil
}

// New checks cfg and returns a worker; it does no I/O. It copies cfg and
// never changes the caller's value.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	a, err := api.New(cfg.API)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	id := randomID()
	return &Worker{
		cfg:       cfg,
		id:        id,
		log:       cfg.Logger.With("worker_id", id),
		bus:       cfg.Bus,
		subj:      subj,
		api:       a,
		ready:     make(chan struct{}),
		errLogs:   ratelog.Limiter{Burst: 20},
		claimLogs: ratelog.Limiter{Burst: 5},
		gone:      goneSet{ids: map[string]goneClient{}},
		sem:       make(chan struct{}, cfg.MaxConcurrency),
		recent:    map[string]*clientState{},
		claims:    claims{ask: map[string]*queued{}},
	}, nil
}

// ID returns the worker's random id.
func (w *Worker) ID() string { return w.id }

// API returns the calls of the worker's API client, for use outside
// handlers (timers started in OnWorkerStart, for example). The worker
// closes the client when Run returns; a program that needs a client of
// its own (pkg/httpapi takes one) makes it with api.New.
func (w *Worker) API() api.Calls { return w.api }

// Ready is closed once the worker takes events.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Handled counts the events whose handlers returned.
func (w *Worker) Handled() uint64 { return w.handled.Load() }

// InFlight is the number of batches whose handlers run now.
func (w *Worker) InFlight() int64 { return w.inFlight.Load() }

// Uptime is how long Run has been running.
func (w *Worker) Uptime() time.Duration {
	if w.start.IsZero() {
		return 0
	}
	return time.Since(w.start)
}

// Run calls OnWorkerStart, takes events until ctx ends, then drains:
// it stops taking events, lets running handlers finish (at most
// DrainTimeout), calls OnWorkerStop and returns. No event it took is lost.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	w.start = time.Now()
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	w.handlerCtx = hctx
	defer w.api.Close()

	if h := w.cfg.Handlers.OnWorkerStart; h != nil && !w.cfg.ReapOnly {
		if err := h(ctx, w); err != nil {
			return fmt.Errorf("worker: OnWorkerStart: %w", err)
		}
	}
	info, err := w.bus.Subscribe(w.subj.WorkerInfo(), w.onInfo)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer func() { _ = info.Unsubscribe() }()
	ctl, err := w.bus.Sibling(ctx, " control")
	if err != nil {
		return fmt.Errorf("worker: heartbeat connection: %w", err)
	}
	defer ctl.Close()
	reapCtx, stopReaper := context.WithCancel(hctx)
	reaperDone := make(chan error, 1)
	r := newReaper(w)
	w.reaper.Store(r)
	go func() { reaperDone <- r.run(reapCtx, ctl) }()
	defer func() { stopReaper(); <-reaperDone }()
	if w.cfg.ReapOnly {
		return w.reapOnly(ctx)
	}
	w.claims.inbox = w.bus.NewInbox() + "." // before any claim is sent
	answers, err := w.bus.Subscribe(w.claims.inbox+"*", w.onClaimAnswer)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer func() { _ = answers.Unsubscribe() }()
	lostConsumers, lost, err := w.subscribe(w.subj.LostEvents())
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer func() { _ = lost.Unsubscribe(); lostConsumers.abandon(); lostConsumers.wait() }()
	events, sub, err := w.subscribe(w.subj.Events())
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	subs := []*bus.Subscription{sub.Subscription}
	// After a drain this only waits; otherwise it ends the subscriptions
	// and leaves what waits in them to the gateways' resends.
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		events.abandon()
		events.wait()
	}()
	w.consumers = []*consumers{events, lostConsumers}
	if w.cfg.Sticky {
		// Into the same buffer: the batches of the clients that stick here
		// run on the same consumers as the queue group's.
		direct, err := w.bus.SubscribeInto(sub.Buffer, w.subj.WorkerEvents(w.id))
		if err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		subs = append(subs, direct)
	}
	// A refused subscription would leave the worker deaf while it seems
	// to run (a sticky one's clients would all fall back): fail now.
	if err := w.bus.CheckSubscriptions(ctx, subs...); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.log.Info("worker taking events", "subject", w.subj.Events(), "queue", bus.WorkerQueue, "sticky", w.cfg.Sticky)
	close(w.ready)

	forget := time.NewTicker(10 * time.Second)
	defer forget.Stop()
	progress := time.NewTicker(bus.ProgressInterval)
	defer progress.Stop()
	claims := time.NewTicker(claimTick)
	defer claims.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-progress.C:
			w.reportProgress(now)
		case now := <-claims.C:
			w.claimAll(now)
		case now := <-forget.C:
			w.forgetOld(now)
		}
	}

	w.log.Info("worker draining", "in_flight", w.inFlight.Load())
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DrainTimeout)
	defer cancel()
	if err := w.drain(drainCtx, subs, events); err != nil {
		w.log.Warn("worker drain incomplete: handler contexts cancelled", "err", err)
		events.abandon() // batches not started: their gateways resend them elsewhere
		cancelHandlers()
		w.batches.Wait()
	}
	if h := w.cfg.Handlers.OnWorkerStop; h != nil {
		if err := h(drainCtx, w); err != nil {
			w.log.Error("OnWorkerStop failed", "err", err)
		}
	}
	w.log.Info("worker stopped", "handled", w.handled.Load())
	return nil
}

// reapOnly is Run for a ReapOnly worker: its reaper runs until ctx ends.
func (w *Worker) reapOnly(ctx context.Context) error {
	if err := w.bus.Flush(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.log.Info("worker reaping only: it takes no events, and sends the close events of lost gateways' clients")
	close(w.ready)
	<-ctx.Done()
	w.log.Info("worker stopped")
	return nil
}

// drain stops the subscription, waits until NATS delivered what it had
// routed here, lets the consumers run it, and waits until every batch was
// handled and acknowledged.
func (w *Worker) drain(ctx context.Context, subs []*bus.Subscription, events *consumers) error {
	w.unstuck.Store(true)
	for _, sub := range subs {
		if err := sub.Drain(); err != nil {
			return err
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, sub := range subs {
		for !sub.Drained() {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	events.finish()
	done := make(chan struct{})
	go func() { events.wait(); w.batches.Wait(); close(done) }()
	progress := time.NewTicker(bus.ProgressInterval)
	defer progress.Stop()
	claims := time.NewTicker(claimTick)
	defer claims.Stop()
	for {
		select {
		case <-done:
			return w.bus.Flush(ctx)
		case now := <-progress.C:
			w.reportProgress(now)
		case now := <-claims.C:
			w.claimAll(now)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// claimAll claims the batches that waited (claimWaiting) in every queue.
func (w *Worker) claimAll(now time.Time) {
	for _, cs := range w.consumers {
		w.claimWaiting(cs.q, now)
	}
}

// onInfo answers `gatewayworker status`.
func (w *Worker) onInfo(m bus.Msg) {
	if m.Reply == "" {
		return
	}
	info := bus.WorkerInfo{ID: w.id, Boot: w.start.UnixMilli(), Handled: w.handled.Load(), InFlight: w.inFlight.Load()}
	if r := w.reaper.Load(); r != nil {
		info.ReaperClients = r.known()
	}
	body, err := bus.Marshal(&info)
	if err != nil {
		return
	}
	if data, err := bus.Marshal(&bus.Reply{Body: body}); err == nil {
		_ = w.bus.Publish(m.Reply, data)
	}
}

// onBatch runs one batch a consumer took off a queue at now. It waits
// while MaxConcurrency batches run.
func (w *Worker) onBatch(e *queued, now time.Time) {
	m := e.m
	// It may have waited long enough for its gateway to send it again.
	waited := now.Sub(e.at) > claimAfter
	var b bus.EventBatch
	if err := bus.UnmarshalBatch(m.Data, &b); err != nil || b.Client == "" || m.Reply == "" {
		w.log.Error("event batch dropped: undecodable", "err", err)
		return
	}
	if w.forged(m.Subject, b) {
		return
	}
	if b.Seq != reapSeq && w.gone.has(b.Client) {
		// Its close already ran here, synthesized for a gateway taken for
		// lost: the close stays its last event.
		w.resendAck(m.Reply, b, nil)
		return
	}
	// A copy that waited, or that its gateway sent again, may run
	// elsewhere: only the one the gateway grants runs.
	claim := (waited || b.Resent) && b.Seq != reapSeq
	w.mu.Lock()
	st := w.recent[b.Client]
	switch {
	case st != nil && b.Seq == st.done:
		ack := st.lastAck
		w.mu.Unlock()
		w.resendAck(m.Reply, b, ack)
		return
	case st != nil && b.Seq == st.running && st.running > st.done:
		w.mu.Unlock()
		return // still running here; its progress reports keep the gateway waiting
	case st != nil && b.Seq < st.done:
		// A stale copy of a batch the gateway has moved past, or this
		// worker's state is wrong (a forged batch with a higher seq): the
		// gateway tells which.
		claim = true
	}
	w.mu.Unlock()
	if claim && !w.claimed(e, b) {
		return
	}
	w.mu.Lock()
	if st = w.recent[b.Client]; st == nil {
		st = &clientState{}
		w.recent[b.Client] = st
	}
	st.done = min(st.done, b.Seq-1)
	st.running, st.at, st.reply = b.Seq, now, m.Reply
	w.mu.Unlock()

	w.batches.Add(1)
	w.inFlight.Add(1)
	w.sem <- struct{}{}
	w.process(b, m.Reply)
	<-w.sem
}

// forged reports, and logs, a batch that only a forger sends. Workers may
// publish on the lost-events subject (docs/security.md), but all that
// belongs there is a reaper's synthesized close: one close event, numbered
// reapSeq; and such a close belongs nowhere else.
func (w *Worker) forged(subject string, b bus.EventBatch) bool {
	synthesized := b.Seq == reapSeq && len(b.Events) == 1 && b.Events[0].Kind == bus.EventClose
	if subject == w.subj.LostEvents() {
		if synthesized {
			return false
		}
	} else if b.Seq != reapSeq {
		return false
	}
	w.claimLogs.Log(w.log, slog.LevelWarn, "event batch dropped: forged", "subject", subject, "client_id", b.Client, "events", len(b.Events))
	return true
}

// claim asks b's gateway for the batch (an AckWorking request): true when
// it is still in flight and no other copy was granted since it was sent.
// Without an answer the batch is not run: the gateway sends it again.
func (w *Worker) claim(b bus.EventBatch, reply string) bool {
	ctx, cancel := context.WithTimeout(w.handlerCtx, claimTimeout)
	defer cancel()
	data, err := w.bus.Request(ctx, reply, bus.MarshalAck(&bus.Ack{Client: b.Client, Seq: b.Seq, Status: bus.AckWorking}))
	var ack bus.Ack
	if err != nil || bus.UnmarshalAck(data, &ack) != nil {
		w.claimLogs.Log(w.log, slog.LevelWarn, "batch not claimed: its gateway will send it again", "client_id", b.Client, "err", err)
		return false
	}
	return ack.Status == bus.AckWorking && ack.Seq == b.Seq
}

func (w *Worker) resendAck(reply string, b bus.EventBatch, ack []byte) {
	if ack == nil {
		ack = bus.MarshalAck(&bus.Ack{Client: b.Client, Seq: b.Seq, Status: bus.AckDone})
	}
	_ = w.bus.Publish(reply, ack)
}

// process runs the handlers of one batch and acknowledges it.
func (w *Worker) process(b bus.EventBatch, reply string) {
	defer func() {
		w.inFlight.Add(-1)
		w.batches.Done()
	}()
	if b.Seq == reapSeq && !w.gone.closing(b.Client, time.Now()) {
		w.resendAck(reply, b, nil) // its synthesized close ran here already
		return
	}
	c := &Client{Calls: w.api, id: b.Client, gateway: b.Gateway, addr: b.Addr, uid: b.UID, rawSession: b.Session}
	closed := false
	for _, ev := range b.Events {
		w.dispatch(c, ev)
		w.handled.Add(1)
		closed = closed || ev.Kind == bus.EventClose
	}

	ack := bus.Ack{Client: b.Client, Seq: b.Seq, Status: bus.AckDone}
	if w.cfg.Sticky && !closed && !w.unstuck.Load() {
		ack.Worker = w.id
	}
	if s, changed, err := c.sessionUpdate(); err != nil {
		w.log.Error("session not saved: not encodable", "client_id", b.Client, "err", err)
	} else if changed {
		ack.SetSession, ack.Session = true, s
	}
	data := bus.MarshalAck(&ack)
	w.mu.Lock()
	if st := w.recent[b.Client]; st != nil {
		st.done, st.lastAck, st.at, st.reply = b.Seq, data, time.Now(), ""
		if closed {
			delete(w.recent, b.Client)
		}
	}
	w.mu.Unlock()
	if err := w.bus.Publish(reply, data); err != nil {
		w.log.Warn("ack not sent: the gateway will resend the batch", "client_id", b.Client, "err", err)
	}
}

// reportProgress tells the gateway of every batch that has run for a
// while that its handlers still run (bus.AckWorking), so a slow handler is
// not mistaken for a dead worker. Called every bus.ProgressInterval, it
// reports a batch at most 2 × ProgressInterval after it started.
//
// It reports the batches waiting here that their gateways granted as well
// (claimWaiting): in a storm, a batch waits for seconds, and a gateway
// that hears nothing sends it again; the copies then piled up in the
// queues and their claims in NATS.
func (w *Worker) reportProgress(now time.Time) {
	var due []report
	w.mu.Lock()
	for id, st := range w.recent {
		if st.running > st.done && st.reply != "" && now.Sub(st.at) >= bus.ProgressInterval/2 {
			due = append(due, report{id, st.reply, st.running})
		}
	}
	w.mu.Unlock()
	// The batches that wait, one report per gateway: a storm leaves
	// thousands waiting here, and one message each, four times a second,
	// buried the NATS server.
	held := map[string]*bus.Held{}
	for _, cs := range w.consumers {
		cs.q.granted(held)
	}
	for to, h := range held {
		for len(h.Clients) > 0 {
			n := min(len(h.Clients), heldPerReport)
			data, err := bus.Marshal(&bus.Held{Clients: h.Clients[:n], Seqs: h.Seqs[:n]})
			if err == nil {
				_ = w.bus.Publish(to, data)
			}
			h.Clients, h.Seqs = h.Clients[n:], h.Seqs[n:]
		}
	}
	for _, r := range due {
		_ = w.bus.Publish(r.reply, bus.MarshalAck(&bus.Ack{Client: r.client, Seq: r.seq, Status: bus.AckWorking}))
	}
}

// report is an AckWorking to send.
type report struct {
	client, reply string
	seq           uint64
}

func (w *Worker) dispatch(c *Client, ev bus.Event) {
	h := w.cfg.Handlers
	ctx := w.handlerCtx
	var err error
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			w.logHandlerError("handler panicked", "client_id", c.id, "event", ev.Kind, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("worker: handler panicked: %v", p)
		} else if err != nil {
			w.logHandlerError("handler failed", "client_id", c.id, "event", ev.Kind, "err", err)
		}
		if w.cfg.ObserveHandler != nil {
			w.cfg.ObserveHandler(ev.Kind, time.Since(start), err)
		}
	}()
	switch ev.Kind {
	case bus.EventConnect:
		if h.OnConnect != nil {
			err = h.OnConnect(ctx, c)
		}
	case bus.EventWebSocketConnect:
		if h.OnWebSocketConnect != nil && ev.WS != nil {
			err = h.OnWebSocketConnect(ctx, c, WebSocketConnectEvent{Path: ev.WS.Path, Query: ev.WS.Query, Header: ev.WS.Header, RemoteAddr: c.addr})
		}
	case bus.EventMessage:
		err = h.OnMessage(ctx, c, MessageEvent{Data: ev.Body})
	case bus.EventClose:
		if h.OnClose != nil {
			err = h.OnClose(ctx, c, CloseEvent{Reason: ev.Reason})
		}
	}
}

func (w *Worker) logHandlerError(msg string, args ...any) {
	w.errLogs.Log(w.log, slog.LevelError, msg, args...)
}

// forgetOld drops duplicate-detection state of clients not seen for a
// minute: their batches go to other workers or they left.
func (w *Worker) forgetOld(now time.Time) {
	w.gone.forget(now)
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, st := range w.recent {
		if st.running == st.done && now.Sub(st.at) > time.Minute {
			delete(w.recent, id)
		}
	}
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
