package gateway

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

func TestPingParts(t *testing.T) {
	for interval, want := range map[time.Duration]int{
		-time.Second: 1, 5 * time.Millisecond: 1, 50 * time.Millisecond: 5,
		640 * time.Millisecond: 64, DefaultPingInterval: 64, time.Hour: 64,
	} {
		require.Equal(t, want, pingParts(interval), "PingInterval %v", interval)
	}
}

// TestPingScheduleVisitsEachPartOncePerInterval: one part per tick; a
// heartbeat that fell behind catches up by one round at most, so no
// client is visited twice in one interval.
func TestPingScheduleVisitsEachPartOncePerInterval(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newPingSchedule(t0, 640*time.Millisecond)
	require.Equal(t, 64, s.parts)
	require.Equal(t, 10*time.Millisecond, s.tick)
	var got []int
	due := func(at time.Duration) []int {
		got = nil
		s.due(t0.Add(at), func(part int) { got = append(got, part) })
		return got
	}
	require.Empty(t, due(5*time.Millisecond))
	require.Equal(t, []int{0}, due(10*time.Millisecond))
	require.Equal(t, []int{1, 2}, due(35*time.Millisecond), "a late tick catches up")
	require.Empty(t, due(39*time.Millisecond))

	// Stalled for 15 rounds: one round, each part once, the oldest first.
	round := due(10 * time.Second)
	require.Len(t, round, 64)
	require.Equal(t, 936%64, round[0])
	require.Equal(t, 999%64, round[63])
	every := make([]int, 64)
	for i := range every {
		every[i] = i
	}
	require.Equal(t, every, slices.Sorted(slices.Values(round)))
	// The part after it comes one tick later, an interval after its last visit.
	require.Equal(t, []int{1000 % 64}, due(10*time.Second+10*time.Millisecond))
}

// pingCounter counts the heartbeat's pings and keeps why it was closed.
type pingCounter struct {
	nopTransport
	pings  atomic.Int32
	reason atomic.Int32
}

func (p *pingCounter) ping() { p.pings.Add(1) }

func (p *pingCounter) close(_ []byte, r bus.CloseReason) { p.reason.Store(int32(r)) }

// TestHeartbeatVisitsEachClientOncePerRound: every part of the clients is
// a sixty-fourth of them, and a round of parts pings each client once;
// PingNotResponseLimit still counts rounds, and input resets it.
func TestHeartbeatVisitsEachClientOncePerRound(t *testing.T) {
	const n = 1000
	// An hour's interval: the test runs the parts itself.
	g := runGateway(t, bustest.RunServer(t, bus.EmbeddedConfig{}),
		Config{MaxConnections: n + 1, PingInterval: time.Hour, PingNotResponseLimit: 2})
	counters := make([]*pingCounter, n)
	clients := make([]*client, n)
	for i := range n {
		counters[i] = &pingCounter{}
		clients[i] = g.newClient(fmt.Sprintf("127.0.0.1:%d", i+1), counters[i])
		require.NotNil(t, clients[i])
	}
	sum := func() (total int32) {
		for _, c := range counters {
			total += c.pings.Load()
		}
		return total
	}
	for round := 1; round <= 2; round++ {
		for part := range maxPingParts {
			before := sum()
			g.heartbeat(part)
			require.LessOrEqual(t, sum()-before, int32(n/maxPingParts+1), "part %d pinged too many", part)
		}
		for i, c := range counters {
			require.Equal(t, int32(round), c.pings.Load(), "client %d after round %d", i, round)
		}
	}

	// A third silent round is one too many, except for the client that spoke.
	require.True(t, g.onInput(clients[0], []byte("hi")))
	for part := range maxPingParts {
		g.heartbeat(part)
	}
	require.Zero(t, counters[0].reason.Load(), "the client that spoke is open")
	require.Equal(t, int32(3), counters[0].pings.Load())
	for i, c := range counters[1:] {
		require.Equal(t, int32(bus.CloseHeartbeatTimeout), c.reason.Load(), "client %d", i+1)
	}
}
