package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestSmallPushesKeepTheirOrderBehindQueuedOnes: a push to a few clients is
// written at once only when the shards have nothing left to write, so it
// never overtakes a push of the same subject queued before it. (recorder,
// in history_internal_test.go, records each message.)
func TestSmallPushesKeepTheirOrderBehindQueuedOnes(t *testing.T) {
	const n, rounds = 1000, 50
	g := runGateway(t, bustest.RunServer(t, bus.EmbeddedConfig{}), Config{MaxConnections: n + 1})
	recs := make([]*recorder, n)
	clients := make([]*client, n)
	for i := range n {
		recs[i] = &recorder{}
		clients[i] = g.newClient(fmt.Sprintf("127.0.0.1:%d", i+1), recs[i])
		require.NotNil(t, clients[i])
	}
	var want []string
	for r := range rounds {
		big, small := fmt.Sprintf("big-%d", r), fmt.Sprintf("small-%d", r)
		g.fanOut(clients, bus.Command{Op: bus.OpSend, Body: []byte(big)})
		g.fanOut(clients[n-1:], bus.Command{Op: bus.OpSend, Body: []byte(small)})
		want = append(want, big, small)
	}
	last := recs[n-1]
	require.Eventually(t, func() bool { return len(last.sent()) == len(want) }, 5*time.Second, time.Millisecond,
		"the last client got %d of %d pushes", len(last.sent()), len(want))
	require.Equal(t, strings.Join(want, " "), strings.Join(last.sent(), " "))
	for i, r := range recs[:n-1] {
		require.Eventually(t, func() bool { return len(r.sent()) == rounds }, 5*time.Second, time.Millisecond, "client %d", i)
	}

	// With nothing queued, a small push is written before fanOut returns.
	require.Eventually(t, func() bool { return g.fan.jobs.Load() == 0 }, 5*time.Second, time.Millisecond)
	g.fanOut(clients[:2], bus.Command{Op: bus.OpSend, Body: []byte("now")})
	require.Equal(t, "now", recs[0].sent()[rounds])
	require.Equal(t, "now", recs[1].sent()[rounds])
}
