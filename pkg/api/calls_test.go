package api_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// TestCallsAreEveryMethodButClose: a method added to Client must be added
// to Calls too (or handlers would not see it); Close must stay out.
func TestCallsAreEveryMethodButClose(t *testing.T) {
	client, calls := reflect.TypeFor[*api.Client](), reflect.TypeFor[api.Calls]()
	for i := range client.NumMethod() {
		name := client.Method(i).Name
		_, ok := calls.MethodByName(name)
		require.Equal(t, name != "Close", ok, "api.Calls and Client.%s", name)
	}
	require.Equal(t, client.NumMethod()-1, calls.NumMethod())
}
