package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// TestValidateReportsTheSameErrorEachTime: with several fields wrong, the
// error names the same one every time (validate once ranged over a map).
func TestValidateReportsTheSameErrorEachTime(t *testing.T) {
	for _, c := range []Config{
		{MaxMessageSize: -1, SendQueueLimit: -1, MaxPendingEventBytes: -1, MaxConnections: -1, MaxGroupsPerClient: -1, MaxHeaderBytes: -1},
		{NoWorkerRetry: -time.Second, DrainTimeout: -time.Second, HandshakeTimeout: -time.Second},
	} {
		c.Bus, c.WebSocketAddr = new(bus.Conn), "127.0.0.1:0"
		c = c.withDefaults()
		first := c.validate()
		require.Error(t, first)
		for range 50 {
			require.Equal(t, first, c.validate())
		}
	}
}
