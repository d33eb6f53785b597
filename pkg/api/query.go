package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayworker/gatewayworker/bus"
)

// QueryError says which gateways did not answer a query in time. The
// query's result still holds every answer that came, so a caller that can
// live with a partial answer uses it and ignores this error.
type QueryError struct {
	// Missing lists the ids of the gateways that did not answer.
	Missing []string
	// Err is why the wait ended (a timeout or a cancelled ctx).
	Err error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("api: partial answer: gateways %s did not answer: %v", strings.Join(e.Missing, ","), e.Err)
}

func (e *QueryError) Unwrap() error { return e.Err }

// presence follows gateway heartbeats to know which gateways should answer
// a query: NATS itself is the register.
type presence struct {
	bus  *bus.Conn
	subj bus.Subjects

	mu      sync.Mutex
	sub     *bus.Subscription
	since   time.Time
	lastErr error
	seen    map[string]time.Time
}

// beatsToLive is how many beat intervals a gateway may stay silent before
// queries stop waiting for it.
const beatsToLive = 3

func newPresence(c *bus.Conn, subj bus.Subjects) *presence {
	return &presence{bus: c, subj: subj, seen: map[string]time.Time{}}
}

func (p *presence) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sub != nil {
		return nil
	}
	sub, err := p.bus.Subscribe(p.subj.Heartbeat(), p.onBeat)
	if err != nil {
		return err
	}
	p.sub, p.since = sub, time.Now()
	return nil
}

func (p *presence) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
		p.sub = nil
	}
}

func (p *presence) onBeat(m bus.Msg) {
	var b bus.Beat
	if bus.Unmarshal(m.Data, &b) != nil || b.Gateway == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.Leaving {
		delete(p.seen, b.Gateway)
	} else {
		p.seen[b.Gateway] = time.Now()
	}
}

func (p *presence) note(gw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[gw] = time.Now()
}

// live returns the gateways heard from recently; fresh is true while the
// subscription is too young to have heard every gateway's beat.
func (p *presence) live(maxAge time.Duration) (ids []string, fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for id, at := range p.seen {
		if now.Sub(at) <= maxAge {
			ids = append(ids, id)
		} else {
			delete(p.seen, id)
		}
	}
	return ids, now.Sub(p.since) < maxAge
}

// discoveryWindow is how long a client that just started listens for ping
// answers before its first query: gateways answer a ping at once.
const discoveryWindow = 150 * time.Millisecond

// gather runs query op on every live gateway and returns their answers.
// It returns as soon as every expected gateway answered; otherwise, when
// ctx or QueryTimeout ends, the answers so far and a *QueryError.
func (c *Client) gather(ctx context.Context, op string, cmd *bus.Command) ([]bus.Reply, error) {
	if err := c.gateways.start(); err != nil {
		return nil, err
	}
	expected, fresh := c.gateways.live(beatsToLive * 1500 * time.Millisecond)
	if fresh {
		c.discover(ctx)
		expected, _ = c.gateways.live(beatsToLive * 1500 * time.Millisecond)
	}
	var data []byte
	if cmd != nil {
		var err error
		if data, err = bus.Marshal(cmd); err != nil {
			return nil, err
		}
	}
	ctx, cancel := c.bounded(ctx, c.cfg.QueryTimeout)
	defer cancel()
	answered := map[string]bool{}
	var replies []bus.Reply
	var replyFault error
	err := c.bus.Gather(ctx, c.subj.Query(op), data, func(m bus.Msg) bool {
		var rep bus.Reply
		if err := bus.Unmarshal(m.Data, &rep); err != nil || rep.Gateway == "" {
			return false
		}
		if answered[rep.Gateway] {
			return false
		}
		answered[rep.Gateway] = true
		c.gateways.note(rep.Gateway)
		if err := replyErr(rep); err != nil {
			replyFault = err
			return true
		}
		replies = append(replies, rep)
		for _, id := range expected {
			if !answered[id] {
				return false
			}
		}
		return len(expected) > 0
	})
	switch {
	case replyFault != nil:
		return nil, replyFault
	case errors.Is(err, bus.ErrNoResponders):
		return nil, nil // no gateway is running: nothing is online
	case err != nil:
		var missing []string
		for _, id := range expected {
			if !answered[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 && len(expected) == 0 && len(replies) > 0 {
			return replies, nil // nothing known in advance: all who answered
		}
		slices.Sort(missing)
		return replies, &QueryError{Missing: missing, Err: err}
	}
	return replies, nil
}

// discover pings every gateway once, for a client that has not yet heard
// a full round of heartbeats.
func (c *Client) discover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, discoveryWindow)
	defer cancel()
	_ = c.bus.Gather(ctx, c.subj.Query(bus.QueryPing), nil, func(m bus.Msg) bool {
		var rep bus.Reply
		if bus.Unmarshal(m.Data, &rep) == nil && rep.Gateway != "" {
			c.gateways.note(rep.Gateway)
		}
		return false
	})
}

// GetAllClientIDCount returns how many clients are connected to all gateways.
func (c *Client) GetAllClientIDCount(ctx context.Context) (int, error) {
	replies, err := c.gather(ctx, bus.QueryClientCount, nil)
	n := 0
	for _, r := range replies {
		n += int(r.Count)
	}
	return n, err
}

// GetClientIDListByGroup returns the client ids of group's members, sorted.
func (c *Client) GetClientIDListByGroup(ctx context.Context, group string) ([]string, error) {
	if err := validName(group); err != nil {
		return nil, err
	}
	replies, err := c.gather(ctx, bus.QueryGroupClients, &bus.Command{Name: group})
	var ids []string
	for _, r := range replies {
		ids = append(ids, r.Items...)
	}
	slices.Sort(ids)
	return ids, err
}

// GetClientCountByGroup returns how many clients are in group.
func (c *Client) GetClientCountByGroup(ctx context.Context, group string) (int, error) {
	ids, err := c.GetClientIDListByGroup(ctx, group)
	return len(ids), err
}

// GetClientSessionsByGroup returns the session of every member of group,
// by client id.
func (c *Client) GetClientSessionsByGroup(ctx context.Context, group string) (map[string]map[string]any, error) {
	if err := validName(group); err != nil {
		return nil, err
	}
	replies, err := c.gather(ctx, bus.QueryGroupSessions, &bus.Command{Name: group})
	out := map[string]map[string]any{}
	for _, r := range replies {
		for id, raw := range r.Sessions {
			s, derr := bus.DecodeSession(raw)
			if derr != nil {
				return nil, derr
			}
			out[id] = s
		}
	}
	return out, err
}

// GetGatewayIDs returns the ids of the gateways that answer queries now.
func (c *Client) GetGatewayIDs(ctx context.Context) ([]string, error) {
	replies, err := c.gather(ctx, bus.QueryPing, nil)
	ids := make([]string, 0, len(replies))
	for _, r := range replies {
		ids = append(ids, r.Gateway)
	}
	slices.Sort(ids)
	return ids, err
}
