package gateway_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// TestClientCloseCodesAreNoProtocolError: a client that closes with a
// valid code (1001 is what a browser sends when it leaves the page) left
// cleanly; only the code that says "protocol error" counts as one. nbio
// reports each as an error starting "websocket:", which the gateway once
// matched by text.
func TestClientCloseCodesAreNoProtocolError(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	for _, tc := range []struct {
		name    string
		payload string
		want    bus.CloseReason
	}{
		{"1000 normal", "\x03\xe8", bus.CloseClientClosed},
		{"1001 going away", "\x03\xe9bye", bus.CloseClientClosed},
		{"4000 application", "\x0f\xa0", bus.CloseClientClosed},
		{"no code", "", bus.CloseClientClosed},
		{"1002 protocol error", "\x03\xea", bus.CloseProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := upgrade(t, s.gw.WebSocketAddr())
			_, err := c.conn.Write(masked(0x88, tc.payload))
			require.NoError(t, err)
			require.Equal(t, tc.want, s.closeReason(t, c.id))
		})
	}
}
