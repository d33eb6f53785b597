package worker_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/worker"
)

// TestHandlersCannotCloseTheSharedAPIClient: a handler's Client and the
// worker's API() offer every API call but not Close, which would stop the
// API client that all of the worker's handlers share.
func TestHandlersCannotCloseTheSharedAPIClient(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[*worker.Client](), reflect.TypeOf((*worker.Worker).API).Out(0)} {
		_, ok := typ.MethodByName("Close")
		require.False(t, ok, "%v has Close", typ)
		_, ok = typ.MethodByName("SendToGroup")
		require.True(t, ok, "%v has the calls", typ)
	}
}
