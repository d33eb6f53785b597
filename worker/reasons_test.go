package worker_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/worker"
)

// TestWorkerListsEveryCloseReason: every close reason a gateway records has
// its worker constant, so users need no other package to compare
// CloseEvent.Reason. A reason added to the gateway's list fails here until
// worker/reasons.go names it too.
func TestWorkerListsEveryCloseReason(t *testing.T) {
	listed := []worker.CloseReason{
		worker.CloseUnknown, worker.CloseClientClosed, worker.CloseHeartbeatTimeout, worker.CloseSlowConsumer,
		worker.CloseMessageTooLarge, worker.CloseProtocolError, worker.ClosedByAPI, worker.CloseGatewayShutdown,
		worker.CloseGatewayLost, worker.CloseEventQueueFull, worker.CloseRateLimited, worker.CloseServerFull,
		worker.CloseTokenExpired, worker.CloseUnauthorized,
	}
	known := 0
	for r := range 256 {
		if worker.CloseReason(r).String() != fmt.Sprintf("close reason %d", r) {
			known = r + 1
		}
	}
	require.Len(t, listed, known, "the gateway knows %d close reasons; worker/reasons.go lists %d", known, len(listed))
	for i, r := range listed {
		require.Equal(t, worker.CloseReason(i), r)
	}
	kinds := []worker.EventKind{worker.EventConnect, worker.EventWebSocketConnect, worker.EventMessage, worker.EventClose}
	for i, k := range kinds {
		require.Equal(t, worker.EventKind(i+1), k)
	}
	require.Equal(t, fmt.Sprintf("event_%d", len(kinds)+1), worker.EventKind(len(kinds)+1).String(), "an event kind worker does not list")
}
