package gateway

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The registry does no I/O: these tests drive it with bare clients, no
// sockets, and check its indexes against each other after every step.

func newTestClients(n int) []*client {
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = &client{id: fmt.Sprintf("c%d", i)}
	}
	return cs
}

// checkIndexes fails when the registry's indexes disagree: every member of
// a group or uid index is registered and live and names that group or uid
// itself, every live client's memberships are indexed, no index entry is
// empty, and live counts the live clients.
func checkIndexes(t *testing.T, r *registry) {
	t.Helper()
	r.mu.RLock()
	defer r.mu.RUnlock()
	live := 0
	for id, c := range r.clients {
		require.Equal(t, id, c.id)
		if c.detached {
			require.Empty(t, c.groups, "%s: a detached client keeps no groups", id)
			continue
		}
		live++
		for g := range c.groups {
			require.Contains(t, r.groups[g], c, "%s: in group %q but not indexed", id, g)
		}
		if c.uid != "" {
			require.Contains(t, r.uids[c.uid], c, "%s: bound to %q but not indexed", id, c.uid)
		}
	}
	require.Equal(t, live, r.live)
	for g, members := range r.groups {
		require.NotEmpty(t, members, "group %q: an empty set stays behind", g)
		for c := range members {
			require.False(t, c.detached, "group %q holds detached %s", g, c.id)
			require.Contains(t, c.groups, g)
			require.Same(t, c, r.clients[c.id])
		}
	}
	for u, members := range r.uids {
		require.NotEmpty(t, members, "uid %q: an empty set stays behind", u)
		for c := range members {
			require.False(t, c.detached)
			require.Equal(t, u, c.uid)
		}
	}
}

func TestRegistryAddRespectsMax(t *testing.T) {
	r := newRegistry()
	cs := newTestClients(3)
	require.True(t, r.add(cs[0], 2))
	require.True(t, r.add(cs[1], 2))
	require.False(t, r.add(cs[2], 2), "max live clients reached")
	_, _, ok := r.detach(cs[0])
	require.True(t, ok)
	require.True(t, r.add(cs[2], 2), "a detached client leaves room, though still registered")
	live, registered, _, _ := r.counts()
	require.Equal(t, 2, live)
	require.Equal(t, 3, registered)
	checkIndexes(t, r)
}

func TestRegistryGroups(t *testing.T) {
	r := newRegistry()
	a, b := newTestClients(2)[0], newTestClients(2)[1]
	r.add(a, 10)
	r.add(b, 10)

	first, err := r.join(a, "room", 2)
	require.NoError(t, err)
	require.True(t, first, "a is the room's first member here")
	first, err = r.join(a, "room", 2)
	require.NoError(t, err)
	require.False(t, first, "joining twice changes nothing")
	first, err = r.join(b, "room", 2)
	require.NoError(t, err)
	require.False(t, first)
	require.Equal(t, 2, r.groupCount("room"))

	_, err = r.join(a, "two", 2)
	require.NoError(t, err)
	_, err = r.join(a, "three", 2)
	require.ErrorIs(t, err, ErrTooManyGroups)
	checkIndexes(t, r)

	require.False(t, r.leave(a, "room"), "b is still in it")
	require.False(t, r.leave(a, "room"), "leaving twice changes nothing")
	require.True(t, r.leave(b, "room"), "b was the last member")
	require.False(t, r.hasGroup("room"))

	r.join(a, "x", 2)
	r.join(b, "x", 2)
	require.True(t, r.ungroup("x"))
	require.False(t, r.ungroup("x"))
	require.Equal(t, []string{"two"}, r.groupList())
	checkIndexes(t, r)
}

func TestRegistryUIDs(t *testing.T) {
	r := newRegistry()
	cs := newTestClients(2)
	a, b := cs[0], cs[1]
	r.add(a, 10)
	r.add(b, 10)
	first, lost, err := r.bind(a, "alice")
	require.NoError(t, err)
	require.True(t, first)
	require.Empty(t, lost)
	first, _, _ = r.bind(b, "alice")
	require.False(t, first, "alice has a client here already")

	first, lost, err = r.bind(a, "bob")
	require.NoError(t, err)
	require.True(t, first)
	require.Empty(t, lost, "b still holds alice")
	_, lost, _ = r.bind(b, "bob")
	require.Equal(t, "alice", lost, "alice lost her last client here")
	require.Equal(t, "bob", r.uidOf(b))

	r.join(a, "g", 5)
	r.join(b, "g", 5)
	require.Equal(t, []string{"bob"}, r.groupUIDs("g"), "distinct uids")

	require.False(t, r.unbind(a, "alice"), "a is not bound to alice")
	require.False(t, r.unbind(a, "bob"), "b still holds bob")
	require.True(t, r.unbind(b, "bob"))
	require.False(t, r.hasUID("bob"))
	checkIndexes(t, r)
}

func TestRegistryDetachAndRemove(t *testing.T) {
	r := newRegistry()
	cs := newTestClients(2)
	a, b := cs[0], cs[1]
	r.add(a, 10)
	r.add(b, 10)
	r.join(a, "alone", 5)
	r.join(a, "shared", 5)
	r.join(b, "shared", 5)
	r.bind(a, "alice")

	groups, uid, ok := r.detach(a)
	require.True(t, ok)
	require.Equal(t, []string{"alone"}, groups, "only groups that lost their last member here")
	require.Equal(t, "alice", uid)
	_, _, ok = r.detach(a)
	require.False(t, ok, "a second detach does nothing")

	require.Same(t, a, r.get(a.id), "registered until its close event is acknowledged")
	require.Nil(t, r.getLive(a.id))
	_, err := r.join(a, "late", 5)
	require.ErrorIs(t, err, ErrClientNotFound)
	_, _, err = r.bind(a, "late")
	require.ErrorIs(t, err, ErrClientNotFound)
	require.Len(t, r.liveClients(nil), 1)
	require.Len(t, r.registered(nil), 2)
	checkIndexes(t, r)

	// A newer client with the same id is not removed by the old one's remove.
	r.remove(a)
	require.Nil(t, r.get(a.id))
	again := &client{id: b.id}
	r.remove(again)
	require.Same(t, b, r.get(b.id))
	checkIndexes(t, r)
}

// TestRegistryRandomOpsKeepIndexesConsistent runs random operations from
// several goroutines (run it with -race) and checks the indexes after.
func TestRegistryRandomOpsKeepIndexesConsistent(t *testing.T) {
	r := newRegistry()
	cs := newTestClients(40)
	for _, c := range cs {
		require.True(t, r.add(c, len(cs)))
	}
	names := []string{"a", "b", "c", "d", "e"}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 5000 {
				c := cs[rng.IntN(len(cs))]
				name := names[rng.IntN(len(names))]
				switch rng.IntN(20) {
				case 0:
					r.detach(c)
				case 1, 2, 3, 4:
					_, _ = r.join(c, name, 3)
				case 5, 6, 7:
					r.leave(c, name)
				case 8, 9, 10:
					_, _, _ = r.bind(c, name)
				case 11, 12:
					r.unbind(c, name)
				case 13:
					r.ungroup(name)
				default:
					_ = r.groupMembers(name, nil)
					_ = r.uidMembers(name, nil)
					_ = r.groupUIDs(name)
				}
			}
		})
	}
	wg.Wait()
	checkIndexes(t, r)
	groups := r.groupList()
	slices.Sort(groups)
	for _, g := range groups {
		require.NotZero(t, r.groupCount(g))
	}
}
