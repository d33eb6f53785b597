package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// startHistoryGateway starts a gateway with history and its flags, and
// waits until its stream is ready.
func startHistoryGateway(t *testing.T, natsURLs string, flags ...string) (*proc, string) {
	t.Helper()
	p := start(t, "gateway", append([]string{"gateway", "--nats", natsURLs, "--ws", "127.0.0.1:0", "--tcp", ""}, flags...)...)
	p.waitLine(t, `(history on)`)
	return p, "ws://" + p.waitLine(t, `gateway listening.*websocket=(\S+)`) + "/"
}

// channelLog is what a recovering client received on one channel.
type channelLog struct {
	got []int  // push numbers, in arrival order
	pos string // position of the last push received whole
}

// recClient is a WebSocket client that opts in to recovery, keeps a
// position per channel and reconnects with them, as the JS client does.
// Pushes are "<channel>/<n>".
type recClient struct {
	t     *testing.T
	group string
	mu    sync.Mutex
	conn  *websocket.Conn
	chans map[string]*channelLog
	// recovered are the recovered frames of the current connection.
	recovered map[string]bool
	// sinceConnect counts pushes received since the last connect.
	sinceConnect int
	closed       chan struct{}
}

func newRecClient(t *testing.T, group string) *recClient {
	return &recClient{t: t, group: group, chans: map[string]*channelLog{}}
}

// connect dials wsURL with the client's positions and joins its group
// through the bench app ("j:<group>"); the caller binds a uid if it wants.
func (c *recClient) connect(wsURL string) {
	c.t.Helper()
	c.mu.Lock()
	positions := map[string]string{}
	for ch, l := range c.chans {
		if l.pos != "" {
			positions[ch] = l.pos
		}
	}
	c.recovered, c.sinceConnect = map[string]bool{}, 0
	c.mu.Unlock()
	q, _ := json.Marshal(positions)
	conn, _, err := websocket.DefaultDialer.Dial(wsURL+"?recover="+url.QueryEscape(string(q)), nil)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = conn.Close() })
	closed := make(chan struct{})
	c.mu.Lock()
	c.conn, c.closed = conn, closed
	c.mu.Unlock()
	go c.read(conn, closed)
	require.NoError(c.t, conn.WriteMessage(websocket.TextMessage, []byte("j:"+c.group)))
}

func (c *recClient) read(conn *websocket.Conn, closed chan struct{}) {
	defer close(closed)
	pending := ""
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var f struct {
			GW, Ch, Pos string
			Complete    bool
		}
		if strings.HasPrefix(string(b), `{"gw":`) && json.Unmarshal(b, &f) == nil {
			switch f.GW {
			case "pos":
				pending = f.Pos
			case "recovered":
				c.mu.Lock()
				c.recovered[f.Ch] = f.Complete
				if l := c.chans[f.Ch]; l != nil && f.Pos != "" {
					l.pos = f.Pos
				}
				c.mu.Unlock()
			}
			continue
		}
		ch, num, ok := strings.Cut(string(b), "/")
		var n int
		if _, err := fmt.Sscanf(num, "%d", &n); !ok || err != nil {
			continue // the bench app's "ok"
		}
		c.mu.Lock()
		l := c.chans[ch]
		if l == nil {
			l = &channelLog{}
			c.chans[ch] = l
		}
		l.got = append(l.got, n)
		l.pos, pending = pending, ""
		c.sinceConnect++
		c.mu.Unlock()
	}
}

// drop closes the connection as a lost network would.
func (c *recClient) drop() {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	_ = conn.UnderlyingConn().Close()
	<-closed
}

// check fails unless ch got exactly the numbers in want (in order, once),
// and any of maybe (pushes whose storing is unknown) at most once, in order.
func (c *recClient) check(ch string, want []int, maybe map[int]bool) (got int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []int
	if c.chans[ch] != nil {
		l = c.chans[ch].got
	}
	prev, wi := 0, 0
	for _, n := range l {
		require.Greater(c.t, n, prev, "%s %s: %d after %d: in order, once", c.group, ch, n, prev)
		prev = n
		if wi < len(want) && want[wi] == n {
			wi++
			continue
		}
		require.True(c.t, maybe[n], "%s %s: %d was never stored, or is out of order", c.group, ch, n)
	}
	require.Equal(c.t, len(want), wi, "%s %s: lost %d of %d", c.group, ch, len(want)-wi, len(want))
	return len(l)
}

// received reports whether ch has got every number of want.
func (c *recClient) received(ch string, want []int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.chans[ch]
	if l == nil {
		return len(want) == 0
	}
	seen := map[int]bool{}
	for _, n := range l.got {
		seen[n] = true
	}
	for _, n := range want {
		if !seen[n] {
			return false
		}
	}
	return true
}

// pusher stores numbered recoverable pushes and remembers which it knows
// were stored (want) and which failed (maybe: stored or not).
type pusher struct {
	a     api.Calls
	mu    sync.Mutex
	next  map[string]int
	want  map[string][]int
	maybe map[string]map[int]bool
}

func newPusher(a *api.Client) *pusher {
	return &pusher{a: a.Recoverable(), next: map[string]int{}, want: map[string][]int{}, maybe: map[string]map[int]bool{}}
}

// push sends the next number of ch ("u:<uid>" or "g:<group>").
func (p *pusher) push(ctx context.Context, ch string) error {
	p.mu.Lock()
	p.next[ch]++
	n := p.next[ch]
	p.mu.Unlock()
	body := []byte(fmt.Sprintf("%s/%d", ch, n))
	var err error
	if name, ok := strings.CutPrefix(ch, "u:"); ok {
		err = p.a.SendToUID(ctx, name, body)
	} else {
		err = p.a.SendToGroup(ctx, strings.TrimPrefix(ch, "g:"), body)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.maybe[ch] == nil {
			p.maybe[ch] = map[int]bool{}
		}
		p.maybe[ch][n] = true
		return err
	}
	p.want[ch] = append(p.want[ch], n)
	return nil
}

func (p *pusher) stored(ch string) (want []int, maybe map[int]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.want[ch]...), p.maybe[ch]
}

// waitReceived waits until every client got every stored push of its channels.
func waitReceived(t *testing.T, p *pusher, clients []*recClient, chansOf func(*recClient) []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		all := true
		for _, c := range clients {
			for _, ch := range chansOf(c) {
				want, _ := p.stored(ch)
				all = all && c.received(ch, want)
			}
		}
		if all || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bindUID binds the only member of c's group to uid, through the API.
func bindUID(t *testing.T, a *api.Client, c *recClient, uid string) {
	t.Helper()
	ctx := context.Background()
	var ids []string
	require.Eventually(t, func() bool {
		ids, _ = a.GetClientIDListByGroup(ctx, c.group)
		return len(ids) == 1
	}, 20*time.Second, 20*time.Millisecond, "the client joined %s", c.group)
	require.NoError(t, a.BindUID(ctx, ids[0], uid))
}

// TestRecoveryAfterDisconnect: a client away for 5 s while 1,000
// recoverable pushes go to its uid and 1,000 to its group gets all of them,
// in order, once, when it reconnects: to the same gateway, then to
// another. Then history past its bound: complete:false, nothing replayed.
func TestRecoveryAfterDisconnect(t *testing.T) {
	urls, _ := natsServers(t, 1, true)
	flags := []string{"--history-max-bytes", fmt.Sprint(1 << 20)}
	_, ws1 := startHistoryGateway(t, urls[0], flags...)
	_, ws2 := startHistoryGateway(t, urls[0], flags...)
	startTier(t, "worker", "worker", "--nats", urls[0], "--app", "bench")
	a := apiClient(t, urls, api.Config{})
	p := newPusher(a)
	ctx := context.Background()
	chans := []string{"u:alice", "g:room"}

	c := newRecClient(t, "room")
	c.connect(ws1)
	bindUID(t, a, c, "alice")
	for range 10 {
		for _, ch := range chans {
			require.NoError(t, p.push(ctx, ch))
		}
	}
	waitReceived(t, p, []*recClient{c}, func(*recClient) []string { return chans }, 20*time.Second)

	for round, ws := range []string{ws1, ws2} {
		c.drop()
		away := time.Now()
		for i := range 1000 {
			for _, ch := range chans {
				require.NoError(t, p.push(ctx, ch))
			}
			if wait := time.Until(away.Add(time.Duration(i+1) * 5 * time.Millisecond)); wait > 0 {
				time.Sleep(wait) // spread over the 5 s away
			}
		}
		time.Sleep(time.Until(away.Add(5 * time.Second)))
		back := time.Now()
		c.connect(ws)
		bindUID(t, a, c, "alice")
		waitReceived(t, p, []*recClient{c}, func(*recClient) []string { return chans }, 60*time.Second)
		took := time.Since(back)
		for _, ch := range chans {
			want, maybe := p.stored(ch)
			c.check(ch, want, maybe)
		}
		require.Eventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.recovered) == 2 }, 10*time.Second, 10*time.Millisecond)
		c.mu.Lock()
		require.Equal(t, map[string]bool{"u:alice": true, "g:room": true}, c.recovered, "round %d", round)
		got := c.sinceConnect
		c.mu.Unlock()
		t.Logf("recovery, %s gateway: 2000 missed pushes received, in order, once, in %v", []string{"the same", "another"}[round], took.Round(time.Millisecond))
		require.Equal(t, 2000, got)
	}

	// Past the bound: 1.2 MiB to the group drops the oldest of the stream.
	c.drop()
	big := strings.Repeat("x", 100<<10)
	for range 12 {
		require.NoError(t, a.Recoverable().SendToGroup(ctx, "other", []byte(big)))
	}
	c.connect(ws1)
	bindUID(t, a, c, "alice")
	require.Eventually(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.recovered) == 2 }, 20*time.Second, 10*time.Millisecond)
	c.mu.Lock()
	require.Equal(t, map[string]bool{"u:alice": false, "g:room": false}, c.recovered, "the stream no longer reaches back")
	require.Zero(t, c.sinceConnect, "nothing replayed, nothing invented")
	c.mu.Unlock()
	require.NoError(t, p.push(ctx, "g:room"))
	want, _ := p.stored("g:room")
	require.Eventually(t, func() bool { return c.received("g:room", want[len(want)-1:]) }, 10*time.Second, 10*time.Millisecond, "live pushes follow")
	t.Log("history past its bound: complete:false on both channels, 0 pushes replayed")
}

// recoverableLoad is clients that each follow group "rg<i>", and pushers
// that store numbered pushes to each group every `every`.
type recoverableLoad struct {
	t       *testing.T
	p       *pusher
	clients []*recClient
	stop    chan struct{}
	wg      sync.WaitGroup
	failed  int
	fmu     sync.Mutex
}

func startRecoverableLoad(t *testing.T, a *api.Client, wsURL string, clients int, every time.Duration) *recoverableLoad {
	l := &recoverableLoad{t: t, p: newPusher(a), stop: make(chan struct{})}
	for i := range clients {
		c := newRecClient(t, fmt.Sprintf("rg%d", i))
		c.connect(wsURL)
		l.clients = append(l.clients, c)
	}
	ctx := context.Background()
	require.Eventually(t, func() bool {
		for _, c := range l.clients {
			if n, err := a.GetClientCountByGroup(ctx, c.group); err != nil || n != 1 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "every client joined its group")
	for _, c := range l.clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				if err := l.p.push(ctx, "g:"+c.group); err != nil {
					l.fmu.Lock()
					l.failed++
					l.fmu.Unlock()
				}
			}
		}()
	}
	return l
}

// finish stops pushing, waits for the stored pushes to arrive, prints the
// counts and fails on any stored push lost, repeated or out of order.
func (l *recoverableLoad) finish(name string) {
	close(l.stop)
	l.wg.Wait()
	l.t.Logf("pushers stopped")
	chansOf := func(c *recClient) []string { return []string{"g:" + c.group} }
	waitReceived(l.t, l.p, l.clients, chansOf, 60*time.Second)
	stored, received, lost := 0, 0, 0
	for _, c := range l.clients {
		ch := "g:" + c.group
		want, _ := l.p.stored(ch)
		stored += len(want)
		if !c.received(ch, want) {
			lost++
		}
	}
	for _, c := range l.clients {
		ch := "g:" + c.group
		want, maybe := l.p.stored(ch)
		received += c.check(ch, want, maybe)
	}
	fmt.Printf("%s, recoverable pushes: stored %d / received %d / lost 0 / duplicated 0 / reordered 0 / not stored (push failed) %d\n",
		name, stored, received, l.failed)
	require.Zero(l.t, lost)
	require.Positive(l.t, stored)
}

// TestG4RecoverableNATSNodeKilled: the NATS node a gateway is connected to
// is SIGKILLed under recoverable load, with the history stream replicated
// on the 3 nodes: every stored push reaches its client, in order, once
// (the gateway reads what it missed between nodes from the stream).
func TestG4RecoverableNATSNodeKilled(t *testing.T) {
	urls, procs := natsServers(t, 3, true)
	_, ws := startHistoryGateway(t, urls[0], "--history-replicas", "3")
	startTier(t, "worker", "worker", "--nats", strings.Join(urls[1:], ","), "--app", "bench")
	a := apiClient(t, urls[1:], api.Config{})
	began := time.Now()
	l := startRecoverableLoad(t, a, ws, 10, 20*time.Millisecond)
	time.Sleep(time.Second)
	t.Logf("load running after %v; killing node 1", time.Since(began).Round(time.Millisecond))
	require.NoError(t, procs[0].Process.Signal(syscall.SIGKILL))
	time.Sleep(4 * time.Second)
	l.finish("G4 NATS node SIGKILL")
	t.Logf("finished after %v", time.Since(began).Round(time.Millisecond))
	for _, c := range l.clients {
		select {
		case <-c.closed:
			t.Fatalf("%s was disconnected", c.group)
		default:
		}
	}
}

// TestG4RecoverableGatewayKilled: a gateway SIGKILLed under recoverable
// load; its clients reconnect to another gateway with their positions and
// get every stored push, in order, once.
func TestG4RecoverableGatewayKilled(t *testing.T) {
	urls, _ := natsServers(t, 3, true)
	g1, ws1 := startHistoryGateway(t, urls[0], "--history-replicas", "3")
	_, ws2 := startHistoryGateway(t, urls[1], "--history-replicas", "3")
	startTier(t, "worker", "worker", "--nats", strings.Join(urls, ","), "--app", "bench")
	a := apiClient(t, urls, api.Config{})
	l := startRecoverableLoad(t, a, ws1, 10, 20*time.Millisecond)
	time.Sleep(time.Second)
	require.NoError(t, g1.cmd.Process.Signal(syscall.SIGKILL))
	for _, c := range l.clients {
		select {
		case <-c.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the client of the killed gateway was not disconnected")
		}
		c.connect(ws2)
	}
	time.Sleep(2 * time.Second)
	l.finish("G4 gateway SIGKILL, clients reconnect elsewhere")
	recovered := 0
	for _, c := range l.clients {
		c.mu.Lock()
		if complete, ok := c.recovered["g:"+c.group]; ok {
			require.True(t, complete, c.group)
			recovered++
		}
		c.mu.Unlock()
	}
	require.Equal(t, len(l.clients), recovered, "each client got a recovered frame")
}
