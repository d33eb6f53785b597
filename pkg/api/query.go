package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
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

	mu    sync.Mutex
	sub   *bus.Subscription
	since time.Time
	// discovered is set once a ping round has filled seen.
	discovered bool
	seen       map[string]heard
}

// heard is when a gateway was last heard, and its beat interval.
type heard struct {
	at    time.Time
	every time.Duration
}

// liveFor is how long a gateway that beats every interval may stay silent
// before queries stop waiting for it: 3 intervals and a half of slack
// each (1.5 × 3), a beat's interval carried in the beat.
func liveFor(every time.Duration) time.Duration { return every * 9 / 2 }

func newPresence(c *bus.Conn, subj bus.Subjects) *presence {
	return &presence{bus: c, subj: subj, seen: map[string]heard{}}
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
		p.seen[b.Gateway] = heard{at: time.Now(), every: b.Every()}
	}
}

// note marks gw heard now (it answered), keeping its beat interval.
func (p *presence) note(gw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.seen[gw]
	if !ok {
		h.every = bus.DefaultBeatInterval
	}
	h.at = time.Now()
	p.seen[gw] = h
}

// live returns the gateways heard from within liveFor their interval;
// fresh is true while the subscription is too young to have heard every
// gateway's beat and no discovery round has run yet.
func (p *presence) live() (ids []string, fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	longest := bus.DefaultBeatInterval
	for id, h := range p.seen {
		longest = max(longest, h.every)
		if now.Sub(h.at) <= liveFor(h.every) {
			ids = append(ids, id)
		} else {
			delete(p.seen, id)
		}
	}
	return ids, !p.discovered && now.Sub(p.since) < liveFor(longest)
}

func (p *presence) markDiscovered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discovered = true
}

// discoveryWindow is how long a client that just started listens for ping
// answers before its first query: gateways answer a ping at once.
const discoveryWindow = 150 * time.Millisecond

// gather runs query op on every live gateway and hands each reply (or part
// of a reply) to each. It returns as soon as every expected gateway answered
// in full; otherwise, when ctx or QueryTimeout ends, a *QueryError naming
// the gateways that did not, after each has seen what came.
func (c *Client) gather(ctx context.Context, op string, cmd *bus.Command, each func(bus.Reply)) error {
	if err := c.Available(); err != nil {
		return err
	}
	if err := c.gateways.start(); err != nil {
		return ofBus(err)
	}
	expected, fresh := c.gateways.live()
	if fresh {
		c.discover(ctx)
		expected, _ = c.gateways.live()
	}
	var data []byte
	if cmd != nil {
		data = bus.MarshalCommand(cmd)
	}
	ctx, cancel := c.bounded(ctx, c.cfg.QueryTimeout)
	defer cancel()
	done := map[string]bool{}
	var fault error
	err := c.bus.Gather(ctx, c.subj.Query(op), data, func(m bus.Msg) bool {
		var rep bus.Reply
		if err := bus.Unmarshal(m.Data, &rep); err != nil || rep.Gateway == "" || done[rep.Gateway] {
			return false
		}
		if err := replyErr(rep); err != nil {
			fault = fmt.Errorf("gateway %s: %w", rep.Gateway, err)
			return true
		}
		each(rep)
		if rep.More {
			return false
		}
		done[rep.Gateway] = true
		c.gateways.note(rep.Gateway)
		for _, id := range expected {
			if !done[id] {
				return false
			}
		}
		return len(expected) > 0
	})
	switch {
	case fault != nil:
		return fault
	case err != nil && c.Available() != nil:
		return fmt.Errorf("%w: %w", ErrNATSUnavailable, ofBus(err)) // lost while gathering
	case errors.Is(err, bus.ErrNoResponders):
		return nil // no gateway is running: nobody is online
	case err != nil:
		var missing []string
		for _, id := range expected {
			if !done[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return nil // nobody was expected: all who answered in time
		}
		slices.Sort(missing)
		return &QueryError{Missing: missing, Err: ofBus(err)}
	}
	return nil
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
	c.gateways.markDiscovered()
}

// count sums a counting query's answers.
func (c *Client) count(ctx context.Context, op string, cmd *bus.Command) (int, error) {
	n := 0
	err := c.gather(ctx, op, cmd, func(r bus.Reply) { n += int(r.Count) })
	return n, err
}

// list collects a list query's answers, sorted and without duplicates (a
// uid or group spans gateways).
func (c *Client) list(ctx context.Context, op string, cmd *bus.Command) ([]string, error) {
	var items []string
	err := c.gather(ctx, op, cmd, func(r bus.Reply) { items = append(items, r.Items...) })
	slices.Sort(items)
	return slices.Compact(items), err
}

// sessions collects a sessions query's answers. A session that does not
// decode is left out and reported with the result, not instead of it.
func (c *Client) sessions(ctx context.Context, op string, cmd *bus.Command) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	var bad []string
	err := c.gather(ctx, op, cmd, func(r bus.Reply) {
		for id, raw := range r.Sessions {
			s, derr := bus.DecodeSession(raw)
			if derr != nil {
				bad = append(bad, id)
				continue
			}
			out[id] = s
		}
	})
	if err == nil && len(bad) > 0 {
		err = fmt.Errorf("%w: sessions of %s", ErrBadReply, strings.Join(bad, ","))
	}
	return out, err
}

// named checks a group or uid argument and wraps it in a command.
func named(name string) (*bus.Command, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	return &bus.Command{Name: name}, nil
}

// GetAllClientIDCount returns how many clients are connected to all gateways.
func (c *Client) GetAllClientIDCount(ctx context.Context) (int, error) {
	return c.count(ctx, bus.QueryClientCount, nil)
}

// GetAllClientIDList returns the ids of every connected client, sorted.
func (c *Client) GetAllClientIDList(ctx context.Context) ([]string, error) {
	return c.list(ctx, bus.QueryClientList, nil)
}

// GetAllClientSessions returns every connected client's session, by client id.
func (c *Client) GetAllClientSessions(ctx context.Context) (map[string]map[string]any, error) {
	return c.sessions(ctx, bus.QueryClientSessions, nil)
}

// GetClientIDsByUID returns the ids of the clients bound to uid, sorted.
func (c *Client) GetClientIDsByUID(ctx context.Context, uid string) ([]string, error) {
	cmd, err := named(uid)
	if err != nil {
		return nil, err
	}
	return c.list(ctx, bus.QueryUIDClients, cmd)
}

// IsUIDOnline reports whether any client is bound to uid.
func (c *Client) IsUIDOnline(ctx context.Context, uid string) (bool, error) {
	ids, err := c.GetClientIDsByUID(ctx, uid)
	return len(ids) > 0, err
}

// GetUIDByClientID returns the uid a client is bound to ("" if none).
func (c *Client) GetUIDByClientID(ctx context.Context, clientID string) (string, error) {
	rep, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpGetUID})
	if err != nil || len(rep.Items) == 0 {
		return "", err
	}
	return rep.Items[0], nil
}

// GetAllUIDList returns every uid with a connected client, sorted.
func (c *Client) GetAllUIDList(ctx context.Context) ([]string, error) {
	return c.list(ctx, bus.QueryUIDList, nil)
}

// GetAllUIDCount returns how many distinct uids have a connected client.
func (c *Client) GetAllUIDCount(ctx context.Context) (int, error) {
	uids, err := c.GetAllUIDList(ctx)
	return len(uids), err
}

// GetClientIDListByGroup returns the client ids of group's members, sorted.
func (c *Client) GetClientIDListByGroup(ctx context.Context, group string) ([]string, error) {
	cmd, err := named(group)
	if err != nil {
		return nil, err
	}
	return c.list(ctx, bus.QueryGroupClients, cmd)
}

// GetClientCountByGroup returns how many clients are in group.
func (c *Client) GetClientCountByGroup(ctx context.Context, group string) (int, error) {
	cmd, err := named(group)
	if err != nil {
		return 0, err
	}
	return c.count(ctx, bus.QueryGroupCount, cmd)
}

// GetClientSessionsByGroup returns the session of every member of group,
// by client id.
func (c *Client) GetClientSessionsByGroup(ctx context.Context, group string) (map[string]map[string]any, error) {
	cmd, err := named(group)
	if err != nil {
		return nil, err
	}
	return c.sessions(ctx, bus.QueryGroupSessions, cmd)
}

// GetUIDListByGroup returns the distinct uids of group's members, sorted.
func (c *Client) GetUIDListByGroup(ctx context.Context, group string) ([]string, error) {
	cmd, err := named(group)
	if err != nil {
		return nil, err
	}
	return c.list(ctx, bus.QueryGroupUIDs, cmd)
}

// GetUIDCountByGroup returns how many distinct uids group's members have.
func (c *Client) GetUIDCountByGroup(ctx context.Context, group string) (int, error) {
	uids, err := c.GetUIDListByGroup(ctx, group)
	return len(uids), err
}

// GetAllGroupIDList returns every group with a member, sorted.
func (c *Client) GetAllGroupIDList(ctx context.Context) ([]string, error) {
	return c.list(ctx, bus.QueryGroupList, nil)
}

// GetClientIDListByGroups returns the client ids of the members of any of
// groups, sorted and without duplicates.
func (c *Client) GetClientIDListByGroups(ctx context.Context, groups []string) ([]string, error) {
	return c.listOfGroups(ctx, bus.QueryGroupClients, groups)
}

// GetUIDListByGroups returns the distinct uids of the members of any of
// groups, sorted.
func (c *Client) GetUIDListByGroups(ctx context.Context, groups []string) ([]string, error) {
	return c.listOfGroups(ctx, bus.QueryGroupUIDs, groups)
}

// listOfGroups merges a list query over several groups. A partial answer
// (*QueryError) of one group does not stop the others: the result holds
// what came, and the error is returned with it.
func (c *Client) listOfGroups(ctx context.Context, op string, groups []string) ([]string, error) {
	for _, g := range groups {
		if err := validName(g); err != nil {
			return nil, err
		}
	}
	var all []string
	var partial error
	for _, g := range groups {
		items, err := c.list(ctx, op, &bus.Command{Name: g})
		var qe *QueryError
		if err != nil && !errors.As(err, &qe) {
			return nil, err
		}
		if err != nil {
			partial = err
		}
		all = append(all, items...)
	}
	slices.Sort(all)
	return slices.Compact(all), partial
}

// GetAllGroupClientIDList returns the members' client ids of every group
// with a member, by group. It asks for the groups, then for each group's
// members: one query per group.
func (c *Client) GetAllGroupClientIDList(ctx context.Context) (map[string][]string, error) {
	return c.perGroup(ctx, bus.QueryGroupClients)
}

// GetAllGroupClientIDCount returns the number of members of every group
// with a member, by group.
func (c *Client) GetAllGroupClientIDCount(ctx context.Context) (map[string]int, error) {
	lists, err := c.GetAllGroupClientIDList(ctx)
	return counts(lists), err
}

// GetAllGroupUIDList returns the distinct uids of every group's members,
// by group; groups whose members have no uid are left out.
func (c *Client) GetAllGroupUIDList(ctx context.Context) (map[string][]string, error) {
	return c.perGroup(ctx, bus.QueryGroupUIDs)
}

// GetAllGroupUIDCount returns how many distinct uids every group's members
// have, by group; groups whose members have no uid are left out.
func (c *Client) GetAllGroupUIDCount(ctx context.Context) (map[string]int, error) {
	lists, err := c.GetAllGroupUIDList(ctx)
	return counts(lists), err
}

// perGroup runs list query op on every group. A group that emptied since
// the list was taken is left out.
func (c *Client) perGroup(ctx context.Context, op string) (map[string][]string, error) {
	groups, err := c.GetAllGroupIDList(ctx)
	var qe *QueryError
	if err != nil && !errors.As(err, &qe) {
		return nil, err
	}
	out := map[string][]string{}
	for _, g := range groups {
		items, gerr := c.list(ctx, op, &bus.Command{Name: g})
		if gerr != nil && !errors.As(gerr, &qe) {
			return nil, gerr
		}
		if gerr != nil {
			err = gerr
		}
		if len(items) > 0 {
			out[g] = items
		}
	}
	return out, err
}

func counts(lists map[string][]string) map[string]int {
	out := make(map[string]int, len(lists))
	for k, v := range lists {
		out[k] = len(v)
	}
	return out
}

// GetGatewayIDs returns the ids of the gateways that answer queries now.
func (c *Client) GetGatewayIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.gather(ctx, bus.QueryPing, nil, func(r bus.Reply) { ids = append(ids, r.Gateway) })
	slices.Sort(ids)
	return ids, err
}

// GatewayInfo is what a gateway says about itself.
type GatewayInfo struct {
	ID string `json:"id"`
	// Boot is the start time, Unix milliseconds.
	Boot        int64    `json:"boot_unix_ms"`
	Addrs       []string `json:"addrs"`
	Connections int64    `json:"connections"`
	Groups      int64    `json:"groups"`
	UIDs        int64    `json:"uids"`
	MessagesIn  uint64   `json:"messages_in"`
	BytesIn     uint64   `json:"bytes_in"`
	PushesOut   uint64   `json:"pushes_out"`
	BytesOut    uint64   `json:"bytes_out"`
}

// WorkerInfo is what a worker says about itself.
type WorkerInfo struct {
	ID string `json:"id"`
	// Boot is the start time, Unix milliseconds.
	Boot     int64  `json:"boot_unix_ms"`
	Handled  uint64 `json:"events_handled"`
	InFlight int64  `json:"in_flight"`
	// ReaperClients is how many clients of live gateways the worker's
	// reaper knows (synced from their presence reports): those whose
	// OnClose it would see sent if their gateway died. Zero from workers
	// that do not reap (PHP's BusinessWorker).
	ReaperClients int64 `json:"reaper_clients"`
}

// GetGatewayInfos returns what every live gateway says about itself.
func (c *Client) GetGatewayInfos(ctx context.Context) ([]GatewayInfo, error) {
	var infos []GatewayInfo
	var decodeErr error
	err := c.gather(ctx, bus.QueryInfo, nil, func(r bus.Reply) {
		var info bus.GatewayInfo
		if derr := bus.Unmarshal(r.Body, &info); derr != nil {
			decodeErr = ofBus(derr)
			return
		}
		infos = append(infos, GatewayInfo(info))
	})
	slices.SortFunc(infos, func(a, b GatewayInfo) int { return strings.Compare(a.ID, b.ID) })
	if err == nil {
		err = decodeErr
	}
	return infos, err
}

// GetWorkerInfos asks every worker about itself and returns the answers that
// came within wait (workers are not counted in advance: they may come and go).
func (c *Client) GetWorkerInfos(ctx context.Context, wait time.Duration) ([]WorkerInfo, error) {
	if err := c.Available(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var infos []WorkerInfo
	err := c.bus.Gather(ctx, c.subj.WorkerInfo(), nil, func(m bus.Msg) bool {
		var rep bus.Reply
		var info bus.WorkerInfo
		if bus.Unmarshal(m.Data, &rep) == nil && bus.Unmarshal(rep.Body, &info) == nil {
			infos = append(infos, WorkerInfo(info))
		}
		return false
	})
	slices.SortFunc(infos, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	if errors.Is(err, bus.ErrTimeout) || errors.Is(err, bus.ErrNoResponders) {
		err = nil // the window closed, or no worker runs: both are answers
	}
	return infos, ofBus(err)
}
