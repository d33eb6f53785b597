package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// client is a plain gorilla client for protocol tests.
type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialClient(t *testing.T, url string) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	return &client{t: t, ws: ws}
}

func (c *client) send(s string) {
	c.t.Helper()
	require.NoError(c.t, c.ws.WriteMessage(websocket.TextMessage, []byte(s)))
}

func (c *client) recv() string {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	mt, b, err := c.ws.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.TextMessage, mt)
	return string(b)
}

// roundTrip sends an echo and waits for it: every frame this client sent
// before has then been handled by the server.
func (c *client) roundTrip(s string) {
	c.t.Helper()
	c.send(s)
	require.Equal(c.t, s, c.recv())
}

func TestRefServerProtocol(t *testing.T) {
	url, srv := startRef(t, refConfig{})
	a, b, c := dialClient(t, url), dialClient(t, url), dialClient(t, url)

	t.Run("echo", func(t *testing.T) {
		for _, m := range []string{"hello", "x:y", "g:nocolon", "", "a", strings.Repeat("z", 70000)} {
			a.send(m)
			require.Equal(t, m, a.recv())
		}
	})
	t.Run("join", func(t *testing.T) {
		a.send("j:room")
		require.Equal(t, "ok", a.recv())
		a.send("j:room") // joining twice is harmless
		require.Equal(t, "ok", a.recv())
		b.send("j:other")
		require.Equal(t, "ok", b.recv())
	})
	t.Run("group", func(t *testing.T) {
		c.send("g:room:hi:there")
		require.Equal(t, "hi:there", a.recv())
		c.roundTrip("sync")
		// b is not in room: its next frame is its own echo.
		b.roundTrip("ping")
		c.send("g:other:for b")
		require.Equal(t, "for b", b.recv())
		c.roundTrip("sync")
		a.roundTrip("ping")
		// A send to a group nobody is in goes nowhere, not back as an echo.
		c.send("g:nobody:x")
		c.roundTrip("sync")
	})
	t.Run("broadcast", func(t *testing.T) {
		a.send("a:all of you")
		for _, cl := range []*client{a, b, c} {
			require.Equal(t, "all of you", cl.recv())
		}
	})
	srv.mu.RLock()
	require.Len(t, srv.all, 3)
	require.Len(t, srv.grps["room"], 1)
	srv.mu.RUnlock()
	require.NoError(t, b.ws.Close())
	waitFor(t, 5*time.Second, func() bool {
		srv.mu.RLock()
		defer srv.mu.RUnlock()
		_, other := srv.grps["other"]
		return len(srv.all) == 2 && !other
	})
}

// TestRefServerDropsSlowClient fills the queue of a member that never
// reads: the server drops it and the others go on.
func TestRefServerDropsSlowClient(t *testing.T) {
	url, srv := startRef(t, refConfig{SendQueue: 1, WriteTimeout: time.Minute})
	// A tiny receive buffer, so what the kernel holds for the slow client
	// is bounded by the server's send buffer (tcp_wmem max, 4 MiB here),
	// not by receive autotuning (up to 32 MiB here).
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	ws, resp, err := d.Dial(url, nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	slow, sender := &client{t: t, ws: ws}, dialClient(t, url)
	slow.send("j:slow")
	require.Equal(t, "ok", slow.recv())
	big := "g:slow:" + strings.Repeat("x", 256<<10)
	// 1 message in the writer, 1 queued, the rest of the 4 MiB in the
	// kernel: the drop comes after about 20; 400 (100 MiB) is the bound.
	for i := 0; i < 400 && srv.drops.Load() == 0; i++ {
		sender.send(big)
	}
	require.Equal(t, int64(1), srv.drops.Load())
	waitFor(t, 5*time.Second, func() bool {
		srv.mu.RLock()
		defer srv.mu.RUnlock()
		return len(srv.all) == 1 && len(srv.grps) == 0
	})
	// leave ran, so the slow client's reader has ended: its socket is
	// closed. The others go on.
	sender.roundTrip("still here")
}

func isTimeout(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}

// TestRefServerStops checks that serve returns, with every connection
// closed, when its context ends.
func TestRefServerStops(t *testing.T) {
	ln := listenLoopback(t)
	s := newRefServer(refConfig{Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	c := dialClient(t, "ws://"+ln.Addr().String()+"/")
	c.roundTrip("hello")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return")
	}
	require.NoError(t, c.ws.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, _, err := c.ws.ReadMessage()
	require.Error(t, err)
	require.False(t, isTimeout(err))
}

func TestReadAll(t *testing.T) {
	for _, n := range []int{0, 1, 1023, 1024, 1025, 100000} {
		src := bytes.Repeat([]byte{'q'}, n)
		got, err := readAll(bytes.NewReader(src), make([]byte, 0, 16))
		require.NoError(t, err)
		require.Equal(t, src, got)
	}
}
