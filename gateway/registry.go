package gateway

import (
	"errors"
	"sync"
)

// Errors of gateway operations; the command handler maps them to reply codes.
var (
	// ErrClientNotFound means no live client has that id on this gateway.
	ErrClientNotFound = errors.New("gateway: client not found")
	// ErrTooManyGroups means a client is already in MaxGroupsPerClient groups.
	ErrTooManyGroups = errors.New("gateway: too many groups for one client")
	// ErrPending means the client is not accepted yet (a pending
	// connection, or one whose token has not come): it can join no group
	// and be bound to no uid until then.
	ErrPending = errors.New("gateway: client not accepted yet: accept it first")
)

// registry indexes this gateway's clients, groups and uids. It does no I/O
// and calls nothing while holding its lock, so it is tested without sockets.
// Lock order: subscriptions.mu, then registry.mu.
type registry struct {
	mu      sync.RWMutex
	clients map[string]*client
	groups  map[string]map[*client]struct{}
	uids    map[string]map[*client]struct{}
	live    int
}

func newRegistry() *registry {
	return &registry{
		clients: map[string]*client{},
		groups:  map[string]map[*client]struct{}{},
		uids:    map[string]map[*client]struct{}{},
	}
}

// add registers c unless max live clients are registered already.
func (r *registry) add(c *client, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live >= max {
		return false
	}
	r.clients[c.id] = c
	r.live++
	return true
}

// get returns the client with id, also while its close event is pending.
func (r *registry) get(id string) *client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.clients[id]
}

// getLive returns the client with id if its socket is open.
func (r *registry) getLive(id string) *client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if c := r.clients[id]; c != nil && !c.detached {
		return c
	}
	return nil
}

// detach ends c's memberships when its socket closed. It returns the groups
// and uids that lost their last member here. c stays registered (for its
// pending close event) until remove.
func (r *registry) detach(c *client) (groups []string, uid string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.detached {
		return nil, "", false
	}
	c.detached = true
	r.live--
	for g := range c.groups {
		if dropMember(r.groups, g, c) {
			groups = append(groups, g)
		}
	}
	c.groups = nil
	if c.uid != "" && dropMember(r.uids, c.uid, c) {
		uid = c.uid
	}
	return groups, uid, true
}

// remove forgets c for good.
func (r *registry) remove(c *client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients[c.id] == c {
		delete(r.clients, c.id)
	}
}

// accept ends c's unaccepted state; it reports whether c was unaccepted.
func (r *registry) accept(c *client) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := c.unaccepted
	c.unaccepted = false
	return was
}

// accepted reports whether c is accepted.
func (r *registry) accepted(c *client) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return !c.unaccepted
}

// join adds c to group; first reports that c is the group's first member here.
func (r *registry) join(c *client, group string, maxGroups int) (first bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.detached {
		return false, ErrClientNotFound
	}
	if c.unaccepted {
		return false, ErrPending
	}
	if _, ok := c.groups[group]; ok {
		return false, nil
	}
	if len(c.groups) >= maxGroups {
		return false, ErrTooManyGroups
	}
	if c.groups == nil {
		c.groups = map[string]struct{}{}
	}
	c.groups[group] = struct{}{}
	return addMember(r.groups, group, c), nil
}

// leave removes c from group; last reports that the group has no member here now.
func (r *registry) leave(c *client, group string) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := c.groups[group]; !ok {
		return false
	}
	delete(c.groups, group)
	return dropMember(r.groups, group, c)
}

// ungroup removes every member of group; last reports the group existed here.
func (r *registry) ungroup(group string) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	members, ok := r.groups[group]
	for c := range members {
		delete(c.groups, group)
	}
	delete(r.groups, group)
	return ok
}

// bind binds c to uid, replacing its previous uid (a client has at most one,
// as in GatewayWorker). first: uid has its first client here; lost: the
// previous uid that has no client here any more.
func (r *registry) bind(c *client, uid string) (first bool, lost string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.detached {
		return false, "", ErrClientNotFound
	}
	if c.unaccepted {
		return false, "", ErrPending
	}
	if c.uid == uid {
		return false, "", nil
	}
	if c.uid != "" && dropMember(r.uids, c.uid, c) {
		lost = c.uid
	}
	c.uid = uid
	return addMember(r.uids, uid, c), lost, nil
}

// unbind unbinds c from uid if bound to it; last as in leave.
func (r *registry) unbind(c *client, uid string) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.uid != uid || uid == "" {
		return false
	}
	c.uid = ""
	return dropMember(r.uids, uid, c)
}

func (r *registry) uidOf(c *client) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return c.uid
}

func (r *registry) hasGroup(group string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.groups[group]) > 0
}

func (r *registry) hasUID(uid string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.uids[uid]) > 0
}

// groupMembers appends the members of group to dst.
func (r *registry) groupMembers(group string, dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.groups[group] {
		dst = append(dst, c)
	}
	return dst
}

// uidMembers appends the clients bound to uid to dst.
func (r *registry) uidMembers(uid string, dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.uids[uid] {
		dst = append(dst, c)
	}
	return dst
}

// registered appends every registered client to dst, also those whose
// close event is pending.
func (r *registry) registered(dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.clients {
		dst = append(dst, c)
	}
	return dst
}

// liveClients appends every client with an open socket to dst.
func (r *registry) liveClients(dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.clients {
		if !c.detached {
			dst = append(dst, c)
		}
	}
	return dst
}

// livePart appends every client with an open socket in heartbeat part
// to dst.
func (r *registry) livePart(part uint8, dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.clients {
		if !c.detached && c.pingPart == part {
			dst = append(dst, c)
		}
	}
	return dst
}

// acceptedClients appends every accepted client with an open socket to
// dst: those a broadcast reaches.
func (r *registry) acceptedClients(dst []*client) []*client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.clients {
		if !c.detached && !c.unaccepted {
			dst = append(dst, c)
		}
	}
	return dst
}

// groupList returns the groups with a member here.
func (r *registry) groupList() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.groups))
	for g := range r.groups {
		out = append(out, g)
	}
	return out
}

// uidList returns the uids with a client here.
func (r *registry) uidList() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.uids))
	for u := range r.uids {
		out = append(out, u)
	}
	return out
}

// groupUIDs returns the distinct uids bound to members of group.
func (r *registry) groupUIDs(group string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]struct{}{}
	var out []string
	for c := range r.groups[group] {
		if _, ok := seen[c.uid]; c.uid != "" && !ok {
			seen[c.uid] = struct{}{}
			out = append(out, c.uid)
		}
	}
	return out
}

// groupCount returns how many members group has here.
func (r *registry) groupCount(group string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.groups[group])
}

// counts returns the live clients, the clients still registered, and the
// number of groups and uids with a member here.
func (r *registry) counts() (live, registered, groups, uids int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.live, len(r.clients), len(r.groups), len(r.uids)
}

func addMember(index map[string]map[*client]struct{}, key string, c *client) (first bool) {
	set := index[key]
	if set == nil {
		set = map[*client]struct{}{}
		index[key] = set
	}
	set[c] = struct{}{}
	return len(set) == 1
}

func dropMember(index map[string]map[*client]struct{}, key string, c *client) (last bool) {
	set := index[key]
	if _, ok := set[c]; !ok {
		return false
	}
	delete(set, c)
	if len(set) == 0 {
		delete(index, key)
		return true
	}
	return false
}
