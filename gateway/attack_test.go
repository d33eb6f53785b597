package gateway_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestEventsThatCannotFitNATSCloseTheClient: with a NATS server whose
// max payload is 8 KiB, a handshake whose headers cannot fit and a
// message that cannot fit with its client's session each close their
// client, once: nothing is
// resent, workers never hear of the client whose connect event could not
// reach them, and stopping the gateway does not wait for either.
func TestEventsThatCannotFitNATSCloseTheClient(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 8 << 10})
	var mu sync.Mutex
	connects := map[string]int{}
	reasons := map[string][]bus.CloseReason{}
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			mu.Lock()
			connects[c.ID()]++
			mu.Unlock()
			// A message of MaxMessageSize fits NATS, but not with this.
			c.Session()["pad"] = strings.Repeat("s", 1<<10)
			return c.SendToCurrentClient(ctx, []byte(c.ID()))
		},
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
		OnClose: func(_ context.Context, c *worker.Client, ev worker.CloseEvent) error {
			mu.Lock()
			reasons[c.ID()] = append(reasons[c.ID()], ev.Reason)
			mu.Unlock()
			return nil
		},
	}})
	g, err := gateway.New(gateway.Config{
		Bus: bustest.Connect(t, e, bus.Config{}), WebSocketAddr: "127.0.0.1:0",
		MaxMessageSize: 8<<10 - gateway.EnvelopeOverhead, DrainTimeout: time.Minute, Logger: bustest.Logger(t),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()

	// Headers within MaxHeaderBytes, but not within a NATS message.
	raw, code := dialRaw(t, g.WebSocketAddr(), upgradeRequest+"X-Pad: "+strings.Repeat("p", 10<<10)+"\r\n")
	require.Equal(t, 101, code)
	for op := byte(0); op != 8 && op != 0xff; op, _ = raw.readFrame() {
	}

	ws := gatewaytest.DialWS(t, g, "/", nil)
	id := ws.Read(wait)
	ws.Send(strings.Repeat("m", 8<<10-gateway.EnvelopeOverhead))
	require.Error(t, ws.Closed(wait))

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reasons[id]) > 0
	}, 2*wait, 10*time.Millisecond)
	time.Sleep(4 * gateway.DefaultAckTimeout) // long enough for resends to show
	st := g.Stats()
	require.Zero(t, st.Resends, "a batch that cannot fit is never resent")
	require.Zero(t, st.PendingAcks)
	require.Zero(t, st.Connections)
	mu.Lock()
	require.Equal(t, map[string]int{id: 1}, connects, "only the second client reached workers")
	require.Equal(t, map[string][]bus.CloseReason{id: {bus.CloseMessageTooLarge}}, reasons)
	mu.Unlock()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run waits for clients whose events could not be sent (DrainTimeout is a minute)")
	}
}

// measure runs attack and reports the gateway process's heap before, at
// its peak during, and after it (the test runs the gateway in-process; the
// attackers write from one reused buffer, so the heap is the gateway's).
func measure(t *testing.T, name string, attack func()) {
	t.Helper()
	const mb = 1 << 20
	before := heapNow()
	stop := heapPeak()
	attack()
	peak := stop()
	after := heapNow()
	t.Logf("%s: gateway heap before %.1f MB, peak during %.1f MB, after %.1f MB",
		name, float64(before)/mb, float64(peak)/mb, float64(after)/mb)
	require.Less(t, float64(after)-float64(before), 4.0*mb, "%s: the heap returns to within a few MB", name)
}

// attackFor writes chunk to conn (after first) until the gateway closes
// it or budget bytes went out, and reports whether the gateway closed it.
func attackFor(conn net.Conn, first, chunk []byte, budget int) bool {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(first); err != nil {
		return true
	}
	for sent := 0; sent < budget; sent += len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			return true
		}
	}
	return false
}

// TestAttacksLeaveNoMemory runs the attacks of issue 12 items 1 and 2
// against a real gateway and prints its heap before, during and after each:
//
//	go test -run TestAttacksLeaveNoMemory -v ./gateway
func TestAttacksLeaveNoMemory(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	addr := s.gw.WebSocketAddr()
	line := []byte("X-Pad: " + strings.Repeat("p", 1000) + "\r\n")
	chunk := bytes.Repeat(line, 64)
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	parallel := func(n int, one func(i int)) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { one(i) })
		}
		wg.Wait()
	}

	measure(t, "3 upgrades with 20 MiB of X-Pad headers", func() {
		conns := []net.Conn{dial(), dial(), dial()}
		parallel(3, func(i int) {
			conn := conns[i]
			closed := attackFor(conn, []byte(upgradeRequest), chunk, 20<<20)
			if !closed {
				_, _ = conn.Write([]byte("\r\n"))
			}
			resp := make([]byte, 12)
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			n, _ := conn.Read(resp)
			assert.Equal(t, "HTTP/1.1 431", string(resp[:n]))
		})
	})
	measure(t, "20 sockets sending header lines without end", func() {
		conns := make([]net.Conn, 20)
		for i := range conns {
			conns[i] = dial()
		}
		parallel(20, func(i int) {
			assert.True(t, attackFor(conns[i], []byte("GET / HTTP/1.1\r\n"), chunk, 64<<20), "closed by the gateway")
		})
	})
	measure(t, "8 frames whose length has the top bit set", func() {
		ws := make([]*rawWS, 8)
		for i := range ws {
			ws[i] = upgrade(t, addr)
		}
		parallel(8, func(i int) {
			closed := attackFor(ws[i].conn, []byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, chunk, 64<<20)
			assert.True(t, closed, "closed by the gateway")
		})
	})
}
