package bus

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// local hands a message published on one in-process connection of an
// embedded server ([Config.InProcess]) straight to the subscriptions of
// this process's in-process connections, while they are the server's only
// clients: nats.go's buffer, flush and parse on both sides and the
// server's parse, routing and delivery are skipped, ~30 % of the CPU of an
// echo round trip through `run`. Once any other client is connected
// (another process, `gatewayworker status`, a `nats sub`), every message
// goes through the server as before, so what each subscriber receives does
// not change (docs/architecture.md, "In-process delivery").
//
// The server's own interest count (Account.Interest) cannot decide this
// per subject: it stops counting at the first wildcard it meets.
type local struct {
	acc *server.Account
	// maxPayload is the server's max_payload: a larger message goes to
	// the server, which refuses it.
	maxPayload int
	// mu is held shared by every publish of an in-process connection, the
	// ones through the server included, and exclusively by the fence.
	mu sync.RWMutex
	// conns are this process's in-process connections to the server.
	conns map[*Conn]struct{}
	// ready is set by the fence and cleared when another client appears.
	ready atomic.Bool
	// fencing is set while a fence runs; failedAt is when one last failed.
	fencing  atomic.Bool
	failedAt atomic.Int64
	// exact holds subscriptions to literal subjects; prefixed those to
	// "<prefix>*", keyed by "<prefix>" (inboxes, "gw.q.*").
	exact, prefixed map[string][]*localSub
	// others are the subjects of subscriptions made here with other
	// wildcards ("gw.>"): a message they match goes through the server.
	others map[*localSub]string
	// turn picks a queue group's member, round robin.
	turn atomic.Uint32
	// delivered counts messages handed over here.
	delivered atomic.Uint64
}

// fenceTimeout bounds a fence's wait for the connections' round trips and
// the handlers' backlogs; a fence that times out is tried again after it.
const fenceTimeout = time.Second

func newLocal(srv *server.Server, maxPayload int) *local {
	return &local{acc: srv.GlobalAccount(), maxPayload: maxPayload, conns: map[*Conn]struct{}{},
		exact: map[string][]*localSub{}, prefixed: map[string][]*localSub{}, others: map[*localSub]string{}}
}

// localSub is one subscription as local knows it: messages go into its
// Buffer's channel, or to its handler's queue.
type localSub struct {
	key      string
	prefixed bool
	other    bool
	queue    string
	nsub     *nats.Subscription
	into     chan *nats.Msg
	handler  *localQueue
	slow     *atomic.Uint64
	// dropping is set from a drop to the next message queued: a slow
	// consumer is counted once per episode, as nats.go counts it.
	dropping atomic.Bool
}

// mirrorable says whether local can match subject as the server does: all
// its tokens literal, but for a last "*".
func mirrorable(subject string) (key string, prefixed, ok bool) {
	key, prefixed = subject, strings.HasSuffix(subject, ".*")
	if prefixed {
		key = subject[:len(subject)-1]
	}
	return key, prefixed, !strings.ContainsAny(key, "*> \t")
}

func (l *local) addConn(c *Conn) {
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
}

func (l *local) removeConn(c *Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// add mirrors s; a subscription whose subject is not mirrorable is only
// remembered, so that what it matches goes through the server.
func (l *local) add(s *localSub, subject string) {
	key, prefixed, ok := mirrorable(subject)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !ok {
		s.other = true
		l.others[s] = subject
		return
	}
	s.key, s.prefixed = key, prefixed
	m := l.exact
	if prefixed {
		m = l.prefixed
	}
	m[key] = append(m[key], s)
}

// remove forgets s; nothing is handed to it afterwards.
func (l *local) remove(s *localSub) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.other {
		delete(l.others, s)
		return
	}
	m := l.exact
	if s.prefixed {
		m = l.prefixed
	}
	subs := slices.DeleteFunc(m[s.key], func(o *localSub) bool { return o == s })
	if len(subs) == 0 {
		delete(m, s.key)
	} else {
		m[s.key] = subs
	}
}

// alone reports whether this process's in-process connections are the
// server's only clients, all of them connected (a closed one leaves
// conns, and its subscriptions local). l.mu must be held.
func (l *local) aloneLocked() bool { return l.acc.NumConnections() == len(l.conns) }

// publish sends a message of c: in memory when it may, through the server
// otherwise, under l.mu, so that a fence sees every message sent before it.
func (l *local) publish(c *Conn, subject, reply string, data []byte) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch {
	case !l.aloneLocked():
		if l.ready.Load() {
			l.ready.Store(false)
		}
	case !l.ready.Load():
		l.startFence()
	case len(data) <= l.maxPayload && l.deliverLocked(subject, reply, data):
		return nil
	}
	if reply == "" {
		return wrap("publish", subject, c.nc.Publish(subject, data))
	}
	return wrap("publish", subject, c.nc.PublishRequest(subject, reply, data))
}

// startFence starts a fence unless one runs or one failed within
// fenceTimeout.
func (l *local) startFence() {
	if time.Now().UnixNano()-l.failedAt.Load() < int64(fenceTimeout) || !l.fencing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer l.fencing.Store(false)
		if !l.fence() {
			l.failedAt.Store(time.Now().UnixNano())
		}
	}()
}

// fence turns hand-over on once no message sent through the server before
// it can still be on its way: a message handed over must not overtake
// one of the same publisher that went through the server while another
// client was connected. With publishes held off, each connection's round
// trip to the server (Flush) makes sure the server routed what it had
// sent; a second round, that each connection read what the server had
// routed to it; then the handlers' nats.go queues are emptied into theirs.
func (l *local) fence() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.aloneLocked() {
		return true // not failed: nothing to wait for
	}
	ctx, cancel := context.WithTimeout(context.Background(), fenceTimeout)
	defer cancel()
	for range 2 {
		for c := range l.conns {
			if c.nc.FlushWithContext(ctx) != nil {
				return false
			}
		}
	}
	for _, m := range []map[string][]*localSub{l.exact, l.prefixed} {
		for _, subs := range m {
			for _, s := range subs {
				for s.handler != nil && s.nsub.IsValid() {
					if n, _, _ := s.nsub.Pending(); n == 0 {
						break
					}
					if ctx.Err() != nil {
						return false
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
	l.ready.Store(l.aloneLocked())
	return true
}

// deliverLocked hands data to the subscriptions of subject as the server
// would (every plain one, one member of each queue group) and reports
// true, or does nothing and reports false when the server must route it.
// l.mu must be held.
func (l *local) deliverLocked(subject, reply string, data []byte) bool {
	subs := l.exact[subject]
	var wild []*localSub
	if i := strings.LastIndexByte(subject, '.'); i >= 0 && i < len(subject)-1 {
		wild = l.prefixed[subject[:i+1]]
	}
	n := len(subs) + len(wild)
	if n == 0 {
		return false // the server's to drop, or to answer "no responders"
	}
	for _, pattern := range l.others {
		if server.SubjectMatchesFilter(subject, pattern) {
			return false
		}
	}
	for i := range n {
		s := at(subs, wild, i)
		if s.queue == "" {
			s.put(subject, reply, data)
			continue
		}
		first, members := true, 0
		for j := range n {
			if o := at(subs, wild, j); o.queue == s.queue {
				first = first && j >= i
				members++
			}
		}
		if !first {
			continue // this queue group got its message at its first member
		}
		pick := int(l.turn.Add(1) % uint32(members))
		for j := range n {
			if o := at(subs, wild, j); o.queue == s.queue {
				if pick == 0 {
					o.put(subject, reply, data)
					break
				}
				pick--
			}
		}
	}
	l.delivered.Add(1)
	return true
}

// at is the i-th of subs then wild.
func at(subs, wild []*localSub, i int) *localSub {
	if i < len(subs) {
		return subs[i]
	}
	return wild[i-len(subs)]
}

// put queues a copy of the message for s; a full buffer or queue drops it
// and counts a slow consumer, as nats.go does.
func (s *localSub) put(subject, reply string, data []byte) {
	data = bytes.Clone(data)
	if s.into == nil {
		s.enqueue(Msg{Subject: subject, Reply: reply, Data: data})
		return
	}
	select {
	case s.into <- &nats.Msg{Subject: subject, Reply: reply, Data: data}:
		s.counted(true)
	default:
		s.counted(false)
	}
}

// enqueue queues m for s's handler.
func (s *localSub) enqueue(m Msg) { s.counted(s.handler.push(m)) }

// counted counts a drop that starts an episode.
func (s *localSub) counted(queued bool) {
	switch {
	case !queued && s.dropping.CompareAndSwap(false, true):
		s.slow.Add(1)
	case queued && s.dropping.Load():
		s.dropping.Store(false)
	}
}

// localQueue holds the messages of a handler subscription of an in-process
// connection, those handed over and those nats.go received alike, in the
// order they came, until its goroutine calls the handler with them, one
// at a time.
type localQueue struct {
	mu     sync.Mutex
	msgs   []Msg
	closed bool
	wake   chan struct{}
	done   chan struct{}
	// waiting and bytes count what is queued or in the handler.
	waiting, bytes atomic.Int64
}

func newLocalQueue(h Handler) *localQueue {
	q := &localQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run(h)
	return q
}

// push queues m, or reports false past PendingMsgs or PendingBytes.
func (q *localQueue) push(m Msg) bool {
	if q.waiting.Load() >= PendingMsgs || q.bytes.Load()+int64(len(m.Data)) > PendingBytes {
		return false
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return true // dropped silently, as by an ended subscription
	}
	q.msgs = append(q.msgs, m)
	q.waiting.Add(1)
	q.bytes.Add(int64(len(m.Data)))
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// close stops the queue: what waits is handled first when finish (a
// drain), dropped otherwise (an unsubscription).
func (q *localQueue) close(finish bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	if !finish {
		q.msgs = nil
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *localQueue) run(h Handler) {
	defer close(q.done)
	var batch []Msg
	for range q.wake {
		q.mu.Lock()
		batch, q.msgs = q.msgs, batch[:0]
		closed := q.closed
		q.mu.Unlock()
		for i, m := range batch {
			h(m)
			batch[i] = Msg{}
			q.waiting.Add(-1)
			q.bytes.Add(-int64(len(m.Data)))
		}
		if closed {
			return // push queues nothing once closed
		}
	}
}

// finished reports whether a closed queue has handled what it held.
func (q *localQueue) finished() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}
