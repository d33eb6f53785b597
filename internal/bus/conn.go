package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults for [Config].
const (
	DefaultReconnectWait    = 250 * time.Millisecond
	DefaultPingInterval     = 2 * time.Second
	DefaultMaxPingsOut      = 2
	DefaultReconnectBufSize = 8 << 20
	DefaultRequestTimeout   = 2 * time.Second
	// PendingMsgs and PendingBytes bound what waits in nats.go for one
	// subscription's handler (or, for Gather, for its reader). Past either,
	// nats.go drops the subscription's new messages, reports a slow
	// consumer once per episode, and [Conn.SlowConsumers] counts it. The
	// handlers never wait on the network, so only a process short of CPU
	// gets there; what a drop means depends on the subject
	// (docs/guarantees.md, "Overload").
	PendingMsgs  = 65_536
	PendingBytes = 64 << 20
)

// Errors of this package, for errors.Is.
var (
	// ErrNoResponders means nobody listens on a request's subject.
	ErrNoResponders = errors.New("bus: no responders")
	// ErrTimeout means a request got no answer in time.
	ErrTimeout = errors.New("bus: request timed out")
	// ErrClosed means the connection was closed.
	ErrClosed = errors.New("bus: connection closed")
	// ErrMaxPayload means a message is larger than the server accepts
	// (1 MiB by default).
	ErrMaxPayload = errors.New("bus: message over the server's max payload")
)

// Config says how to reach NATS. Every gatewayworker process (gateway, worker,
// API client) takes one; the credential fields map onto the NATS server's
// authorization methods, and several may be set where NATS allows it.
type Config struct {
	// URLs lists NATS servers ("nats://host:4222", "tls://host:4222").
	// Required: use an [Embedded] server's URL for a single node.
	URLs []string
	// Name is shown in the server's monitoring (connz) and in $SYS events.
	Name string
	// Token authenticates with a token.
	Token string
	// User and Password authenticate with a user name and password.
	User, Password string
	// NKeySeedFile is a file holding an nkey seed ("SU...").
	NKeySeedFile string
	// CredsFile is a JWT user credentials file (decentralised auth).
	CredsFile string
	// TLS configures TLS to NATS; nil means plain unless a URL says tls://.
	TLS *TLSConfig
	// InboxPrefix is where replies to this connection go. Empty means
	// nats.go's "_INBOX"; under role permissions use [Subjects.Inbox].
	InboxPrefix string
	// ReconnectWait is the pause between reconnect attempts to one server.
	// Zero means DefaultReconnectWait (250ms); negative is refused.
	ReconnectWait time.Duration
	// MaxReconnects bounds reconnect attempts. Zero means forever (a gateway
	// must ride out any NATS outage); negative values also mean forever.
	MaxReconnects int
	// PingInterval is how often the client pings the server; a server that
	// misses MaxPingsOut pings is dropped, so a frozen node is left after
	// about PingInterval × (MaxPingsOut+1). Zero means DefaultPingInterval
	// (2s); negative is refused.
	PingInterval time.Duration
	// MaxPingsOut: zero means DefaultMaxPingsOut (2); negative is refused.
	MaxPingsOut int
	// ReconnectBufSize is how many bytes of publishes are buffered while
	// disconnected. Zero means DefaultReconnectBufSize (8 MiB); negative
	// buffers nothing (a publish while disconnected fails).
	ReconnectBufSize int
	// Logger receives connection state changes. Nil means slog.Default().
	Logger *slog.Logger
	// InProcess, if set, connects through memory to this embedded server,
	// in its process, instead of to URLs (which may then be empty). While
	// such connections are the server's only clients, a message between
	// them is handed over in memory, without the server
	// (docs/architecture.md, "In-process delivery"); the server's
	// permissions are not checked for it, so set this only for connections
	// of your own code, as `gatewayworker run` does.
	InProcess *Embedded
	// NATSOptions are applied last, for anything this struct does not cover.
	NATSOptions []nats.Option
}

// TLSConfig configures TLS to NATS.
type TLSConfig struct {
	// CAFile verifies the server; empty means the system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate, for servers that verify clients.
	CertFile, KeyFile string
	// Config, if set, is used as the base configuration.
	Config *tls.Config
}

// withDefaults returns c with every zero field that has a default set to it.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.MaxReconnects == 0 {
		c.MaxReconnects = -1 // nats.go's "forever"
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.MaxPingsOut == 0 {
		c.MaxPingsOut = DefaultMaxPingsOut
	}
	if c.ReconnectBufSize == 0 {
		c.ReconnectBufSize = DefaultReconnectBufSize
	}
	return c
}

// validate checks a Config that withDefaults filled.
func (c Config) validate() error {
	if len(c.URLs) == 0 && c.InProcess == nil {
		return errors.New("bus: no NATS URL configured")
	}
	switch {
	case c.ReconnectWait < 0:
		return fmt.Errorf("bus: ReconnectWait (%v) must not be negative", c.ReconnectWait)
	case c.PingInterval < 0:
		return fmt.Errorf("bus: PingInterval (%v) must not be negative", c.PingInterval)
	case c.MaxPingsOut < 0:
		return fmt.Errorf("bus: MaxPingsOut (%d) must not be negative", c.MaxPingsOut)
	}
	return nil
}

func (c Config) options(slow *atomic.Uint64) ([]nats.Option, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	log, wait := c.Logger, c.ReconnectWait
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(c.MaxReconnects),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(wait/5, wait/5),
		nats.PingInterval(c.PingInterval),
		nats.MaxPingsOutstanding(c.MaxPingsOut),
		nats.ReconnectBufSize(c.ReconnectBufSize),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedServerName())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if errors.Is(err, nats.ErrSlowConsumer) {
				slow.Add(1)
			}
			log.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	if c.InProcess != nil {
		opts = append(opts, nats.InProcessServer(c.InProcess.srv))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.User != "" || c.Password != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if t := c.TLS; t != nil {
		if t.Config != nil {
			opts = append(opts, nats.Secure(t.Config.Clone()))
		} else {
			opts = append(opts, nats.Secure())
		}
		if t.CAFile != "" {
			opts = append(opts, nats.RootCAs(t.CAFile))
		}
		if t.CertFile != "" || t.KeyFile != "" {
			opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
		}
	}
	return append(opts, c.NATSOptions...), nil
}

// Conn is a NATS connection with the few operations gatewayworker needs.
// It is safe for concurrent use.
type Conn struct {
	nc *nats.Conn
	// slow counts slow-consumer reports (see PendingMsgs).
	slow *atomic.Uint64
	// url and opts dialled nc: Sibling dials them again.
	url  string
	opts []nats.Option
	// siblings are closed with the connection that dialled them.
	siblings *siblings
	// local, for connections to an embedded server in this process, hands
	// messages over in memory; mirrored are this connection's subscriptions
	// it knows.
	local      *local
	mirroredMu sync.Mutex
	mirrored   map[*localSub]struct{}
}

// siblings are the connections Sibling dialled from one Conn: they end when
// it does (closed by its owner, or by nats.go after MaxReconnects), so a
// process whose connection is gone does not seem alive on another.
type siblings struct {
	mu     sync.Mutex
	closed bool
	conns  []*Conn
}

func (s *siblings) add(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns = append(s.conns, c)
	return true
}

func (s *siblings) close() {
	s.mu.Lock()
	conns := s.conns
	s.closed, s.conns = true, nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Msg is a received message. Data belongs to the receiver.
type Msg struct {
	Subject string
	Reply   string
	Data    []byte
	// NoResponders is set on the status message NATS sends to a request's
	// reply subject when nobody listened on the request's subject.
	NoResponders bool
}

// Connect dials NATS. It gives up when ctx ends; once connected, the
// connection reconnects by itself as Config says.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	slow := new(atomic.Uint64)
	opts, err := cfg.options(slow)
	if err != nil {
		return nil, err
	}
	sib := &siblings{}
	opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { sib.close() }))
	c, err := dial(ctx, strings.Join(cfg.URLs, ","), opts, slow)
	if err != nil {
		return nil, err
	}
	c.siblings = sib
	if cfg.InProcess != nil {
		c.local = cfg.InProcess.local
		c.local.addConn(c)
		// Known to local until closed, however it ends (nats.go gives up
		// after MaxReconnects): local counts the server's clients that are
		// this process's.
		c.nc.SetClosedHandler(func(*nats.Conn) { sib.close(); c.Close() })
	}
	return c, nil
}

// Sibling dials a second connection with c's configuration (servers,
// credentials, inbox prefix; the name gets suffix), sharing c's
// slow-consumer count. Gateways and workers send and hear heartbeats and
// presence on one, so that those never wait behind event traffic in a
// connection's buffers, in either process or in the NATS server. The
// caller closes it.
//
// The sibling is closed when c is, and cannot dial siblings of its own.
func (c *Conn) Sibling(ctx context.Context, suffix string) (*Conn, error) {
	if c.siblings == nil {
		return nil, errors.New("bus: a sibling connection has no siblings")
	}
	opts := append(slices.Clip(c.opts), nats.Name(c.nc.Opts.Name+suffix), nats.ClosedHandler(nil))
	s, err := dial(ctx, c.url, opts, c.slow)
	if err != nil {
		return nil, err
	}
	if s.local = c.local; s.local != nil {
		// Known to local until closed, however it ends: local counts the
		// server's clients that are this process's.
		s.local.addConn(s)
		s.nc.SetClosedHandler(func(*nats.Conn) { s.Close() })
	}
	if !c.siblings.add(s) {
		s.Close()
		return nil, ErrClosed
	}
	return s, nil
}

func dial(ctx context.Context, url string, opts []nats.Option, slow *atomic.Uint64) (*Conn, error) {
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("bus: connect %s: %w", redact(url), r.err)
		}
		return &Conn{nc: r.nc, slow: slow, url: url, opts: opts}, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("bus: connect %s: %w", redact(url), ctx.Err())
	}
}

// redact hides credentials written into URLs ("nats://user:pass@host").
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				parts[i] = u[:scheme+3] + "***" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// Publish sends data to subject. It only buffers: delivery is at most once.
func (c *Conn) Publish(subject string, data []byte) error {
	if c.local != nil {
		return c.local.publish(c, subject, "", data)
	}
	return wrap("publish", subject, c.nc.Publish(subject, data))
}

// PublishCommand sends cmd to subject, encoded into a buffer that is used
// again: nothing keeps what Publish is given (nats.go copies it into its
// write buffer, an in-process hand-over copies it for each subscriber),
// and a push is the one message a worker sends per event that nobody
// needs to keep.
func (c *Conn) PublishCommand(subject string, cmd *Command) error {
	buf := commandBuffers.Get().(*[]byte)
	data := cmd.appendMsgpack(append((*buf)[:0], EnvelopeVersion))
	err := c.Publish(subject, data)
	if cap(data) <= maxPooledCommand {
		*buf = data[:0]
		commandBuffers.Put(buf)
	}
	return err
}

// maxPooledCommand bounds the buffers PublishCommand keeps: a large push
// is rare, and its buffer would stay in the pool for nothing.
const maxPooledCommand = 64 << 10

var commandBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// PublishRequest sends data to subject with a reply subject.
func (c *Conn) PublishRequest(subject, reply string, data []byte) error {
	if c.local != nil {
		return c.local.publish(c, subject, reply, data)
	}
	return wrap("publish", subject, c.nc.PublishRequest(subject, reply, data))
}

// Request sends data to subject and waits for one answer. A ctx without a
// deadline waits at most DefaultRequestTimeout.
func (c *Conn) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	m, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, wrap("request", subject, err)
	}
	return m.Data, nil
}

// Handler receives messages of one subscription, one at a time, in order.
// It must not block: a slow handler delays every later message.
type Handler func(Msg)

// Subscription is an interest in a subject.
type Subscription struct {
	sub *nats.Subscription
	// conn and local, when the subscription is mirrored for in-memory
	// hand-over (Config.InProcess).
	conn  *Conn
	local *localSub
}

// msgOf is m as this package shows it.
func msgOf(m *nats.Msg) Msg {
	return Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data,
		NoResponders: len(m.Data) == 0 && m.Header.Get("Status") == "503"}
}

// Subscribe calls h for every message on subject.
func (c *Conn) Subscribe(subject string, h Handler) (*Subscription, error) {
	cb := func(m *nats.Msg) { h(msgOf(m)) }
	var ls *localSub
	if c.local != nil {
		ls = &localSub{slow: c.slow}
		if _, _, ok := mirrorable(subject); ok {
			// What comes through the server joins what is handed over in
			// one queue, run by one goroutine: h sees one message at a
			// time, in the order they came.
			ls.handler = newLocalQueue(h)
			cb = func(m *nats.Msg) { ls.enqueue(msgOf(m)) }
		}
	}
	sub, err := c.nc.Subscribe(subject, cb)
	if err == nil {
		err = sub.SetPendingLimits(PendingMsgs, PendingBytes)
		if err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		if ls != nil && ls.handler != nil {
			ls.handler.close(false)
		}
		return nil, wrap("subscribe", subject, err)
	}
	s := &Subscription{sub: sub}
	if ls != nil {
		ls.nsub = sub
		c.mirror(s, subject, ls)
	}
	return s, nil
}

// mirror lets local hand s's messages over in memory, or know what it
// cannot hand over. c.local must be set.
func (c *Conn) mirror(s *Subscription, subject string, ls *localSub) {
	c.local.add(ls, subject)
	c.mirroredMu.Lock()
	if c.mirrored == nil {
		c.mirrored = map[*localSub]struct{}{}
	}
	c.mirrored[ls] = struct{}{}
	c.mirroredMu.Unlock()
	s.conn, s.local = c, ls
}

// unmirror stops handing over to ls. Unless the subscription drains, its
// handler's queue stops too and c forgets it; a draining one's queue
// stops once drained, or when c closes.
func (c *Conn) unmirror(ls *localSub, draining bool) {
	c.local.remove(ls)
	if draining {
		return
	}
	if ls.handler != nil {
		ls.handler.close(false)
	}
	c.mirroredMu.Lock()
	delete(c.mirrored, ls)
	c.mirroredMu.Unlock()
}

// Buffer is where the messages of any number of subscriptions wait, in
// the order they arrived, until taken with Next, NextOr or TryNext, by any
// number of goroutines. No goroutine of nats.go is behind it: an
// asynchronous subscription has one of its own (2 KB of stack or more),
// which at a subscription per group or uid costs more than a client.
// A message that finds it full is dropped (nats.go calls that a slow
// consumer): size it for the worst backlog.
type Buffer struct {
	ch chan *nats.Msg
}

// NewBuffer returns an empty buffer of capacity messages.
func NewBuffer(capacity int) *Buffer { return &Buffer{ch: make(chan *nats.Msg, capacity)} }

// Buffered is a queue subscription whose messages wait in a [Buffer].
type Buffered struct {
	*Subscription
	*Buffer
}

// QueueSubscribeBuffered joins queue group queue on subject; the messages
// NATS gives this member wait in a buffer of capacity messages.
func (c *Conn) QueueSubscribeBuffered(subject, queue string, capacity int) (*Buffered, error) {
	b := NewBuffer(capacity)
	sub, err := c.nc.ChanQueueSubscribe(subject, queue, b.ch)
	if err != nil {
		return nil, wrap("subscribe", subject, err)
	}
	s := &Subscription{sub: sub}
	if c.local != nil {
		c.mirror(s, subject, &localSub{queue: queue, nsub: sub, into: b.ch, slow: c.slow})
	}
	return &Buffered{Subscription: s, Buffer: b}, nil
}

// SubscribeInto subscribes to subject, outside any queue group, into b:
// its messages wait there in arrival order with those of b's other
// subscriptions.
func (c *Conn) SubscribeInto(b *Buffer, subject string) (*Subscription, error) {
	sub, err := c.nc.ChanSubscribe(subject, b.ch)
	if err != nil {
		return nil, wrap("subscribe", subject, err)
	}
	s := &Subscription{sub: sub}
	if c.local != nil {
		c.mirror(s, subject, &localSub{nsub: sub, into: b.ch, slow: c.slow})
	}
	return s, nil
}

// Next takes the next message, waiting for one until stop is closed; ok is
// false then.
func (b *Buffer) Next(stop <-chan struct{}) (m Msg, ok bool) {
	select {
	case nm := <-b.ch:
		return msgOf(nm), true
	case <-stop:
		return Msg{}, false
	}
}

// NextOr is Next that also gives up, ok false, when wake is signalled.
func (b *Buffer) NextOr(stop, wake <-chan struct{}) (m Msg, ok bool) {
	select {
	case nm := <-b.ch:
		return msgOf(nm), true
	case <-stop:
		return Msg{}, false
	case <-wake:
		return Msg{}, false
	}
}

// TryNext takes the next message if one waits.
func (b *Buffer) TryNext() (m Msg, ok bool) {
	select {
	case nm := <-b.ch:
		return msgOf(nm), true
	default:
		return Msg{}, false
	}
}

// Waiting is the number of messages in the buffer.
func (b *Buffer) Waiting() int { return len(b.ch) }

// Unsubscribe ends the subscription at once.
func (s *Subscription) Unsubscribe() error {
	if s.local != nil {
		s.conn.unmirror(s.local, false)
	}
	return wrap("unsubscribe", s.sub.Subject, s.sub.Unsubscribe())
}

// Drain stops new deliveries but lets the handler finish the messages
// already received; wait for it with [Subscription.Drained].
func (s *Subscription) Drain() error {
	if s.local != nil {
		s.conn.unmirror(s.local, true)
	}
	return wrap("drain", s.sub.Subject, s.sub.Drain())
}

// Drained reports whether a drained subscription has handled its backlog.
func (s *Subscription) Drained() bool {
	if s.sub.IsValid() {
		return false
	}
	if s.local == nil || s.local.handler == nil {
		return true
	}
	s.local.handler.close(true) // nats.go gave it all it will
	return s.local.handler.finished()
}

// NewInbox returns a unique subject for replies.
func (c *Conn) NewInbox() string { return c.nc.NewInbox() }

// Flush waits until the server has processed everything sent so far.
func (c *Conn) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	return wrap("flush", "", c.nc.FlushWithContext(ctx))
}

// Connected reports whether the connection is up right now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// ForceReconnect drops the current server and connects to another (or the
// same) one, keeping subscriptions: for a peer that seems frozen before the
// client's own pings notice.
func (c *Conn) ForceReconnect() error { return wrap("reconnect", "", c.nc.ForceReconnect()) }

// MaxPayload is the largest message the connected server accepts, in
// bytes; a larger Publish fails with ErrMaxPayload.
func (c *Conn) MaxPayload() int64 { return c.nc.MaxPayload() }

// SlowConsumers counts the times a subscription of this connection fell
// PendingMsgs or PendingBytes behind and nats.go began to drop its
// messages (once per episode, as nats.go reports them).
func (c *Conn) SlowConsumers() uint64 { return c.slow.Load() }

// Reconnects counts how often the connection came back after a loss.
func (c *Conn) Reconnects() uint64 { return c.nc.Stats().Reconnects }

// Close closes the connection at once.
func (c *Conn) Close() {
	if c.local != nil {
		c.local.removeConn(c) // closing twice (nats.go's ClosedHandler) is harmless
		c.mirroredMu.Lock()
		mirrored := slices.Collect(maps.Keys(c.mirrored))
		c.mirroredMu.Unlock()
		for _, ls := range mirrored {
			c.unmirror(ls, false)
		}
	}
	c.nc.Close()
}

func wrap(op, subject string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders):
		err = ErrNoResponders
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		err = ErrClosed
	case errors.Is(err, nats.ErrMaxPayload):
		err = fmt.Errorf("%w: %w", ErrMaxPayload, err)
	}
	if subject == "" {
		return fmt.Errorf("bus: %s: %w", op, err)
	}
	return fmt.Errorf("bus: %s %s: %w", op, subject, err)
}
