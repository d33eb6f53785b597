package bus_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// TestConfigRefusesNegativeValues: a negative duration or count is a
// clear error before any I/O, as gateway.Config's are, not whatever
// nats.go or nats-server make of it.
func TestConfigRefusesNegativeValues(t *testing.T) {
	url := []string{"nats://127.0.0.1:1"} // never dialled: validation comes first
	for field, cfg := range map[string]bus.Config{
		"ReconnectWait": {URLs: url, ReconnectWait: -time.Second},
		"PingInterval":  {URLs: url, PingInterval: -time.Second},
		"MaxPingsOut":   {URLs: url, MaxPingsOut: -1},
	} {
		_, err := bus.Connect(t.Context(), cfg)
		require.ErrorContains(t, err, field)
	}
	_, err := bus.StartEmbedded(bus.EmbeddedConfig{ReadyTimeout: -time.Second})
	require.ErrorContains(t, err, "ReadyTimeout")
	_, err = bus.StartEmbedded(bus.EmbeddedConfig{Users: []bus.EmbeddedUser{{Password: "x"}}})
	require.ErrorContains(t, err, "needs a Name or an NKey")
}
