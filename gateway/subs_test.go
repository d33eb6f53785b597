package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// pingEater is a TCP proxy to a NATS server that, while eating is set,
// drops the PING lines its clients send: their Flush then waits for a PONG
// that never comes, as with a frozen server, while every other message
// still goes through.
type pingEater struct {
	ln     net.Listener
	eating atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startPingEater(t *testing.T, server string) *pingEater {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &pingEater{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); _ = c.Close() }()
			go func() { defer p.wg.Done(); p.forward(s, c); _ = s.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// forward copies NATS client protocol from src to dst line by line,
// passing message payloads whole and dropping PINGs while eating.
func (p *pingEater) forward(dst io.Writer, src io.Reader) {
	r := bufio.NewReaderSize(src, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if line == "PING\r\n" && p.eating.Load() {
			continue
		}
		out := []byte(line)
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "PUB" || f[0] == "HPUB") {
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				return
			}
			payload := make([]byte, n+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			out = append(out, payload...)
		}
		if _, err := dst.Write(out); err != nil {
			return
		}
	}
}

// startIDWorker runs a NATS server, a worker that sends each client its id
// when it connects and ignores its messages, and an API client.
func startIDWorker(t *testing.T) (*bus.Embedded, *api.Client) {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			return c.SendToCurrentClient(ctx, []byte(c.ID()))
		},
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
	}})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{}), RequestTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return e, a
}

// TestCommandsDoNotWaitForAFlush: a JoinGroup that makes the gateway
// subscribe waits for NATS to confirm the subscription (a push made after
// it returned reaches the new member), but no other command waits behind
// it. The gateway's connection goes through a proxy that eats its PINGs, so
// the confirming Flush hangs as on a frozen server (the gateway's command
// callback used to flush, and every later command waited the 2 s it took).
func TestCommandsDoNotWaitForAFlush(t *testing.T) {
	e, a := startIDWorker(t)
	proxy := startPingEater(t, strings.TrimPrefix(e.URL(), "nats://"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gwBus, err := bus.Connect(ctx, bus.Config{URLs: []string{"nats://" + proxy.ln.Addr().String()},
		PingInterval: time.Hour, Logger: bustest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(gwBus.Close)
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: gwBus})
	joiner := gatewaytest.DialWS(t, gw, "/", nil)
	joinerID := joiner.Read(wait)
	other := gatewaytest.DialWS(t, gw, "/", nil)
	otherID := other.Read(wait)

	proxy.eating.Store(true)
	joined := make(chan error, 1)
	go func() { joined <- a.JoinGroup(ctx, joinerID, "room") }()
	// Queries have their own subscription: they show the join was handled.
	require.Eventually(t, func() bool {
		ids, err := a.GetClientIDListByGroup(ctx, "room")
		return err == nil && len(ids) == 1
	}, wait, 5*time.Millisecond)

	require.NoError(t, a.SendToClient(ctx, otherID, []byte("not held up")))
	require.Equal(t, "not held up", other.Read(wait))
	on, err := a.IsOnline(ctx, otherID)
	require.NoError(t, err)
	require.True(t, on)
	select {
	case err := <-joined:
		t.Fatalf("JoinGroup answered (%v) before NATS confirmed the subscription, or the other commands waited behind it", err)
	default:
	}

	proxy.eating.Store(false)
	require.NoError(t, <-joined)
	require.NoError(t, a.SendToGroup(ctx, "room", []byte("to room")))
	require.Equal(t, "to room", joiner.Read(wait))
}

// TestMemberSubscriptionsHaveNoGoroutineEach: a group or uid subscription
// costs the gateway no goroutine of its own (nats.go gives a callback
// subscription one, 2 KB of stack or more, which at a uid per client cost
// more than the client), and the pushes of hundreds of subjects, sharing
// a few consumers, still reach their members, each subject's in order,
// hostile names included.
func TestMemberSubscriptionsHaveNoGoroutineEach(t *testing.T) {
	e, a := startIDWorker(t)
	const names = 400
	gw := gatewaytest.Start(t, e, gateway.Config{MaxGroupsPerClient: names})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := gatewaytest.DialWS(t, gw, "/", nil)
	id := c.Read(wait)

	before := runtime.NumGoroutine()
	groups := []string{"a.b", "*", ">", "two words", "héllo"}
	for i := len(groups); i < names; i++ {
		groups = append(groups, "room-"+strconv.Itoa(i))
	}
	for _, g := range groups {
		require.NoError(t, a.JoinGroup(ctx, id, g))
	}
	require.NoError(t, a.BindUID(ctx, id, "user.*>"))
	grown := runtime.NumGoroutine() - before
	require.Less(t, grown, names/10, "%d group subscriptions grew the process by %d goroutines", names, grown)

	// Every subject's pushes, interleaved: each group's arrive in order.
	const rounds = 3
	for r := range rounds {
		for _, g := range groups {
			require.NoError(t, a.SendToGroup(ctx, g, []byte(g+"#"+strconv.Itoa(r))))
		}
	}
	next := map[string]int{}
	for range rounds * len(groups) {
		g, r, ok := strings.Cut(c.Read(wait), "#")
		require.True(t, ok)
		require.Equal(t, strconv.Itoa(next[g]), r, "group %q out of order", g)
		next[g]++
	}
	for _, g := range groups {
		require.Equal(t, rounds, next[g], "group %q", g)
	}
	require.NoError(t, a.SendToUID(ctx, "user.*>", []byte("to uid")))
	require.Equal(t, "to uid", c.Read(wait))
}
