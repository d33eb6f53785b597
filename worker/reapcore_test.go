package worker

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// beats is a periodic beat heard by the worker from..until (until 0: to
// the end of the script).
type beats struct {
	id                 string
	every, from, until time.Duration
}

func (b beats) due(at time.Duration) bool {
	return at >= b.from && (b.until == 0 || at <= b.until) && (at-b.from)%b.every == 0
}

// TestReapCore drives the reaper's decisions with a clock of its own, over
// the interleavings of gateway deaths, worker deaths and NATS cuts that
// decide whether a lost gateway's clients get their close events: every
// step is 50 ms, the reaper checks every reaperTick, and the gateway "gw"
// (boot 1) has three clients.
func TestReapCore(t *testing.T) {
	const step = 50 * time.Millisecond
	cases := []struct {
		name string
		self string
		// workers beat every second; self is heard only when not cut.
		workers []beats
		gateway beats
		// cut is when this worker hears nothing; connected says whether
		// its connection looks up meanwhile (a frozen server).
		cut       [2]time.Duration
		connected bool
		until     time.Duration
		// wantSent: close batches this worker sends; wantGone: whether it
		// drops the clients' later events.
		wantSent int
		wantGone bool
	}{
		{name: "live gateway: nothing", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: time.Second}, until: 20 * time.Second},
		{name: "gateway dies, this worker leads", self: "a", workers: []beats{{id: "a"}, {id: "b"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, until: 10 * time.Second,
			wantSent: 3, wantGone: true},
		{name: "gateway dies, the leader lives: it sends", self: "b", workers: []beats{{id: "a"}, {id: "b"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, until: 15 * time.Second,
			wantGone: true},
		{name: "gateway and leader die, the leader's last beat 0.5 s later", self: "b",
			workers: []beats{{id: "a", from: 500 * time.Millisecond, until: 2500 * time.Millisecond}, {id: "b"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, until: 15 * time.Second,
			wantSent: 3, wantGone: true},
		{name: "gateway and leader die, the leader's last beat 0.9 s later", self: "b",
			workers: []beats{{id: "a", from: 900 * time.Millisecond, until: 2900 * time.Millisecond}, {id: "b"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, until: 15 * time.Second,
			wantSent: 3, wantGone: true},
		{name: "gateway and leader die, the leader's last beat earlier", self: "b",
			workers: []beats{{id: "a", until: time.Second}, {id: "b"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, until: 15 * time.Second,
			wantSent: 3, wantGone: true},
		{name: "NATS down for 5 s: the gateway is not lost", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: time.Second}, cut: [2]time.Duration{2 * time.Second, 7 * time.Second},
			until: 20 * time.Second},
		{name: "NATS server frozen for 5 s: the gateway is not lost", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: time.Second}, cut: [2]time.Duration{2 * time.Second, 7 * time.Second},
			connected: true, until: 20 * time.Second},
		{name: "NATS down for 5 s, the gateway never back", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: time.Second, until: 2 * time.Second}, cut: [2]time.Duration{2 * time.Second, 7 * time.Second},
			until: 20 * time.Second, wantSent: 3, wantGone: true},
		{name: "beats every 3 s: a live gateway", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: 3 * time.Second}, until: 20 * time.Second},
		{name: "beats every 2 s, the gateway dies", self: "a", workers: []beats{{id: "a"}},
			gateway: beats{id: "gw", every: 2 * time.Second, until: 4 * time.Second}, until: 20 * time.Second,
			wantSent: 3, wantGone: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1000, 0)
			c := newReapCore(tc.self, slog.New(slog.DiscardHandler), t0)
			sent, gone := map[string]int{}, map[string]bool{}
			var lostAt time.Duration
			for at := time.Duration(0); at <= tc.until; at += step {
				now := t0.Add(at)
				cut := at >= tc.cut[0] && at < tc.cut[1]
				if !cut {
					for _, w := range tc.workers {
						if w.every == 0 {
							w.every = time.Second
						}
						if w.due(at) {
							c.workerBeat(w.id, now)
						}
					}
					if tc.gateway.due(at) {
						interval := tc.gateway.every.Milliseconds()
						_, sync := c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 1, Interval: interval}, now)
						if sync {
							c.synced("gw", 1, []string{"c1", "c2", "c3"}, 1, true)
						}
					}
				}
				if at%reaperTick == 0 {
					out, g := c.check(now, !cut || tc.connected)
					for _, s := range out {
						sent[s.client]++
					}
					for _, id := range g {
						gone[id] = true
						if lostAt == 0 {
							lostAt = at
						}
					}
					for id := range c.pending {
						delete(c.pending, id) // acknowledged at once
					}
				}
			}
			require.Len(t, sent, tc.wantSent, "close batches sent: %v", sent)
			for id, n := range sent {
				require.Equal(t, 1, n, id)
			}
			if !tc.wantGone {
				require.Empty(t, gone)
				require.Contains(t, c.gateways, "gw", "a live gateway keeps its table")
				return
			}
			require.Equal(t, []string{"c1", "c2", "c3"}, slices.Sorted(func(yield func(string) bool) {
				for id := range gone {
					if !yield(id) {
						return
					}
				}
			}))
			require.NotContains(t, c.gateways, "gw", "a lost gateway's table goes once it was reaped")
			last := tc.gateway.until
			if tc.cut[1] > last {
				last = tc.cut[1] // silence counts from the reconnect
			}
			dead := bus.GatewayDeadAfter(tc.gateway.every)
			require.Greater(t, lostAt, last+dead-step, "lost only after the gateway's own deadline")
			require.LessOrEqual(t, lostAt, last+dead+2*reaperTick)
		})
	}
}

// TestReapCoreSyncReplacesTheList: after reports were missed, the
// gateway's list replaces the table, so a client that left meanwhile is
// not reaped later; reports newer than the list are replayed.
func TestReapCoreSyncReplacesTheList(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newReapCore("a", slog.New(slog.DiscardHandler), now)
	_, sync := c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 1}, now)
	require.True(t, sync)
	c.synced("gw", 1, []string{"c1", "c2"}, 1, true)
	_, sync = c.presence(bus.Presence{Gateway: "gw", Boot: 1, Seq: 4, Added: []string{"c4"}}, now)
	require.True(t, sync, "a gap asks for the list")
	_, _ = c.presence(bus.Presence{Gateway: "gw", Boot: 1, Seq: 6, Added: []string{"c6"}}, now)
	c.synced("gw", 1, []string{"c2", "c4", "c5"}, 5, true)
	require.Equal(t, map[string]struct{}{"c2": {}, "c4": {}, "c5": {}, "c6": {}}, c.gateways["gw"].clients)

	gone, _ := c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 2}, now.Add(time.Second))
	require.Len(t, gone, 4, "a new boot: the old process's clients are gone")
}

// TestReapCoreRestartWithTheLeaderDead: a gateway restarts (a new boot)
// while the leader died with the old process: this worker keeps the old
// process's clients until it leads, then sends their close events; the
// new process's clients are untouched.
func TestReapCoreRestartWithTheLeaderDead(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newReapCore("b", slog.New(slog.DiscardHandler), t0)
	c.workerBeat("a", t0)
	_, _ = c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 1}, t0)
	c.synced("gw", 1, []string{"old1", "old2"}, 1, true)
	gone, sync := c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 2}, t0.Add(time.Second))
	require.ElementsMatch(t, []string{"old1", "old2"}, gone)
	require.True(t, sync)
	c.synced("gw", 2, []string{"new1"}, 1, true)
	var sent []string
	for at := time.Second; at < 6*time.Second; at += reaperTick {
		now := t0.Add(at)
		c.workerBeat("b", now)
		_, _ = c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 2}, now)
		out, _ := c.check(now, true)
		for _, s := range out {
			sent = append(sent, s.client)
			delete(c.pending, s.client) // acknowledged at once
		}
		if at < 3*time.Second {
			require.Empty(t, sent, "a (the leader) may still send them")
		}
	}
	require.ElementsMatch(t, []string{"old1", "old2"}, sent, "sent once a's beats stopped for 3 s")
	require.Equal(t, map[string]struct{}{"new1": {}}, c.gateways["gw"].clients)
}

// TestReapCoreKnown: what `gatewayworker status` shows as reaper_clients
// counts the clients of live gateways whose list the reaper holds: not
// before the list came, not after reports were missed, not those of a
// gateway's previous (lost) process.
func TestReapCoreKnown(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newReapCore("a", slog.New(slog.DiscardHandler), now)
	require.Zero(t, c.known(), "no gateway")
	_, _ = c.gatewayBeat(bus.Beat{Gateway: "gw", Boot: 1}, now)
	_, _ = c.presence(bus.Presence{Gateway: "gw", Boot: 1, Seq: 2, Added: []string{"c2"}}, now)
	require.Zero(t, c.known(), "reports before the list")
	c.synced("gw", 1, []string{"c1"}, 1, true)
	require.EqualValues(t, 2, c.known(), "the list and the report that came meanwhile")
	_, _ = c.presence(bus.Presence{Gateway: "gw", Boot: 1, Seq: 3, Added: []string{"c3"}, Removed: []string{"c1"}}, now)
	require.EqualValues(t, 2, c.known())
	_, _ = c.gatewayBeat(bus.Beat{Gateway: "other", Boot: 1}, now)
	c.synced("other", 1, []string{"o1"}, 1, true)
	require.EqualValues(t, 3, c.known(), "every gateway's clients")
	_, _ = c.presence(bus.Presence{Gateway: "gw", Boot: 1, Seq: 9, Added: []string{"c9"}}, now)
	require.EqualValues(t, 1, c.known(), "reports were missed: gw's table waits for its list again")
	_, _ = c.gatewayBeat(bus.Beat{Gateway: "other", Boot: 2}, now)
	require.Zero(t, c.known(), "a new boot: the old process's clients are lost, the new one's list not in yet")
}
