package jsclient_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// cutProxy is a TCP proxy whose connections the test cuts (both sides
// closed at once, as a phone that loses its network) and whose target it
// moves to another gateway; while cut it accepts and closes at once, so the
// client keeps failing to connect.
type cutProxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string // "" while cut
	conns  []net.Conn
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			if target == "" {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection and refuses new ones until to.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = ""
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// to sends new connections to target.
func (p *cutProxy) to(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// nodeEvents runs a Node script and hands out the JSON lines it prints.
type nodeEvents struct {
	t     *testing.T
	lines chan map[string]any
}

func startNode(t *testing.T, node, script string, env ...string) *nodeEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "--no-warnings", "--input-type=module", "-e", script)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	n := &nodeEvents{t: t, lines: make(chan map[string]any, 10000)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"ev": "text", "text": sc.Text()}
			}
			n.lines <- m
		}
		close(n.lines)
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr: %s", stderr.String())
		}
	})
	return n
}

// until reads events until one satisfies ok, handing each to seen.
func (n *nodeEvents) until(what string, ok func(map[string]any) bool, seen func(map[string]any)) {
	n.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m, open := <-n.lines:
			if !open {
				n.t.Fatalf("node ended before %s", what)
			}
			if seen != nil {
				seen(m)
			}
			if ok(m) {
				return
			}
		case <-deadline:
			n.t.Fatalf("no %s within 60 s", what)
		}
	}
}

// TestRecoverEndToEnd: gatewayworker.js in Node, with recover on, holding
// uid ann and group room-1 from its token, is cut off by a TCP proxy while
// 1,000 recoverable pushes go to its uid and its group (through the Go
// API, over embedded NATS with JetStream); it reconnects to the same
// gateway and gets all of them in order, once, before the live pushes sent
// after its reconnection, with a complete recovered event per channel; then
// the same again with the reconnection going to a second gateway.
func TestRecoverEndToEnd(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	secret := []byte(strings.Repeat("k", 32))
	auth := &gateway.AuthConfig{HMACSecret: secret}
	history := &bus.HistoryConfig{Storage: bus.StorageMemory}
	g1 := gatewaytest.Start(t, e, gateway.Config{ID: "g1", Auth: auth, History: history})
	g2 := gatewaytest.Start(t, e, gateway.Config{ID: "g2", Auth: auth, History: history})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	rec := a.Recoverable()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ann", "groups": []string{"room-1"}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	require.NoError(t, err)

	ctx := context.Background()
	info, err := bustest.Connect(t, e, bus.Config{}).HistoryInfo(ctx, bus.Subjects{})
	require.NoError(t, err)
	// Positions before the first message: what is pushed before the token's
	// memberships are in place is replayed, not missed.
	start, err := json.Marshal(map[string]string{"u:ann": info.Epoch + ":0", "g:room-1": info.Epoch + ":0"})
	require.NoError(t, err)

	p := startCutProxy(t, g1.WebSocketAddr())
	script := `
import { GatewayClient } from ` + "'" + writeModule(t) + "'" + `;
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const c = new GatewayClient(process.env.URL, { recover: JSON.parse(process.env.START), token: process.env.TOKEN, initialDelay: 20, maxDelay: 100 });
let opens = 0;
c.on('open', () => say({ ev: 'open', n: ++opens }));
c.on('close', (e) => say({ ev: 'close', code: e.code }));
c.on('message', (e) => say({ ev: 'msg', data: e.data, ch: e.channel ?? null, pos: e.pos ?? null }));
c.on('recovered', (e) => say({ ev: 'recovered', ...e, positions: c.positions }));
c.connect();
`
	n := startNode(t, node, script, "URL=ws://"+p.addr()+"/", "TOKEN="+token, "START="+string(start))

	got := map[string][]string{} // channel -> data, in arrival order
	var stray []string
	record := func(m map[string]any) {
		if m["ev"] != "msg" {
			return
		}
		ch, _ := m["ch"].(string)
		if ch == "" {
			stray = append(stray, fmt.Sprint(m["data"]))
			return
		}
		require.NotEmpty(t, m["pos"], "a recoverable push has its position")
		got[ch] = append(got[ch], m["data"].(string))
	}
	sent := map[string]int{"u:ann": 0, "g:room-1": 0}
	send := func(k int) {
		for i := 0; i < k; i++ {
			if i%2 == 0 {
				require.NoError(t, rec.SendToUID(ctx, "ann", []byte(fmt.Sprintf("u:ann %d", sent["u:ann"]))))
				sent["u:ann"]++
			} else {
				require.NoError(t, rec.SendToGroup(ctx, "room-1", []byte(fmt.Sprintf("g:room-1 %d", sent["g:room-1"]))))
				sent["g:room-1"]++
			}
		}
	}
	received := func(map[string]any) bool {
		return len(got["u:ann"]) >= sent["u:ann"] && len(got["g:room-1"]) >= sent["g:room-1"]
	}

	n.until("the first connection", func(m map[string]any) bool { return m["ev"] == "open" }, record)
	send(20)
	n.until("20 pushes", received, record)

	for round, target := range []*gateway.Gateway{g1, g2} {
		p.cut()
		n.until("the close", func(m map[string]any) bool { return m["ev"] == "close" }, record)
		send(1000) // while the client is away
		p.to(target.WebSocketAddr())
		var recovered []map[string]any
		opens := 0
		n.until("the reconnection", func(m map[string]any) bool {
			if m["ev"] == "open" {
				opens++
			}
			return opens > 0
		}, record)
		send(10) // live ones, which must come after the replay
		n.until("every push", func(m map[string]any) bool {
			if m["ev"] == "recovered" {
				recovered = append(recovered, m)
			}
			return received(m) && len(recovered) == 2
		}, record)
		for _, r := range recovered {
			require.Equal(t, true, r["complete"], "round %d: %v", round, r)
		}
	}
	for ch, k := range sent {
		want := make([]string, k)
		for i := range want {
			want[i] = fmt.Sprintf("%s %d", ch, i)
		}
		require.Equal(t, want, got[ch], "%s: every push, in order, once", ch)
	}
	require.Empty(t, stray, "no pos or recovered frame leaked as a message")
}
