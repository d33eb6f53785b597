//go:build compose

package integration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// recoverableGroup is the compose test's recoverable traffic: receivers that
// opted in to recovery (?recover={}) join one group, a sender on another
// connection sends numbered group pushes through the bench worker, which
// compose.yaml starts with --recoverable for the group's name. Every number
// must reach every receiver: the stream keeps each push, and a gateway that
// missed some while it moved to another NATS node reads the gap from it.
type recoverableGroup struct {
	t         *testing.T
	receivers []*groupReceiver
	sender    *websocket.Conn
	sent      int
	stop      chan struct{}
	done      chan struct{}
}

type groupReceiver struct {
	url  string
	mu   sync.Mutex
	seen map[int]int // number → times delivered
	pos  int         // pos frames
	err  error
}

// startRecoverableGroup connects perGateway receivers to each gateway and a
// sender to the first, and sends a push to the group every interval.
func startRecoverableGroup(t *testing.T, group string, gateways []string, perGateway int, every time.Duration) *recoverableGroup {
	t.Helper()
	g := &recoverableGroup{t: t, stop: make(chan struct{}), done: make(chan struct{})}
	for _, gw := range gateways {
		for range perGateway {
			conn, _, err := websocket.DefaultDialer.Dial(gw+"?recover=%7B%7D", nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			joinBenchGroup(t, conn, group)
			r := &groupReceiver{url: gw, seen: map[int]int{}}
			g.receivers = append(g.receivers, r)
			go r.read(conn)
		}
	}
	sender, _, err := websocket.DefaultDialer.Dial(gateways[0], nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sender.Close() })
	g.sender = sender
	go func() {
		defer close(g.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			if sender.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "g:%s:%d", group, g.sent)) != nil {
				return
			}
			g.sent++
		}
	}()
	return g
}

// joinBenchGroup sends the bench protocol's join and waits for its "ok".
func joinBenchGroup(t *testing.T, conn *websocket.Conn, group string) {
	t.Helper()
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("j:"+group)))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, b, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, "ok", string(b))
	require.NoError(t, conn.SetReadDeadline(time.Time{}))
}

func (r *groupReceiver) read(conn *websocket.Conn) {
	for {
		_, b, err := conn.ReadMessage()
		r.mu.Lock()
		if err != nil {
			r.err = err
			r.mu.Unlock()
			return
		}
		var ctl struct{ GW string }
		if strings.HasPrefix(string(b), `{"gw":`) && json.Unmarshal(b, &ctl) == nil {
			if ctl.GW == "pos" {
				r.pos++
			}
		} else if n, err := strconv.Atoi(string(b)); err == nil {
			r.seen[n]++
		}
		r.mu.Unlock()
	}
}

// finish stops sending, waits until every receiver has every number (or 20 s),
// logs the counts and fails if any receiver misses one, lost its connection,
// or had a push without its position frame.
func (g *recoverableGroup) finish(name string) {
	t := g.t
	t.Helper()
	close(g.stop)
	<-g.done
	missing := func() (lost, dup, noPos int, errs []error) {
		for _, r := range g.receivers {
			r.mu.Lock()
			delivered := 0
			for n := range g.sent {
				switch c := r.seen[n]; {
				case c == 0:
					lost++
				case c > 1:
					// The bench worker may run a message event twice when
					// its ack was lost with a NATS node (events are at least
					// once): then the stream holds the push twice.
					dup += c - 1
				}
				delivered += r.seen[n]
			}
			noPos += max(0, delivered-r.pos)
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.url, r.err))
			}
			r.mu.Unlock()
		}
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	lost, dup, noPos, errs := missing()
	for lost > 0 && len(errs) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		lost, dup, noPos, errs = missing()
	}
	t.Logf("%s: %d recoverable group pushes x %d receivers: lost %d, duplicated %d, without a position %d",
		name, g.sent, len(g.receivers), lost, dup, noPos)
	require.Empty(t, errs, "receivers lost their connection")
	require.Positive(t, g.sent)
	require.Zero(t, lost, "recoverable pushes lost")
	require.Zero(t, noPos, "pushes delivered without their position frame")
}
