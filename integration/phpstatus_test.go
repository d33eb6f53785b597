package integration

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestPHPWorkersInStatus: `gatewayworker status` lists each process of a
// PHP BusinessWorker (they answer <p>.wk.info as Go workers do), with the
// events it handled.
func TestPHPWorkersInStatus(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	phpWorker(t, n.url(), "tests/workers/sticky.php", 2)

	const clients, each = 4, 5
	for range clients {
		c := &stickyClient{conn: dialWS(t, ws)}
		go c.read()
		for k := range each {
			require.NoError(t, c.conn.WriteMessage(websocket.TextMessage, []byte("n"+string(rune('0'+k)))))
		}
		require.Eventually(t, func() bool { return len(c.answers()) == each }, 20*time.Second, 20*time.Millisecond)
	}

	var report struct {
		Workers []struct {
			ID       string `json:"id"`
			Boot     int64  `json:"boot_unix_ms"`
			Handled  uint64 `json:"events_handled"`
			InFlight int64  `json:"in_flight"`
		} `json:"workers"`
	}
	out, err := exec.Command(binary(t), "status", "--json", "--nats", n.url()).Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(out, &report), string(out))
	require.Len(t, report.Workers, 2, "one per PHP process: %s", out)
	var handled uint64
	for _, w := range report.Workers {
		require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{12}$`), w.ID)
		require.InDelta(t, time.Now().UnixMilli(), w.Boot, float64(2*time.Minute/time.Millisecond), "boot, Unix ms")
		require.Zero(t, w.InFlight)
		handled += w.Handled
	}
	require.Equal(t, uint64(clients*(2+each)), handled, "every connect, handshake and message, none twice")
}
