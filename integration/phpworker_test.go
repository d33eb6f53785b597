package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// phpProgram returns the php binary with ext-msgpack and ext-pcntl, or
// skips the test (fails it under CI=true, where .ci/run installs them).
func phpProgram(t *testing.T) string { return bustest.PHP(t, "msgpack", "pcntl") }

// phpWorker starts php/tests/workers/start.php: a PHP BusinessWorker of
// n processes running the Events class of events (a path under php/), and
// waits until every process takes events. It returns the master and the
// workers' pids.
func phpWorker(t *testing.T, natsURL, events string, n int, env ...string) (*proc, []int) {
	t.Helper()
	php := phpProgram(t)
	abs, err := filepath.Abs(filepath.Join("..", "php", events))
	require.NoError(t, err)
	env = append(env, "NATS_URL="+natsURL, "EVENTS_PHP="+abs, "WORKERS="+strconv.Itoa(n))
	p := startProgram(t, "php-worker", php, env, "-d", "display_errors=stderr", filepath.Join("..", "php", "tests", "workers", "start.php"))
	pids := make([]int, n)
	for range n {
		m := p.waitLine(t, `BusinessWorker\[(\d+\] worker \d+) taking events`)
		var pid, id int
		_, err := fmt.Sscanf(m, "%d] worker %d", &pid, &id)
		require.NoError(t, err)
		pids[id] = pid
	}
	return p, pids
}

// TestPHPChat runs workerman-chat's Events.php (php/examples/chat) in two
// PHP worker processes behind a gateway process, and checks the chat
// protocol with WebSocket clients: login with the room's client list from
// getClientSessionsByGroup, say to the room (joinGroup, sendToGroup), a
// private say (sendToClient), $_SESSION kept between events, and the
// logout told to the room by onClose.
func TestPHPChat(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	phpWorker(t, n.url(), "examples/chat/Events.php", 2)

	alice := dialChat(t, ws)
	alice.send(map[string]any{"type": "login", "client_name": "alice", "room_id": "1"})
	m := alice.next("login")
	aliceID, _ := m["client_id"].(string)
	require.NotEmpty(t, aliceID)
	require.Equal(t, map[string]any{aliceID: "alice"}, m["client_list"])

	bob := dialChat(t, ws)
	bob.send(map[string]any{"type": "login", "client_name": "bob<>", "room_id": "1"})
	// The room's copy of bob's login (sent before he joins, on the group's
	// subject, which a gateway handles apart from joins) may reach him too.
	for m = bob.next("login"); m["client_list"] == nil; m = bob.next("login") {
	}
	bobID, _ := m["client_id"].(string)
	require.Equal(t, map[string]any{aliceID: "alice", bobID: "bob&lt;&gt;"}, m["client_list"], "the room's sessions")
	m = alice.next("login")
	require.Equal(t, bobID, m["client_id"])
	require.Nil(t, m["client_list"], "the room hears of bob without the list")

	carol := dialChat(t, ws)
	carol.send(map[string]any{"type": "login", "client_name": "carol", "room_id": 2})
	m = carol.next("login")
	carolID, _ := m["client_id"].(string)
	require.Equal(t, map[string]any{carolID: "carol"}, m["client_list"], "another room")

	alice.send(map[string]any{"type": "say", "to_client_id": "all", "content": "hi <all>\nthere"})
	for _, c := range []*chatClient{alice, bob} {
		m = c.next("say")
		require.Equal(t, aliceID, m["from_client_id"])
		require.Equal(t, "alice", m["from_client_name"], "the name from $_SESSION")
		require.Equal(t, "all", m["to_client_id"])
		require.Equal(t, "hi &lt;all&gt;<br />\nthere", m["content"])
	}

	bob.send(map[string]any{"type": "say", "to_client_id": aliceID, "to_client_name": "alice", "content": "psst"})
	m = alice.next("say")
	require.Equal(t, bobID, m["from_client_id"])
	require.Equal(t, "<b>对你说: </b>psst", m["content"])
	m = bob.next("say")
	require.Equal(t, "<b>你对alice说: </b>psst", m["content"])

	require.NoError(t, bob.c.Close())
	m = alice.next("logout")
	require.Equal(t, bobID, m["from_client_id"])
	require.Equal(t, "bob&lt;&gt;", m["from_client_name"], "onClose sees the session")

	// Carol, in room 2, heard nothing of room 1.
	carol.send(map[string]any{"type": "say", "to_client_id": "all", "content": "alone"})
	m = carol.next("say", "login", "logout")
	require.Equal(t, "alone", m["content"])
}

// numberedClient sends numbered messages and collects the echoes.
type numberedClient struct {
	conn *websocket.Conn
	mu   sync.Mutex
	got  []int
}

func (e *numberedClient) read() {
	for {
		_, b, err := e.conn.ReadMessage()
		if err != nil {
			return
		}
		if k, err := strconv.Atoi(strings.TrimPrefix(string(b), "n")); err == nil {
			e.mu.Lock()
			e.got = append(e.got, k)
			e.mu.Unlock()
		}
	}
}

// check returns how many distinct numbers came, and an error if one came
// before a lower one that had not come yet (order broken) or past a gap.
// A number may come again, with those after it: a batch that ran again
// after its worker died.
func (e *numberedClient) check() (distinct int, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := 0 // the lowest number not received yet
	for _, k := range e.got {
		switch {
		case k > next:
			return next, fmt.Errorf("%d came before %d (received %v)", k, next, e.got)
		case k == next:
			next++
		}
	}
	return next, nil
}

// sendNumbered opens clients WebSocket clients that each send n0 to
// n<each-1>, one every 20 ms, and collect the echoes. wait returns when
// every message was sent.
func sendNumbered(t *testing.T, ws string, clients, each int) (ecs []*numberedClient, wait func()) {
	var wg sync.WaitGroup
	for range clients {
		ec := &numberedClient{conn: dialWS(t, ws)}
		ecs = append(ecs, ec)
		go ec.read()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if ec.conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("n%d", k))) != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return ecs, wg.Wait
}

// requireAllEchoed waits until every client got each of its numbers, in order.
func requireAllEchoed(t *testing.T, ecs []*numberedClient, each int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, ec := range ecs {
			if d, err := ec.check(); err != nil || d < each {
				return err != nil
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "every message echoed")
	for i, ec := range ecs {
		d, err := ec.check()
		require.NoError(t, err, "client %d", i)
		require.Equal(t, each, d, "client %d", i)
	}
}

// TestPHPWorkerSIGKILLLosesNothing: one of two PHP worker processes is
// SIGKILLed while 8 clients send 60 messages each: every message is
// handled and echoed, each client's in order (a batch of the dead process
// runs again, whole, on the other), and the master starts the dead
// process again.
func TestPHPWorkerSIGKILLLosesNothing(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	log := newProbeLog(t)
	// Handlers of 10 ms: the kill likely finds one running.
	master, pids := phpWorker(t, n.url(), "tests/workers/probe.php", 2, "GATEWAYWORKER_PROBE_LOG="+log.path, "PROBE_DELAY_MS=10")

	const clients, each = 8, 60
	ecs, wait := sendNumbered(t, ws, clients, each)
	require.Eventually(t, func() bool { return log.count(t).messages >= clients*each/3 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	master.waitLine(t, `worker (0) \(pid \d+\) exited with signal 9: starting it again`)
	master.waitLine(t, `worker (0) taking events`)
	wait()
	requireAllEchoed(t, ecs, each)
	c := log.count(t)
	t.Logf("SIGKILL of a PHP worker under load: messages %d, handled again %d", c.messages, c.twice)
	require.Equal(t, clients*each, c.messages, "messages handled")
}

// TestPHPWorkerSIGTERMDrains: of two PHP BusinessWorkers, one gets
// SIGTERM under load: its processes finish and acknowledge what they took
// and exit, the master last; the other serves the rest. Nothing is lost,
// nothing runs twice, each client's order holds.
func TestPHPWorkerSIGTERMDrains(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	log := newProbeLog(t)
	env := []string{"GATEWAYWORKER_PROBE_LOG=" + log.path, "PROBE_DELAY_MS=10"}
	stopping, _ := phpWorker(t, n.url(), "tests/workers/probe.php", 2, env...)
	phpWorker(t, n.url(), "tests/workers/probe.php", 2, env...)

	const clients, each = 8, 60
	ecs, wait := sendNumbered(t, ws, clients, each)
	require.Eventually(t, func() bool { return log.count(t).messages >= clients*each/3 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, stopping.stop(t), "the master exits cleanly")
	wait()
	requireAllEchoed(t, ecs, each)
	time.Sleep(2500 * time.Millisecond) // a batch left unacknowledged would run again now
	c := log.count(t)
	t.Logf("SIGTERM of a PHP BusinessWorker under load: messages %d, handled twice %d", c.messages, c.twice)
	require.Equal(t, clients*each, c.messages, "messages handled")
	require.Zero(t, c.twice, "messages handled twice")
	require.Zero(t, c.overlaps, "handlers of one client overlapping")
	require.Zero(t, c.running, "handlers cut short")
}

// TestPHPWorkerBlockingHandler: a handler that blocks for 10 s or more in
// one of two PHP worker processes keeps its batch (the master reports its
// progress): it runs once, and meanwhile the other process serves the other
// clients, including the batches that the blocked process had taken (their
// gateway sends them again, and the other process claims them).
func TestPHPWorkerBlockingHandler(t *testing.T) { testPHPBlockingHandler(t) }

// TestPHPStickyWorkerBlockingHandler is TestPHPWorkerBlockingHandler with
// $sticky: the clients that stick to the blocked process move to the
// other one (their batches, sent to the blocked process's own subject, are
// resent to the queue group after AckTimeout), and its stale copies do not
// run when it wakes.
func TestPHPStickyWorkerBlockingHandler(t *testing.T) { testPHPBlockingHandler(t, "STICKY=1") }

func testPHPBlockingHandler(t *testing.T, env ...string) {
	phpProgram(t) // before any process starts
	t.Parallel()  // mostly waiting: overlaps the other tests
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	log := newProbeLog(t)
	phpWorker(t, n.url(), "tests/workers/probe.php", 2, append(env, "GATEWAYWORKER_PROBE_LOG="+log.path)...)

	// The handler blocks until the test releases it, so that "the others
	// were served while it ran" does not depend on how fast a loaded
	// machine serves them; it is released no sooner than 10 s after it
	// started, ten AckTimeouts, so that its batch must have been kept alive.
	release := filepath.Join(t.TempDir(), "release")
	blocker := &numberedClient{conn: dialWS(t, ws)}
	go blocker.read()
	require.NoError(t, blocker.conn.WriteMessage(websocket.TextMessage, []byte("block:"+release)))
	require.Eventually(t, func() bool { return log.count(t).running == 1 }, 20*time.Second, 10*time.Millisecond, "the handler started")
	blocked := time.Now()

	const clients, each = 6, 5
	var ecs []*numberedClient
	for range clients {
		ec := &numberedClient{conn: dialWS(t, ws)}
		ecs = append(ecs, ec)
		go ec.read()
		for k := range each {
			require.NoError(t, ec.conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("n%d", k))))
		}
	}
	requireAllEchoed(t, ecs, each) // the other clients are served
	served := time.Since(blocked)
	c := log.count(t)
	require.Equal(t, 1, c.running, "the blocked handler still runs while the others were served")
	require.Equal(t, 1+clients*each, c.messages)

	time.Sleep(10*time.Second - time.Since(blocked))
	require.Equal(t, 1, log.count(t).running, "the blocked handler still runs after 10 s")
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	_ = blocker.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	require.Eventually(t, func() bool { return log.count(t).running == 0 }, 30*time.Second, 50*time.Millisecond, "the handler ended")
	time.Sleep(3 * time.Second) // a copy sent again would run now: past two AckTimeouts
	c = log.count(t)
	t.Logf("a handler blocked for %v beside %d clients (served in %v): messages %d, handled twice %d, overlapping %d",
		time.Since(blocked).Round(time.Second), clients, served.Round(10*time.Millisecond), c.messages, c.twice, c.overlaps)
	require.Zero(t, c.twice, "handlers run twice")
	require.Zero(t, c.overlaps, "handlers of one client overlapping")
}

// TestPHPWorkersHearLostGatewaysClientsLeave: PHP workers do not reap;
// beside them, `gatewayworker reaper` sends the close events of the
// clients of a gateway that was SIGKILLed, and the PHP workers run each
// client's onClose once.
func TestPHPWorkersHearLostGatewaysClientsLeave(t *testing.T) {
	phpProgram(t) // before any process starts
	t.Parallel()  // mostly waiting: overlaps the other tests
	n := startNATS(t)
	reaper := start(t, "reaper", "reaper", "--nats", n.url())
	reaper.waitLine(t, `(reaping only)`)
	gw, ws := startGateway(t, n.url())
	log := newProbeLog(t)
	phpWorker(t, n.url(), "tests/workers/probe.php", 2, "GATEWAYWORKER_PROBE_LOG="+log.path)
	const clients = 6
	dialIdle(t, ws, clients)
	require.Eventually(t, func() bool { return len(log.count(t).connects) == clients }, 20*time.Second, 20*time.Millisecond)
	waitReapersKnow(t, []string{n.url()}, 1, clients) // the reaper; PHP workers do not reap

	require.NoError(t, gw.cmd.Process.Signal(syscall.SIGKILL))
	require.Eventually(t, func() bool { all, _ := log.count(t).closedOnce(); return all }, 30*time.Second, 100*time.Millisecond,
		"every client's onClose runs")
	time.Sleep(2500 * time.Millisecond) // past the reaper's resend (2 s)
	c := log.count(t)
	_, twice := c.closedOnce()
	require.Zero(t, twice, "clients closed twice")
	require.Zero(t, c.afterClose, "handlers after onClose")
}

// TestPHPWorkerContext: what handlers see, as GatewayWorker gives it:
// $_SERVER's gateway keys, the handshake in onWebSocketConnect's $data and
// in $_GET, $_SERVER and $_COOKIE, Context::$client_id, onWorkerStart's
// worker, and $_SESSION saved after each batch (changed by the handler,
// or through Gateway::updateSession).
func TestPHPWorkerContext(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	_, ws := startGateway(t, n.url())
	phpWorker(t, n.url(), "tests/workers/context.php", 1)

	h := http.Header{"Cookie": {"sid=abc; theme=dark"}, "X-Trace": {"t1"}}
	conn, _, err := websocket.DefaultDialer.Dial(ws+"?a=1&b[]=x&b[]=y", h)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	next := func() map[string]any {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := conn.ReadMessage()
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m), string(b))
		return m
	}

	m := next()
	require.Equal(t, "connect", m["event"])
	id, _ := m["client_id"].(string)
	require.Equal(t, id, m["context"], "Context::$client_id")
	require.Equal(t, float64(0), m["worker"], "onWorkerStart's $businessWorker->id")
	require.Nil(t, m["session"], "an empty session is null")
	local := conn.LocalAddr().(*net.TCPAddr)
	server, _ := m["server"].(map[string]any)
	require.Equal(t, map[string]any{"REMOTE_ADDR": local.IP.String(), "REMOTE_PORT": float64(local.Port),
		"GATEWAY_ADDR": strings.SplitN(id, "-", 2)[0], "GATEWAY_PORT": float64(0), "GATEWAY_CLIENT_ID": id}, server)

	m = next()
	require.Equal(t, "websocket", m["event"])
	get := map[string]any{"a": "1", "b": []any{"x", "y"}}
	cookie := map[string]any{"sid": "abc", "theme": "dark"}
	require.Equal(t, get, m["get"])
	require.Equal(t, cookie, m["cookie"])
	require.Equal(t, map[string]any{"n": float64(0)}, m["session"], "the session onConnect set")
	server, _ = m["server"].(map[string]any)
	require.Equal(t, "/?a=1&b[]=x&b[]=y", server["REQUEST_URI"])
	require.Equal(t, "a=1&b[]=x&b[]=y", server["QUERY_STRING"])
	require.Equal(t, "t1", server["HTTP_X_TRACE"])
	require.Equal(t, "127.0.0.1", server["SERVER_NAME"])
	require.Equal(t, id, server["GATEWAY_CLIENT_ID"])
	data, _ := m["data"].(map[string]any)
	require.Equal(t, get, data["get"])
	require.Equal(t, cookie, data["cookie"])
	require.Equal(t, server, data["server"])

	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("count")))
	require.Equal(t, map[string]any{"n": float64(1)}, next()["session"])
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("set")))
	require.Equal(t, map[string]any{"n": float64(2), "via": "updateSession"}, next()["session"])
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte("count")))
	require.Equal(t, map[string]any{"n": float64(3), "via": "updateSession"}, next()["session"], "both changes kept")
}

// phpTestBus is a gateway stand-in: it publishes event batches to the PHP
// worker and collects what comes back on its reply subjects.
type phpTestBus struct {
	t    *testing.T
	b    *bus.Conn
	msgs chan bus.Msg
}

func newPHPTestBus(t *testing.T, url string) *phpTestBus {
	b, err := bus.Connect(context.Background(), bus.Config{URLs: []string{url}})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	tb := &phpTestBus{t: t, b: b, msgs: make(chan bus.Msg, 100)}
	_, err = b.Subscribe("test.reply.>", func(m bus.Msg) { tb.msgs <- m })
	require.NoError(t, err)
	return tb
}

// send publishes a batch on subject with reply subject test.reply.<client>.
func (tb *phpTestBus) send(subject string, b bus.EventBatch) {
	require.NoError(tb.t, tb.b.PublishRequest(subject, "test.reply."+b.Client, bus.MarshalBatch(&b)))
}

// next returns the next ack (claims included: their Reply is set), or
// fails after 3 s.
func (tb *phpTestBus) next() (bus.Ack, bus.Msg) {
	tb.t.Helper()
	select {
	case m := <-tb.msgs:
		var a bus.Ack
		require.NoError(tb.t, bus.UnmarshalAck(m.Data, &a))
		return a, m
	case <-time.After(3 * time.Second):
		tb.t.Fatal("no ack from the PHP worker")
		return bus.Ack{}, bus.Msg{}
	}
}

// silent fails if an ack comes within d.
func (tb *phpTestBus) silent(d time.Duration, what string) {
	tb.t.Helper()
	select {
	case m := <-tb.msgs:
		tb.t.Fatalf("%s: answered %x", what, m.Data)
	case <-time.After(d):
	}
}

// TestPHPWorkerProtocol plays a gateway to one PHP worker process and
// checks its answers against docs/protocol.md, "Workers in another
// language": acks, the session in the ack, duplicates answered with the
// remembered ack and not run again, claims of resent batches (run only
// when granted), forged batches dropped, the synthesized close accepted
// on <p>.evl only, run once, and the client's later batches not run.
func TestPHPWorkerProtocol(t *testing.T) {
	phpProgram(t) // before any process starts
	n := startNATS(t)
	log := newProbeLog(t)
	phpWorker(t, n.url(), "tests/workers/probe.php", 1, "GATEWAYWORKER_PROBE_LOG="+log.path)
	tb := newPHPTestBus(t, n.url())
	const c1, c2 = "gw1-x-1", "gw1-x-2"
	connect := []bus.Event{{Kind: bus.EventConnect}}

	tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: 1, Events: connect})
	a, _ := tb.next()
	require.Equal(t, bus.Ack{Client: c1, Seq: 1, Status: bus.AckDone}, a)
	session, err := bus.EncodeSession(map[string]any{"n": int64(1)})
	require.NoError(t, err)
	tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: 2, Session: session,
		Events: []bus.Event{{Kind: bus.EventMessage, Body: []byte("m1")}}})
	a, _ = tb.next()
	require.Equal(t, bus.Ack{Client: c1, Seq: 2, Status: bus.AckDone}, a, "the session did not change")

	// A duplicate of the last batch done: the same ack, handlers not run.
	tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: 2, Resent: true, Events: []bus.Event{{Kind: bus.EventMessage, Body: []byte("m1")}}})
	a, _ = tb.next()
	require.Equal(t, bus.Ack{Client: c1, Seq: 2, Status: bus.AckDone}, a)

	// A resent batch is claimed first: refused, it does not run; granted, it does.
	for _, grant := range []bool{false, true} {
		tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c2, Seq: 1, Resent: true, Events: connect})
		claim, m := tb.next()
		require.Equal(t, bus.Ack{Client: c2, Seq: 1, Status: bus.AckWorking}, claim)
		require.NotEmpty(t, m.Reply, "a claim is a request")
		answer := bus.Ack{Client: c2, Seq: 1, Status: bus.AckDone}
		if grant {
			answer.Status = bus.AckWorking
		}
		require.NoError(t, tb.b.Publish(m.Reply, bus.MarshalAck(&answer)))
		if !grant {
			tb.silent(500*time.Millisecond, "a batch whose claim was refused")
			continue
		}
		a, _ = tb.next()
		require.Equal(t, bus.Ack{Client: c2, Seq: 1, Status: bus.AckDone}, a)
	}

	// Forged: a plain batch on evl, a synthesized close on ev.
	closed := []bus.Event{{Kind: bus.EventClose, Reason: bus.CloseGatewayLost}}
	tb.send("gw.evl", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: 3, Events: closed})
	tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: math.MaxUint64 - 1, Events: closed})
	tb.silent(500*time.Millisecond, "forged batches")

	// The synthesized close: run once, acknowledged every time; the client's later batches are not run.
	for range 2 {
		tb.send("gw.evl", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: math.MaxUint64 - 1, Events: closed})
		a, _ = tb.next()
		require.Equal(t, bus.Ack{Client: c1, Seq: math.MaxUint64 - 1, Status: bus.AckDone}, a)
	}
	tb.send("gw.ev", bus.EventBatch{Gateway: "gw1", Client: c1, Seq: 3, Events: []bus.Event{{Kind: bus.EventMessage, Body: []byte("late")}}})
	a, _ = tb.next()
	require.Equal(t, bus.Ack{Client: c1, Seq: 3, Status: bus.AckDone}, a)

	c := log.count(t)
	require.Equal(t, map[string]int{c1: 1, c2: 1}, c.connects)
	require.Equal(t, map[string]int{c1: 1}, c.closes)
	require.Equal(t, 1, c.messages, "m1 only")
	require.Zero(t, c.twice)
	require.Zero(t, c.afterClose)
}
