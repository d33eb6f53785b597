package gateway

import (
	"context"
	"hash/maphash"
	"runtime"
	"sync"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// maxWaitingReplies bounds the answers to JoinGroup and BindUID that wait
// for their subscription to be confirmed by NATS. Past it an answer is
// dropped and counted (Stats.RepliesDropped): the caller times out, as with
// any request NATS could not deliver, and may retry; joining again is
// harmless.
const maxWaitingReplies = 1 << 16

// memberBuffer is how many group and uid pushes wait for one consumer
// (memberConsumers): past it nats.go drops them and counts a slow
// consumer, as it did past bus.PendingMsgs for one subscription's handler.
const memberBuffer = 16 << 10

// memberConsumers is how many goroutines hand group and uid pushes to
// their members: GOMAXPROCS, at most 8. A push to a few members is
// written by its consumer (fanOutWith), so small group sends still use
// every core; larger ones go to the fanout shards.
func memberConsumers() int { return min(runtime.GOMAXPROCS(0), 8) }

// subscriptions holds the group and uid subscriptions, one per name with a
// member here. One goroutine (Gateway.syncSubs) subscribes, unsubscribes
// and flushes; the NATS callbacks and nbio's pollers only mark names to
// check and queue answers, so none of them waits on the network.
//
// Their pushes wait in a few buffers (pushes), each taken by one goroutine
// (Gateway.consumeMemberPushes), instead of a nats.go goroutine per
// subscription: that one held 2 KB or more of stack per group or uid,
// more than a client costs. A subject always goes to the same buffer, so
// its pushes stay in order.
type subscriptions struct {
	pushes []*bus.Buffer
	seed   maphash.Seed

	// wake has room for one signal: work was queued.
	wake chan struct{}

	// mu guards the fields below. Lock order: mu, then registry.mu (the
	// syncer reads the registry under mu, so that a member who joins
	// meanwhile either stops an unsubscribe or finds none confirmed).
	mu sync.Mutex
	// subs has an entry from when the syncer decides to subscribe until it
	// unsubscribes; sub is nil while Subscribe runs.
	subs map[string]*subEntry
	// dirty are the subjects whose membership changed since the syncer
	// last looked.
	dirty map[string]subName
	// waiting are answers that go out once their subject is confirmed.
	waiting []waitingReply
}

type subEntry struct {
	sub *bus.Subscription
	// confirmed is set once a flush that followed the subscription
	// returned: NATS routes the subject's pushes here.
	confirmed bool
}

// subName is what a subject stands for.
type subName struct {
	uid  bool // else a group
	name string
	// live: the subject is the history stream's republish of the group's
	// or uid's recoverable pushes (history.go).
	live bool
}

type waitingReply struct {
	subject string // the subscription the answer waits for
	inbox   string // where the answer goes
	rep     bus.Reply
	// then, if set, runs instead of an answer (see afterSubscribed).
	then func()
}

func newSubscriptions() subscriptions {
	pushes := make([]*bus.Buffer, memberConsumers())
	for i := range pushes {
		pushes[i] = bus.NewBuffer(memberBuffer)
	}
	return subscriptions{pushes: pushes, seed: maphash.MakeSeed(),
		wake: make(chan struct{}, 1), subs: map[string]*subEntry{}, dirty: map[string]subName{}}
}

// bufferFor is the buffer subject's pushes wait in.
func (s *subscriptions) bufferFor(subject string) *bus.Buffer {
	return s.pushes[maphash.String(s.seed, subject)%uint64(len(s.pushes))]
}

// consumeMemberPushes hands the group and uid pushes waiting in b to their
// members, until ctx ends.
func (g *Gateway) consumeMemberPushes(ctx context.Context, b *bus.Buffer) {
	for {
		m, ok := b.Next(ctx.Done())
		if !ok {
			return
		}
		name, uid, err := g.subj.Member(m.Subject)
		switch {
		case err != nil:
			g.warnRateLimited("push on an unexpected subject", "subject", m.Subject, "err", err)
		case uid:
			g.onMemberPush(m, name, g.reg.uidMembers)
		default:
			g.onMemberPush(m, name, g.reg.groupMembers)
		}
	}
}

func (s *subscriptions) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// syncGroupSub asks the syncer to make the subscription to group's subject
// match whether the group has a member here.
// With history on, the live subject too.
func (g *Gateway) syncGroupSub(group string) {
	g.markSub(g.subj.Group(group), subName{name: group}, g.subj.LiveGroup(group))
}

// syncUIDSub is syncGroupSub for a uid.
func (g *Gateway) syncUIDSub(uid string) {
	g.markSub(g.subj.UID(uid), subName{uid: true, name: uid}, g.subj.LiveUID(uid))
}

func (g *Gateway) markSub(subject string, n subName, live string) {
	g.subs.mu.Lock()
	g.subs.dirty[subject] = n
	if g.hist.on {
		n.live = true
		g.subs.dirty[live] = n
	}
	g.subs.mu.Unlock()
	g.subs.signal()
}

// replyWhenSubscribed answers a JoinGroup or BindUID on inbox once subject's
// subscription is confirmed, so that a push made after the call returned
// reaches the new member: at once if it is, else from the syncer.
func (g *Gateway) replyWhenSubscribed(subject, inbox string, rep bus.Reply) {
	s := &g.subs
	s.mu.Lock()
	if e := s.subs[subject]; e != nil && e.confirmed {
		s.mu.Unlock()
		g.reply(inbox, rep)
		return
	}
	if len(s.waiting) >= maxWaitingReplies {
		s.mu.Unlock()
		g.stats.repliesDropped.Add(1)
		g.warnRateLimited("answer dropped: too many wait for NATS to confirm subscriptions", "subject", subject)
		return
	}
	s.waiting = append(s.waiting, waitingReply{subject: subject, inbox: inbox, rep: rep})
	s.mu.Unlock()
	s.signal()
}

// afterSubscribed runs then, on the syncer, once every subscription marked
// so far (syncGroupSub, syncUIDSub) is confirmed: the syncer takes the
// marks before the waiting work, so the round that runs then has made,
// or a round before it made, each of them. Past maxWaitingReplies it runs
// then at once.
func (g *Gateway) afterSubscribed(then func()) {
	s := &g.subs
	s.mu.Lock()
	if len(s.waiting) >= maxWaitingReplies {
		s.mu.Unlock()
		then()
		return
	}
	s.waiting = append(s.waiting, waitingReply{then: then})
	s.mu.Unlock()
	s.signal()
}

// syncSubs is the syncer: it runs until ctx ends.
func (g *Gateway) syncSubs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.subs.wake:
			g.syncOnce(ctx)
		}
	}
}

// syncOnce brings the marked subscriptions in line with the registry,
// flushes, and sends the answers that waited for them.
func (g *Gateway) syncOnce(ctx context.Context) {
	s := &g.subs
	s.mu.Lock()
	dirty, waiting := s.dirty, s.waiting
	s.dirty, s.waiting = map[string]subName{}, nil
	s.mu.Unlock()

	var created []*subEntry
	failed := map[string]error{}
	for subject, n := range dirty {
		e, err := g.syncSub(subject, n)
		if err != nil {
			g.log.Error("subscription change failed", "subject", subject, "err", err)
			failed[subject] = err
		} else if e != nil {
			created = append(created, e)
		}
	}
	if len(created) == 0 && len(waiting) == 0 {
		return
	}
	// One round trip confirms every subscription made so far.
	if err := g.bus.Flush(ctx); err != nil {
		g.warnRateLimited("subscriptions not confirmed by NATS", "err", err)
	}
	s.mu.Lock()
	for _, e := range created {
		e.confirmed = true
	}
	s.mu.Unlock()
	for _, w := range waiting {
		if w.then != nil {
			w.then()
			continue
		}
		rep := w.rep
		if err := failed[w.subject]; err != nil {
			rep = bus.Reply{Code: bus.ReplyBadRequest, Message: err.Error()}
		}
		g.reply(w.inbox, rep)
	}
}

// syncSub subscribes to or unsubscribes from subject as the registry says;
// it returns the entry it subscribed. Only the syncer calls it, so no lock
// is held across the NATS calls.
func (g *Gateway) syncSub(subject string, n subName) (*subEntry, error) {
	s := &g.subs
	s.mu.Lock()
	e := s.subs[subject]
	var want bool
	if n.uid {
		want = g.reg.hasUID(n.name)
	} else {
		want = g.reg.hasGroup(n.name)
	}
	switch {
	case want && e == nil:
		e = &subEntry{}
		s.subs[subject] = e
		s.mu.Unlock()
		sub, err := g.subscribeMember(subject, n)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			delete(s.subs, subject)
			return nil, err
		}
		e.sub = sub
		return e, nil
	case !want && e != nil:
		delete(s.subs, subject)
		s.mu.Unlock()
		return nil, e.sub.Unsubscribe()
	}
	s.mu.Unlock()
	return nil, nil
}

// subscribeMember subscribes to a group's or uid's plain or live subject.
func (g *Gateway) subscribeMember(subject string, n subName) (*bus.Subscription, error) {
	if n.live {
		ls := &liveSub{ch: bus.Channel{UID: n.uid, Name: n.name}}
		return g.bus.SubscribeLive(subject, func(m bus.HistoryMsg) { g.onLive(ls, m) })
	}
	return g.bus.SubscribeInto(g.subs.bufferFor(subject), subject)
}

// unsubscribeMembers ends every group and uid subscription, once the
// syncer has stopped.
func (g *Gateway) unsubscribeMembers() {
	g.subs.mu.Lock()
	subs := g.subs.subs
	g.subs.subs = map[string]*subEntry{}
	g.subs.mu.Unlock()
	for _, e := range subs {
		_ = e.sub.Unsubscribe()
	}
}
