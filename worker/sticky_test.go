package worker_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// stickyLog records which worker ran each event of each client.
type stickyLog struct {
	mu   sync.Mutex
	runs map[string][]stickyRun // by client id, in the order handlers ran
}

type stickyRun struct {
	worker string
	n      int // the message's number; 0 for the connect event
}

func (l *stickyLog) handlers(name string) worker.Handlers {
	record := func(c *worker.Client, n int) {
		l.mu.Lock()
		l.runs[c.ID()] = append(l.runs[c.ID()], stickyRun{name, n})
		l.mu.Unlock()
	}
	return worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			record(c, 0)
			return c.SendToCurrentClient(ctx, []byte(c.ID()))
		},
		OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
			n, err := strconv.Atoi(string(e.Data))
			if err != nil {
				return err
			}
			record(c, n)
			return c.SendToCurrentClient(ctx, e.Data)
		},
	}
}

// workersOf returns, per client, the workers that ran its events from
// message number from on.
func (l *stickyLog) workersOf(from int) map[string]map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]map[string]int{}
	for id, runs := range l.runs {
		out[id] = map[string]int{}
		for _, r := range runs {
			if r.n >= from {
				out[id][r.worker]++
			}
		}
	}
	return out
}

// checkOrder fails unless every client's messages 1..last ran, each for
// the first time after all before it: a batch may run again (at-least-once,
// after a worker died), but none is skipped or overtaken.
func (l *stickyLog) checkOrder(t *testing.T, last int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, runs := range l.runs {
		seen := 0
		for _, r := range runs[1:] {
			require.LessOrEqual(t, r.n, seen+1, "client %s: message %d ran before %d", id, r.n, seen+1)
			seen = max(seen, r.n)
		}
		require.Equal(t, last, seen, "client %s: messages lost", id)
	}
}

// TestStickyWorkers: with Config.Sticky, every client's events run on one
// worker process while it lives, as GatewayWorker's routerBind kept them;
// when that worker dies (its NATS connection cut, as by SIGKILL) or stops
// (drains), its clients move to another worker, and nothing is lost or
// reordered.
func TestStickyWorkers(t *testing.T) {
	const clients, rounds = 20, 10
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	log := &stickyLog{runs: map[string][]stickyRun{}}
	busA := bustest.Connect(t, e, bus.Config{Name: "worker-a"})
	workertest.Start(t, e, worker.Config{Bus: busA, Sticky: true, Handlers: log.handlers("a")})
	_, stopB := workertest.Start(t, e, worker.Config{Sticky: true, Handlers: log.handlers("b")})
	gw := gatewaytest.Start(t, e, gateway.Config{AckTimeout: 500 * time.Millisecond})

	peers := make([]*gatewaytest.WS, clients)
	for i := range peers {
		peers[i] = gatewaytest.DialWS(t, gw, "/", nil)
		peers[i].Read(wait)
	}
	// send makes every client send messages from..to, one every
	// millisecond, and waits for the echo of the last one (earlier ones
	// may come twice: at-least-once).
	send := func(from, to int, during func()) {
		t.Helper()
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := from; n <= to; n++ {
					if err := p.Conn.WriteMessage(1, []byte(strconv.Itoa(n))); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		if during != nil {
			during()
		}
		wg.Wait()
		for _, p := range peers {
			for {
				msg, err := p.TryRead(15 * time.Second)
				require.NoError(t, err)
				if msg == strconv.Itoa(to) {
					break
				}
			}
		}
	}

	// Both live: each client stays on the worker that took its connect.
	send(1, rounds, nil)
	perWorker := map[string]int{}
	for id, ws := range log.workersOf(0) {
		require.Len(t, ws, 1, "client %s ran on %v", id, ws)
		for w := range ws {
			perWorker[w]++
		}
	}
	require.Len(t, perWorker, 2, "the queue group gives clients to both workers: %v", perWorker)
	log.checkOrder(t, rounds)

	// a dies under load: its clients move to b and stay there.
	send(rounds+1, 3*rounds, func() {
		time.Sleep(5 * time.Millisecond)
		busA.Close()
	})
	log.checkOrder(t, 3*rounds)
	send(3*rounds+1, 4*rounds, nil)
	for id, ws := range log.workersOf(3*rounds + 1) {
		require.Equal(t, map[string]int{"b": rounds}, ws, "client %s", id)
	}

	// c starts: nobody moves to it while b lives; then b stops under load.
	workertest.Start(t, e, worker.Config{Sticky: true, Handlers: log.handlers("c")})
	send(4*rounds+1, 5*rounds, nil)
	for id, ws := range log.workersOf(4*rounds + 1) {
		require.Equal(t, map[string]int{"b": rounds}, ws, "client %s", id)
	}
	send(5*rounds+1, 7*rounds, func() {
		time.Sleep(5 * time.Millisecond)
		stopB()
	})
	send(7*rounds+1, 8*rounds, nil)
	log.checkOrder(t, 8*rounds)
	for id, ws := range log.workersOf(7*rounds + 1) {
		require.Equal(t, map[string]int{"c": rounds}, ws, "client %s", id)
	}
	t.Logf("clients per worker at first: %v", perWorker)
}
