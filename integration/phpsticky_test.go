package integration

import (
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// stickyAnswer is what php/tests/workers/sticky.php answers each message:
// its number, how many of the client's messages this process has seen
// (a static variable), whether this process ran the client's onConnect,
// and the process's pid.
type stickyAnswer struct {
	K         int  `json:"k"`
	N         int  `json:"n"`
	Connected bool `json:"connected"`
	PID       int  `json:"pid"`
}

type stickyClient struct {
	conn *websocket.Conn
	mu   sync.Mutex
	got  []stickyAnswer
}

func (c *stickyClient) read() {
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var a stickyAnswer
		if json.Unmarshal(b, &a) == nil {
			c.mu.Lock()
			c.got = append(c.got, a)
			c.mu.Unlock()
		}
	}
}

func (c *stickyClient) answers() []stickyAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]stickyAnswer(nil), c.got...)
}

// TestPHPStickyWorker: a BusinessWorker with $sticky = true and $count = 2
// keeps each client on one process, so that Events.php's per-client state
// in a static variable holds across its messages, as under GatewayWorker;
// both processes get clients. When one process is SIGKILLed under load,
// its clients move (to the other process, or to the one the master starts
// again): every message is still answered, in order.
func TestPHPStickyWorker(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	_, pids := phpWorker(t, n.url(), "tests/workers/sticky.php", 2, "STICKY=1")

	const clients, each = 16, 12
	cs := make([]*stickyClient, clients)
	for i := range cs {
		cs[i] = &stickyClient{conn: dialWS(t, ws)}
		go cs[i].read()
	}
	sendRange := func(from, to int, during func()) {
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := from; k < to; k++ {
					if c.conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("n%d", k))) != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		if during != nil {
			during()
		}
		wg.Wait()
		require.Eventually(t, func() bool {
			for _, c := range cs {
				got := c.answers()
				if len(got) == 0 || got[len(got)-1].K != to-1 {
					return false
				}
			}
			return true
		}, 60*time.Second, 50*time.Millisecond, "every client's last message answered")
	}

	sendRange(0, each, nil)
	perPID := map[int]int{}
	for i, c := range cs {
		got := c.answers()
		require.Len(t, got, each, "client %d", i)
		for k, a := range got {
			require.Equal(t, stickyAnswer{K: k, N: k + 1, Connected: true, PID: got[0].PID}, a,
				"client %d: the process that ran its onConnect runs every message, and its static count goes on", i)
		}
		perPID[got[0].PID]++
	}
	require.Len(t, perPID, 2, "both processes have clients: %v", perPID)

	// Process 0 dies under load: its clients move, nothing is lost, order holds.
	sendRange(each, 3*each, func() {
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	})
	moved := 0
	for i, c := range cs {
		next := each // the lowest number not answered yet; a batch may run again
		got := c.answers()
		for _, a := range got[each:] {
			require.LessOrEqual(t, a.K, next, "client %d: order (answers %v)", i, got)
			if a.K == next {
				next++
			}
		}
		require.Equal(t, 3*each, next, "client %d: every message answered", i)
		if got[0].PID == pids[0] {
			moved++
			require.NotEqual(t, pids[0], got[len(got)-1].PID, "client %d left the dead process", i)
		} else {
			require.Equal(t, got[0].PID, got[len(got)-1].PID, "client %d stays on the live process", i)
			require.Equal(t, 3*each, got[len(got)-1].N, "client %d: its process's count went on", i)
		}
	}
	t.Logf("clients per process %v; %d moved after the SIGKILL", perPID, moved)
}
