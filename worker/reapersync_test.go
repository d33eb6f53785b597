package worker_test

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestRunWaitsForClientListRequests: a gateway's first presence report
// makes the reaper ask it for its client list. When that gateway never
// answers, Run must still end the request before it returns, not leave it
// behind (it once ran on, up to 5 s, after Run returned).
func TestRunWaitsForClientListRequests(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	gwBus := bustest.Connect(t, e, bus.Config{Name: "silent gateway"})
	subj, err := bus.NewSubjects("")
	require.NoError(t, err)
	asked := make(chan struct{}, 10)
	sub, err := gwBus.Subscribe(subj.Gateway("silent"), func(bus.Msg) { asked <- struct{}{} })
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, gwBus.Flush(t.Context()))

	_, stop := workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	report, err := bus.Marshal(&bus.Presence{Gateway: "silent", Boot: 1, Seq: 1, Added: []string{"c1"}})
	require.NoError(t, err)
	require.NoError(t, gwBus.Publish(subj.Presence("silent"), report))
	select {
	case <-asked:
	case <-t.Context().Done():
	}
	stop()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	require.NotContains(t, stacks, "(*reaper).sync", "a client-list request outlived Run")
}
