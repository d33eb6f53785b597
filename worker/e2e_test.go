package worker_test

import (
	"context"
	"fmt"
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

const (
	wait  = 5 * time.Second
	quiet = 150 * time.Millisecond
)

// recorder is a worker app for tests. It greets each client with "id:<id>"
// so the test learns the id, echoes "echo:..." messages, stores "sess:k=v"
// in the session, and records every event.
type recorder struct {
	mu     sync.Mutex
	events map[string][]string
	closes chan closeSeen
}

type closeSeen struct {
	id     string
	reason bus.CloseReason
}

func newRecorder() *recorder {
	return &recorder{events: map[string][]string{}, closes: make(chan closeSeen, 1000)}
}

func (r *recorder) add(id, ev string) {
	r.mu.Lock()
	r.events[id] = append(r.events[id], ev)
	r.mu.Unlock()
}

func (r *recorder) of(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events[id]...)
}

func (r *recorder) handlers() worker.Handlers {
	return worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			r.add(c.ID(), "connect")
			return c.SendToCurrentClient(ctx, []byte("id:"+c.ID()))
		},
		OnWebSocketConnect: func(_ context.Context, c *worker.Client, e worker.WebSocketConnectEvent) error {
			r.add(c.ID(), "ws "+e.Path+"?"+e.Query+" "+e.Header.Get("X-Test"))
			return nil
		},
		OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
			msg := string(e.Data)
			r.add(c.ID(), "msg "+msg)
			switch {
			case strings.HasPrefix(msg, "echo:"):
				return c.SendToCurrentClient(ctx, e.Data)
			case strings.HasPrefix(msg, "sess:"):
				k, v, _ := strings.Cut(msg[5:], "=")
				c.Session()[k] = v
			case msg == "whoami":
				return c.SendToCurrentClient(ctx, []byte(fmt.Sprintf("uid=%s addr=%t", c.UID(), c.RemoteAddr() != "")))
			}
			return nil
		},
		OnClose: func(_ context.Context, c *worker.Client, e worker.CloseEvent) error {
			r.add(c.ID(), "close "+e.Reason.String())
			r.closes <- closeSeen{c.ID(), e.Reason}
			return nil
		},
	}
}

func (r *recorder) waitClose(t *testing.T, id string) bus.CloseReason {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case c := <-r.closes:
			if c.id == id {
				return c.reason
			}
		case <-deadline:
			t.Fatalf("no close event for %s; events: %v", id, r.of(id))
		}
	}
}

type stack struct {
	nats *bus.Embedded
	gw   *gateway.Gateway
	api  *api.Client
	rec  *recorder
	// pingData is the gateway's data ping, which may reach a client before the worker's hello.
	pingData string
}

func startStack(t *testing.T, gwCfg gateway.Config) *stack {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	rec := newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers()})
	gw := gatewaytest.Start(t, e, gwCfg)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{Name: "api"})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &stack{nats: e, gw: gw, api: a, rec: rec, pingData: string(gwCfg.PingData)}
}

// peer is a test client over either transport.
type peer interface {
	Send(string)
	Read(time.Duration) string
}

type silentPeer interface {
	peer
	ExpectSilence(time.Duration)
}

func dial(t *testing.T, s *stack, transport string) (silentPeer, string) {
	t.Helper()
	var p silentPeer
	if transport == "ws" {
		p = gatewaytest.DialWS(t, s.gw, "/", nil)
	} else {
		p = gatewaytest.DialTCP(t, s.gw)
	}
	hello := p.Read(wait)
	for s.pingData != "" && hello == s.pingData {
		hello = p.Read(wait)
	}
	require.True(t, strings.HasPrefix(hello, "id:"), hello)
	return p, strings.TrimPrefix(hello, "id:")
}

func TestEveryAPICall(t *testing.T) {
	for _, transport := range []string{"ws", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s := startStack(t, gateway.Config{})
			ctx := context.Background()
			a, idA := dial(t, s, transport)
			b, idB := dial(t, s, transport)
			c, idC := dial(t, s, transport)

			t.Run("SendToClient", func(t *testing.T) {
				require.NoError(t, s.api.SendToClient(ctx, idA, []byte("to a")))
				require.Equal(t, "to a", a.Read(wait))
				b.ExpectSilence(quiet)
				err := s.api.SendToClient(ctx, s.gw.ID()+"-1-zzzz", []byte("x"))
				require.ErrorIs(t, err, api.ErrClientNotFound)
				err = s.api.SendToClient(ctx, "nogateway-1-1", []byte("x"))
				require.ErrorIs(t, err, api.ErrClientNotFound)
				require.ErrorIs(t, s.api.SendToClient(ctx, "garbage", nil), api.ErrInvalidClientID)
			})
			t.Run("SendToCurrentClient", func(t *testing.T) {
				a.Send("echo:hi")
				require.Equal(t, "echo:hi", a.Read(wait))
			})
			t.Run("BindUID and SendToUID", func(t *testing.T) {
				require.NoError(t, s.api.BindUID(ctx, idA, "u1"))
				require.NoError(t, s.api.BindUID(ctx, idB, "u1"))
				require.NoError(t, s.api.SendToUID(ctx, "u1", []byte("to u1")))
				require.Equal(t, "to u1", a.Read(wait))
				require.Equal(t, "to u1", b.Read(wait))
				c.ExpectSilence(quiet)
				a.Send("whoami")
				require.Equal(t, "uid=u1 addr=true", a.Read(wait))

				require.NoError(t, s.api.UnbindUID(ctx, idB, "u1"))
				require.NoError(t, s.api.SendToUID(ctx, "u1", []byte("again")))
				require.Equal(t, "again", a.Read(wait))
				b.ExpectSilence(quiet)
				require.ErrorIs(t, s.api.BindUID(ctx, idA, ""), api.ErrInvalidName)
			})
			t.Run("groups", func(t *testing.T) {
				require.NoError(t, s.api.JoinGroup(ctx, idA, "g"))
				require.NoError(t, s.api.JoinGroup(ctx, idC, "g"))
				require.NoError(t, s.api.SendToGroup(ctx, "g", []byte("g1"), idC))
				require.Equal(t, "g1", a.Read(wait))
				c.ExpectSilence(quiet)
				b.ExpectSilence(quiet)

				ids, err := s.api.GetClientIDListByGroup(ctx, "g")
				require.NoError(t, err)
				require.ElementsMatch(t, []string{idA, idC}, ids)

				require.NoError(t, s.api.LeaveGroup(ctx, idA, "g"))
				require.NoError(t, s.api.SendToGroup(ctx, "g", []byte("g2")))
				require.Equal(t, "g2", c.Read(wait))
				a.ExpectSilence(quiet)

				require.NoError(t, s.api.Ungroup(ctx, "g"))
				require.Eventually(t, func() bool {
					n, err := s.api.GetClientCountByGroup(ctx, "g")
					return err == nil && n == 0
				}, wait, 10*time.Millisecond)
				require.NoError(t, s.api.SendToGroup(ctx, "g", []byte("g3")))
				c.ExpectSilence(quiet)
			})
			t.Run("SendToAll", func(t *testing.T) {
				require.NoError(t, s.api.SendToAll(ctx, []byte("all"), idB))
				require.Equal(t, "all", a.Read(wait))
				require.Equal(t, "all", c.Read(wait))
				b.ExpectSilence(quiet)
			})
			t.Run("sessions", func(t *testing.T) {
				require.NoError(t, s.api.SetSession(ctx, idA, map[string]any{"name": "Ann", "n": 1}))
				sess, err := s.api.GetSession(ctx, idA)
				require.NoError(t, err)
				require.Equal(t, map[string]any{"name": "Ann", "n": int64(1)}, sess)

				require.NoError(t, s.api.UpdateSession(ctx, idA, map[string]any{"age": 3, "name": nil}))
				sess, err = s.api.GetSession(ctx, idA)
				require.NoError(t, err)
				require.Equal(t, map[string]any{"n": int64(1), "age": int64(3)}, sess)

				a.Send("sess:room=7")
				a.Send("echo:synced") // handled after the session change was acknowledged
				require.Equal(t, "echo:synced", a.Read(wait))
				require.Eventually(t, func() bool {
					sess, err := s.api.GetSession(ctx, idA)
					return err == nil && sess["room"] == "7" && sess["age"] == int64(3)
				}, wait, 10*time.Millisecond)

				_, err = s.api.GetSession(ctx, s.gw.ID()+"-1-zzzz")
				require.ErrorIs(t, err, api.ErrClientNotFound)
			})
			t.Run("IsOnline CloseClient DestroyClient", func(t *testing.T) {
				on, err := s.api.IsOnline(ctx, idA)
				require.NoError(t, err)
				require.True(t, on)

				require.NoError(t, s.api.CloseClient(ctx, idA, []byte("bye")))
				require.Equal(t, "bye", a.Read(wait))
				require.Equal(t, bus.ClosedByAPI, s.rec.waitClose(t, idA))
				on, err = s.api.IsOnline(ctx, idA)
				require.NoError(t, err)
				require.False(t, on)

				require.NoError(t, s.api.DestroyClient(ctx, idB))
				require.Equal(t, bus.ClosedByAPI, s.rec.waitClose(t, idB))
				require.ErrorIs(t, s.api.DestroyClient(ctx, idB), api.ErrClientNotFound)

				n, err := s.api.GetAllClientIDCount(ctx)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				_ = c
			})
		})
	}
}

func TestEventsOfOneClientInOrder(t *testing.T) {
	s := startStack(t, gateway.Config{WebSocketPath: "/chat"})
	_, err := gatewaytest.TryDialWS(s.gw, "/other", nil)
	require.ErrorContains(t, err, "bad handshake")
	p := gatewaytest.DialWS(t, s.gw, "/chat?room=1", map[string][]string{"X-Test": {"yes"}})
	id := strings.TrimPrefix(p.Read(wait), "id:")
	p.Send("one")
	p.Send("echo:two")
	require.Equal(t, "echo:two", p.Read(wait))
	require.NoError(t, p.Conn.Close())
	require.Equal(t, bus.CloseClientClosed, s.rec.waitClose(t, id))
	require.Equal(t, []string{"connect", "ws /chat?room=1 yes", "msg one", "msg echo:two", "close client closed"}, s.rec.of(id))
}
