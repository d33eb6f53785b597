package worker_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// closeCounter counts close events per client across workers.
type closeCounter struct {
	mu      sync.Mutex
	reasons map[string][]bus.CloseReason
}

func (cc *closeCounter) handlers() worker.Handlers {
	return worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			return c.SendToCurrentClient(ctx, []byte("id:"+c.ID()))
		},
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
		OnClose: func(_ context.Context, c *worker.Client, e worker.CloseEvent) error {
			cc.mu.Lock()
			cc.reasons[c.ID()] = append(cc.reasons[c.ID()], e.Reason)
			cc.mu.Unlock()
			return nil
		},
	}
}

func (cc *closeCounter) of(id string) []bus.CloseReason {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return append([]bus.CloseReason(nil), cc.reasons[id]...)
}

func (cc *closeCounter) allClosed(ids []string) bool {
	for _, id := range ids {
		if len(cc.of(id)) == 0 {
			return false
		}
	}
	return true
}

func startGatewayWithClients(t *testing.T, e *bus.Embedded, gwBus *bus.Conn, n int) []string {
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: gwBus, ID: "doomed"})
	var ids []string
	for range n {
		c := gatewaytest.DialWS(t, gw, "/", nil)
		ids = append(ids, strings.TrimPrefix(c.Read(wait), "id:"))
	}
	return ids
}

// TestGatewayLostClientsGetOnClose: a gateway that vanishes (its NATS
// connection gone, no goodbye) still gets each of its clients an OnClose,
// exactly once across two workers, within 5 s (docs/architecture.md, G5).
func TestGatewayLostClientsGetOnClose(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	cc := &closeCounter{reasons: map[string][]bus.CloseReason{}}
	w1, _ := workertest.Start(t, e, worker.Config{Handlers: cc.handlers()})
	w2, _ := workertest.Start(t, e, worker.Config{Handlers: cc.handlers()})
	gwBus := bustest.Connect(t, e, bus.Config{})
	ids := startGatewayWithClients(t, e, gwBus, 5)
	reapersKnow(t, "doomed", 5, w1, w2)

	gwBus.Close()
	start := time.Now()
	require.Eventually(t, func() bool { return cc.allClosed(ids) }, 10*time.Second, 20*time.Millisecond)
	t.Logf("every client's OnClose after %v", time.Since(start).Round(time.Millisecond))
	require.Less(t, time.Since(start), 5*time.Second)
	time.Sleep(time.Second) // duplicates would come now
	for _, id := range ids {
		require.Equal(t, []bus.CloseReason{bus.CloseGatewayLost}, cc.of(id), id)
	}
}

// TestGatewayStopIsNotALoss: a gateway that stops cleanly sends its
// clients' close events itself; nobody synthesizes them again.
func TestGatewayStopIsNotALoss(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	cc := &closeCounter{reasons: map[string][]bus.CloseReason{}}
	w, _ := workertest.Start(t, e, worker.Config{Handlers: cc.handlers()})
	stopCtx, stop := context.WithCancel(context.Background())
	g, err := gateway.New(gateway.Config{Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0", Logger: bustest.Logger(t)})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- g.Run(stopCtx) }()
	<-g.Ready()
	var ids []string
	for range 3 {
		c := gatewaytest.DialWS(t, g, "/", nil)
		ids = append(ids, strings.TrimPrefix(c.Read(wait), "id:"))
	}
	reapersKnow(t, g.ID(), 3, w)
	stop()
	require.NoError(t, <-done)
	time.Sleep(gatewayQuietPeriod)
	for _, id := range ids {
		require.Equal(t, []bus.CloseReason{bus.CloseGatewayShutdown}, cc.of(id), id)
	}
}

// reapersKnow waits until each worker's reaper holds the n clients of
// gateway gw: the presence reports reached it.
func reapersKnow(t *testing.T, gw string, n int, ws ...*worker.Worker) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, w := range ws {
			if worker.ReaperKnows(w, gw) != n {
				return false
			}
		}
		return true
	}, wait, 10*time.Millisecond, "the reapers never learnt gateway %s's %d clients", gw, n)
}

// gatewayQuietPeriod is longer than the reaper needs to notice a gateway.
const gatewayQuietPeriod = 4 * time.Second

// TestSlowBeatingGateway: a gateway that beats every 4 s (its beats say
// so) is neither reaped nor left out of queries while it lives, for longer
// than the 1 s-interval deadlines (3.5 s for workers, 4.5 s for queries);
// once it vanishes, workers still run its clients' OnClose and queries
// still wait for it (and name it missing).
func TestSlowBeatingGateway(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	cc := &closeCounter{reasons: map[string][]bus.CloseReason{}}
	workertest.Start(t, e, worker.Config{Handlers: cc.handlers()})
	gwBus := bustest.Connect(t, e, bus.Config{})
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: gwBus, ID: "slow", BeatInterval: 4 * time.Second, NATSLossTimeout: 10 * time.Second})
	gatewaytest.Start(t, e, gateway.Config{ID: "other"}) // answers queries: they do not end in "no responders"
	var ids []string
	for range 3 {
		c := gatewaytest.DialWS(t, gw, "/", nil)
		ids = append(ids, strings.TrimPrefix(c.Read(wait), "id:"))
	}
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{}), QueryTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		n, err := a.GetAllClientIDCount(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		for _, id := range ids {
			require.Empty(t, cc.of(id), "OnClose for a live client of a gateway beating every 4 s")
		}
	}

	gwBus.Close()
	vanished := time.Now()
	time.Sleep(6 * time.Second) // past 4.5 s, within 4.5 of its intervals
	_, err = a.GetAllClientIDCount(ctx)
	var qe *api.QueryError
	require.ErrorAs(t, err, &qe, "a query still waits for a gateway silent for %v", time.Since(vanished))
	require.Equal(t, []string{"slow"}, qe.Missing)
	require.Eventually(t, func() bool { return cc.allClosed(ids) }, 25*time.Second, 50*time.Millisecond)
	t.Logf("every client's OnClose %v after its gateway vanished", time.Since(vanished).Round(time.Millisecond))
	for _, id := range ids {
		require.Equal(t, []bus.CloseReason{bus.CloseGatewayLost}, cc.of(id), id)
	}
}

// TestSynthesizedCloseIsTheLastEvent: once a worker ran a client's
// synthesized close (its gateway taken for lost), events that its gateway
// still sends for it (it was cut off, not dead) are acknowledged without
// running handlers: the close stays the client's last event.
func TestSynthesizedCloseIsTheLastEvent(t *testing.T) {
	e, rec, gw, c, id := oneRecordedClient(t)
	// What the leading worker's reaper sends for a lost gateway's client.
	var subj bus.Subjects
	publishBatch(t, e, subj.LostEvents(), &bus.EventBatch{Gateway: gw.ID(), Client: id, Seq: math.MaxUint64 - 1,
		Events: []bus.Event{{Kind: bus.EventClose, Reason: bus.CloseGatewayLost}}})
	require.Equal(t, bus.CloseGatewayLost, rec.waitClose(t, id))

	for i := range 5 {
		c.Send(fmt.Sprintf("echo:late-%d", i))
	}
	require.NoError(t, c.Conn.Close())
	require.Eventually(t, func() bool { s := gw.Stats(); return s.Connections == 0 && s.PendingAcks == 0 }, wait, 20*time.Millisecond,
		"the gateway's events were acknowledged")
	require.Equal(t, []string{"connect", "ws /? ", "close gateway lost"}, rec.of(id), "nothing ran after the close")
}

// foreignWorker stands for a worker in another language that does not
// reap: it takes batches on the events and lost-events subjects in the
// workers queue group and acknowledges them, noting the clients it saw
// connect and the synthesized closes.
type foreignWorker struct {
	mu               sync.Mutex
	connects, closes map[string]int
}

func startForeignWorker(t *testing.T, e *bus.Embedded) *foreignWorker {
	fw := &foreignWorker{connects: map[string]int{}, closes: map[string]int{}}
	b := bustest.Connect(t, e, bus.Config{})
	var subj bus.Subjects
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	for _, s := range []string{subj.Events(), subj.LostEvents()} {
		sub, err := b.QueueSubscribeBuffered(s, bus.WorkerQueue, 1024)
		require.NoError(t, err)
		go func() {
			for m, ok := sub.Next(stop); ok; m, ok = sub.Next(stop) {
				var eb bus.EventBatch
				if bus.UnmarshalBatch(m.Data, &eb) != nil {
					continue
				}
				fw.mu.Lock()
				for _, ev := range eb.Events {
					switch {
					case ev.Kind == bus.EventConnect:
						fw.connects[eb.Client]++
					case ev.Kind == bus.EventClose && eb.Seq == math.MaxUint64-1:
						fw.closes[eb.Client]++
					}
				}
				fw.mu.Unlock()
				_ = b.Publish(m.Reply, bus.MarshalAck(&bus.Ack{Client: eb.Client, Seq: eb.Seq, Status: bus.AckDone}))
			}
		}()
	}
	return fw
}

func (fw *foreignWorker) counts() (connects, closes map[string]int) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return maps.Clone(fw.connects), maps.Clone(fw.closes)
}

// TestReapOnlyWorker: beside a worker that does not reap, a ReapOnly
// worker (no handlers) takes no event, and sends the close of each client
// of a gateway that vanished, once.
func TestReapOnlyWorker(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	fw := startForeignWorker(t, e)
	reaper, _ := workertest.Start(t, e, worker.Config{ReapOnly: true})
	gwBus := bustest.Connect(t, e, bus.Config{})
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: gwBus, ID: "doomed"})
	const n = 5
	for range n {
		gatewaytest.DialWS(t, gw, "/", nil)
	}
	require.Eventually(t, func() bool { c, _ := fw.counts(); return len(c) == n }, wait, 10*time.Millisecond,
		"the other worker takes every connect: the reaper takes none")
	reapersKnow(t, "doomed", n, reaper)
	gwBus.Close()
	require.Eventually(t, func() bool { _, c := fw.counts(); return len(c) == n }, 15*time.Second, 50*time.Millisecond,
		"a synthesized close for each client")
	time.Sleep(2500 * time.Millisecond) // past the reaper's resend
	connects, closes := fw.counts()
	for id := range connects {
		require.Equal(t, 1, closes[id], id)
	}
}
