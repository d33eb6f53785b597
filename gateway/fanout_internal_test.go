package gateway

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// recordTransport records the messages sent to it, one by one (it cannot
// coalesce, so the fanout sends each push alone).
type recordTransport struct {
	nopTransport
	mu  sync.Mutex
	got []string
}

func (t *recordTransport) send(data []byte, _ bool) error {
	t.mu.Lock()
	t.got = append(t.got, string(data))
	t.mu.Unlock()
	return nil
}

func (t *recordTransport) appendFrame(dst, _ []byte, _ bool) ([]byte, bool) { return dst, false }

func (t *recordTransport) received() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.got...)
}

// TestFanoutShardsFollowGOMAXPROCS: the fanout has one writer per CPU Go
// runs on, at most maxFanoutShards, so a push to a small group wakes at
// most that many goroutines (8 on a 2-core box before: BENCHMARKS.md);
// clients go round the writers, and pushes queued for many clients reach
// each of them whole and in the order queued.
func TestFanoutShardsFollowGOMAXPROCS(t *testing.T) {
	for procs, want := range map[int]int{0: 1, 1: 1, 2: 2, 8: 8, 64: maxFanoutShards} {
		require.Equal(t, want, fanoutShardCount(procs), "GOMAXPROCS %d", procs)
	}
	prev := runtime.GOMAXPROCS(2)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	g := runGateway(t, bustest.RunServer(t, bus.EmbeddedConfig{}), Config{})
	require.Len(t, g.fan.shards, 2, "one writer per CPU")

	const members, pushes = 10, 300
	var (
		targets []*client
		rec     []*recordTransport
		shards  = map[uint8]int{}
	)
	for i := range members {
		tr := &recordTransport{}
		c := g.newClient("127.0.0.1:"+strconv.Itoa(i+1), tr)
		require.NotNil(t, c)
		t.Cleanup(func() { g.reg.remove(c) })
		targets, rec = append(targets, c), append(rec, tr)
		shards[c.shard]++
	}
	require.Equal(t, map[uint8]int{0: members / 2, 1: members / 2}, shards, "clients go round the writers")

	want := make([]string, pushes)
	for i := range want {
		want[i] = strconv.Itoa(i)
		g.fanOut(targets, bus.Command{Op: bus.OpSend, Body: []byte(want[i])})
	}
	require.Zero(t, g.stats.pushesDropped.Load())
	for i, tr := range rec {
		deadline := time.Now().Add(5 * time.Second)
		for len(tr.received()) < pushes && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		require.Equal(t, want, tr.received(), "client %d got every push, in order", i)
	}
}
