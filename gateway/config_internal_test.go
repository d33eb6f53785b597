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

// TestNATSLossTimeoutFollowsBeatInterval: the default NATSLossTimeout is
// 2.5 beats at any BeatInterval (it overflowed past 3.7 s, to a negative
// value that never closes clients, and --beat-interval 10s refused to
// start).
func TestNATSLossTimeoutFollowsBeatInterval(t *testing.T) {
	for beat, loss := range map[time.Duration]time.Duration{
		0:                      DefaultNATSLossTimeout,
		200 * time.Millisecond: 500 * time.Millisecond,
		4 * time.Second:        10 * time.Second,
		10 * time.Second:       25 * time.Second,
		time.Hour:              150 * time.Minute,
	} {
		c := Config{Bus: new(bus.Conn), WebSocketAddr: "127.0.0.1:0", BeatInterval: beat}.withDefaults()
		require.Equal(t, loss, c.NATSLossTimeout, "BeatInterval %v", beat)
		require.NoError(t, c.validate(), "BeatInterval %v", beat)
	}
}
