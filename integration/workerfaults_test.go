package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// probeLog is the file the workers of --app probe append to
// (cmd/gatewayworker/probe.go): a "b" line when a handler starts, an "e"
// line when it ends, in the order they ran across processes.
type probeLog struct{ path string }

func newProbeLog(t *testing.T) *probeLog {
	return &probeLog{path: filepath.Join(t.TempDir(), "probe.log")}
}

// startWorker starts a probe worker whose OnMessage sleeps delay and
// returns it with its worker id.
func (p *probeLog) startWorker(t *testing.T, name, natsURL string, delay time.Duration, args ...string) (*proc, string) {
	t.Helper()
	env := []string{"GATEWAYWORKER_PROBE_LOG=" + p.path, "GATEWAYWORKER_PROBE_DELAY=" + delay.String()}
	w := startEnv(t, name, env, append([]string{"worker", "--nats", natsURL, "--app", "probe"}, args...)...)
	return w, w.waitLine(t, `worker taking events.*worker_id=(\S+)`)
}

// probeCounts is what the workers' handlers did, per client id.
type probeCounts struct {
	connects, closes map[string]int
	// messages counts distinct messages handled; twice the runs beyond
	// the first of one message.
	messages, twice int
	// overlaps counts handlers that started while another handler of the
	// same client ran.
	overlaps int
	// afterClose counts handlers that started after the client's close.
	afterClose int
	// running counts handlers started and not ended.
	running int
}

func (p *probeLog) count(t *testing.T) probeCounts {
	t.Helper()
	c := probeCounts{connects: map[string]int{}, closes: map[string]int{}}
	f, err := os.Open(p.path)
	if os.IsNotExist(err) {
		return c
	}
	require.NoError(t, err)
	defer f.Close()
	open := map[string]int{}
	seen := map[string]int{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.SplitN(s.Text(), " ", 4)
		if len(fields) != 4 {
			continue // a line being written
		}
		phase, client, kind := fields[0], fields[1], fields[2]
		detail, err := strconv.Unquote(fields[3])
		require.NoError(t, err, s.Text())
		if phase == "e" {
			open[client]--
			c.running--
			continue
		}
		c.running++
		if open[client] > 0 {
			c.overlaps++
		}
		open[client]++
		if c.closes[client] > 0 {
			c.afterClose++
		}
		switch kind {
		case "connect":
			c.connects[client]++
		case "close":
			c.closes[client]++
		case "message":
			key := client + " " + detail
			seen[key]++
			if seen[key] == 1 {
				c.messages++
			} else {
				c.twice++
			}
		}
	}
	require.NoError(t, s.Err())
	return c
}

// closedOnce reports whether every connected client's close ran, and how
// many clients' close ran more than once.
func (c probeCounts) closedOnce() (all bool, twice int) {
	all = true
	for id := range c.connects {
		switch n := c.closes[id]; {
		case n == 0:
			all = false
		case n > 1:
			twice++
		}
	}
	return all, twice
}

func dialWS(t *testing.T, wsURL string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestOverloadedWorkersRunEachBatchOnce: two workers that run one batch at
// a time, 400 ms handlers, and 8 clients sending 3 messages each: the
// batches wait in the workers far longer than the gateway's AckTimeout
// (1 s), and may be sent again, but every message runs once and no two
// handlers of one client overlap (G1).
func TestOverloadedWorkersRunEachBatchOnce(t *testing.T) {
	urls, _ := natsCluster(t, 1)
	_, ws := startGateway(t, urls[0])
	log := newProbeLog(t)
	log.startWorker(t, "worker-a", urls[0], 400*time.Millisecond, "--max-concurrency", "1")
	log.startWorker(t, "worker-b", urls[0], 400*time.Millisecond, "--max-concurrency", "1")
	const clients, each = 8, 3
	var conns []*websocket.Conn
	for i := range clients {
		conn := dialWS(t, ws)
		conns = append(conns, conn)
		for k := range each {
			require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("m%d-%d", i, k))))
		}
	}
	require.Eventually(t, func() bool {
		c := log.count(t)
		return c.messages == clients*each && c.running == 0
	}, 60*time.Second, 100*time.Millisecond, "every message handled")
	time.Sleep(3 * time.Second) // stale copies, if any, run now: past two AckTimeouts
	c := log.count(t)
	t.Logf("overload, 2 workers × 1 at a time, 400 ms handlers: messages %d / handled twice %d / overlapping handlers %d",
		c.messages, c.twice, c.overlaps)
	require.Zero(t, c.twice, "messages handled twice")
	require.Zero(t, c.overlaps, "handlers of one client overlapping")

	for _, conn := range conns {
		_ = conn.Close()
	}
	require.Eventually(t, func() bool { all, _ := log.count(t).closedOnce(); return all }, 30*time.Second, 100*time.Millisecond)
	time.Sleep(2 * time.Second)
	c = log.count(t)
	_, twice := c.closedOnce()
	require.Zero(t, twice, "clients closed twice")
	require.Zero(t, c.afterClose, "handlers after OnClose")
	require.Zero(t, c.overlaps, "handlers of one client overlapping")
}

// natsServer is one nats-server process that can be killed and started
// again on the same port.
type natsServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startNATS(t *testing.T) *natsServer {
	n := &natsServer{t: t, port: freePort(t)}
	n.start()
	t.Cleanup(func() { n.kill() })
	return n
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsServer) start() {
	n.cmd = exec.Command(natsServerBin.get(n.t), "-a", "127.0.0.1", "-p", fmt.Sprint(n.port))
	require.NoError(n.t, n.cmd.Start())
	waitPort(n.t, fmt.Sprintf("127.0.0.1:%d", n.port))
}

func (n *natsServer) kill() {
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

// TestNATSOutageClosesEachClientOnce: the only NATS server is SIGKILLed
// under load (20 clients at 20 messages/s) and started again 5 s later.
// The gateway closes its clients after its NATSLossTimeout; the workers,
// cut off as well, must not take the gateway for lost, and when they do
// (it comes back late) the synthesized close stays each client's last
// event: exactly one OnClose per client, no handler after it.
func TestNATSOutageClosesEachClientOnce(t *testing.T) {
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	log := newProbeLog(t)
	log.startWorker(t, "worker-a", n.url(), 0)
	log.startWorker(t, "worker-b", n.url(), 0)
	const clients = 20
	stop := make(chan struct{})
	defer close(stop)
	for i := range clients {
		conn := dialWS(t, ws)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("m%d-%d", i, k))) != nil {
					return
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return len(log.count(t).connects) == clients }, 20*time.Second, 50*time.Millisecond)
	waitReapersKnow(t, []string{n.url()}, 2, clients)

	n.kill()
	time.Sleep(5 * time.Second) // past the gateway's NATSLossTimeout (2.5 s) and the workers' 3.5 s
	n.start()
	require.Eventually(t, func() bool { all, _ := log.count(t).closedOnce(); return all }, 30*time.Second, 100*time.Millisecond,
		"every client's OnClose runs")
	time.Sleep(6 * time.Second) // past the reaper's deadline after the reconnect, and resends
	c := log.count(t)
	_, twice := c.closedOnce()
	t.Logf("NATS outage of 5 s: clients %d / closed twice %d / messages %d / handlers after OnClose %d / handled twice %d / overlapping %d",
		len(c.connects), twice, c.messages, c.afterClose, c.twice, c.overlaps)
	require.Len(t, c.connects, clients)
	require.Zero(t, twice, "clients closed twice")
	require.Zero(t, c.afterClose, "handlers after OnClose")
	require.Zero(t, c.overlaps, "handlers of one client overlapping")
}

// TestGatewayAndLeaderKilled: a gateway with clients and the worker that
// leads the reaping are SIGKILLed within 1.5 s of each other (the
// leader last: so its last beat comes well after the gateway's): the
// other worker still runs every client's OnClose, once.
func TestGatewayAndLeaderKilled(t *testing.T) {
	urls, _ := natsCluster(t, 1)
	doomed, ws := startGateway(t, urls[0])
	log := newProbeLog(t)
	a, idA := log.startWorker(t, "worker-a", urls[0], 0)
	b, idB := log.startWorker(t, "worker-b", urls[0], 0)
	leader := a
	if idB < idA {
		leader = b
	}
	const clients = 30
	for range clients {
		dialWS(t, ws)
	}
	require.Eventually(t, func() bool { return len(log.count(t).connects) == clients }, 20*time.Second, 50*time.Millisecond)
	waitReapersKnow(t, urls, 2, clients)

	require.NoError(t, doomed.cmd.Process.Signal(syscall.SIGKILL))
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, leader.cmd.Process.Signal(syscall.SIGKILL))
	require.Eventually(t, func() bool { all, _ := log.count(t).closedOnce(); return all }, 20*time.Second, 100*time.Millisecond,
		"every client's OnClose runs")
	time.Sleep(2 * time.Second)
	c := log.count(t)
	_, twice := c.closedOnce()
	t.Logf("gateway and leading worker SIGKILL: clients %d / closed %d / closed twice %d", len(c.connects), len(c.closes), twice)
	require.Zero(t, twice, "clients closed twice")
}
