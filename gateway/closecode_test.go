package gateway_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// codeStack is a gateway the test can stop, an API client and, unless
// noWorker, a worker that greets each client with its id and ignores its
// messages.
type codeStack struct {
	gw   *gateway.Gateway
	api  *api.Client
	stop func()
}

func startCodeStack(t *testing.T, cfg gateway.Config, noWorker bool) *codeStack {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	if !noWorker {
		workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
			OnConnect: func(ctx context.Context, c *worker.Client) error {
				return c.SendToCurrentClient(ctx, []byte(c.ID()))
			},
			OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
		}})
	}
	cfg.Bus = bustest.Connect(t, e, bus.Config{Name: "gateway"})
	cfg.WebSocketAddr = "127.0.0.1:0"
	cfg.DrainTimeout = time.Second
	cfg.Logger = bustest.Logger(t)
	g, err := gateway.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() { // safe in any goroutine
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(2 * wait):
				t.Error("gateway did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(2 * wait):
		t.Fatal("gateway not ready")
	}
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &codeStack{gw: g, api: a, stop: stop}
}

// dialCode dials s's gateway and, when greeted, reads the client's id.
func (s *codeStack) dial(t *testing.T, greeted bool) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait}
	c, _, err := d.Dial("ws://"+s.gw.WebSocketAddr()+"/", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	if !greeted {
		return c, ""
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, id, err := c.ReadMessage()
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Time{})
	return c, string(id)
}

// readClose reads c until the gateway closes it and returns the close
// frame's code and text, and the messages that came before it.
func readClose(t *testing.T, c *websocket.Conn) (code int, text string, msgs []string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * wait))
	for {
		_, m, err := c.ReadMessage()
		if err == nil {
			msgs = append(msgs, string(m))
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended without a close frame: %v (after %d messages)", err, len(msgs))
		}
		return ce.Code, ce.Text, msgs
	}
}

// TestCloseCodes: for each close reason a test can cause, a real WebSocket
// client reads the close code and text of the table (bus.CloseReason.WSCode),
// and the gateway counts the close under that reason.
func TestCloseCodes(t *testing.T) {
	ctx := context.Background()
	big := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name     string
		cfg      gateway.Config
		noWorker bool
		// cause makes the gateway close c (whose id is id) and returns the
		// connection that should read the close frame.
		cause    func(t *testing.T, s *codeStack, c *websocket.Conn, id string) *websocket.Conn
		want     bus.CloseReason
		wantCode int
		wantText string
		// last is a message that must come just before the close frame.
		last string
	}{{
		name: "kicked",
		cause: func(t *testing.T, s *codeStack, c *websocket.Conn, id string) *websocket.Conn {
			require.NoError(t, s.api.CloseClient(ctx, id, []byte("bye")))
			return c
		},
		want: bus.ClosedByAPI, wantCode: 4500, wantText: "kicked", last: "bye",
	}, {
		name: "message too large",
		cfg:  gateway.Config{MaxMessageSize: 1024},
		cause: func(t *testing.T, _ *codeStack, c *websocket.Conn, _ string) *websocket.Conn {
			require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(big)))
			return c
		},
		want: bus.CloseMessageTooLarge, wantCode: 4503, wantText: "message too large",
	}, {
		name: "rate limited",
		cfg:  gateway.Config{MaxMessagesPerSecond: 10},
		cause: func(t *testing.T, _ *codeStack, c *websocket.Conn, _ string) *websocket.Conn {
			for range 100 {
				if c.WriteMessage(websocket.TextMessage, []byte("hi")) != nil {
					break // closed under us
				}
			}
			return c
		},
		want: bus.CloseRateLimited, wantCode: 4004, wantText: "rate limited",
	}, {
		name: "slow consumer",
		cfg:  gateway.Config{SendQueueLimit: 1024},
		cause: func(t *testing.T, s *codeStack, c *websocket.Conn, _ string) *websocket.Conn {
			require.NoError(t, s.api.SendToAll(ctx, []byte(big))) // more than the queue may hold
			return c
		},
		want: bus.CloseSlowConsumer, wantCode: 4002, wantText: "slow consumer",
	}, {
		name: "slow consumer, sent by id",
		cfg:  gateway.Config{SendQueueLimit: 1024},
		cause: func(t *testing.T, s *codeStack, c *websocket.Conn, id string) *websocket.Conn {
			_ = s.api.SendToClient(ctx, id, []byte(big)) // the client is closed: not found
			return c
		},
		want: bus.CloseSlowConsumer, wantCode: 4002, wantText: "slow consumer",
	}, {
		name: "heartbeat timeout",
		// Two intervals leave the worker time to greet the client first, even under -race on a loaded box.
		cfg: gateway.Config{PingInterval: 200 * time.Millisecond, PingNotResponseLimit: 1, PingData: []byte("ping")},
		cause: func(*testing.T, *codeStack, *websocket.Conn, string) *websocket.Conn {
			return nil // the client stays silent
		},
		want: bus.CloseHeartbeatTimeout, wantCode: 4006, wantText: "heartbeat timeout",
	}, {
		name: "gateway shutdown",
		cause: func(_ *testing.T, s *codeStack, c *websocket.Conn, _ string) *websocket.Conn {
			go s.stop()
			return c
		},
		want: bus.CloseGatewayShutdown, wantCode: 4000, wantText: "gateway shutdown",
	}, {
		// No worker acknowledges the connect event: messages pile up.
		name:     "event queue full",
		cfg:      gateway.Config{MaxMessageSize: 1024, MaxPendingEventBytes: 1024},
		noWorker: true,
		cause: func(t *testing.T, _ *codeStack, c *websocket.Conn, _ string) *websocket.Conn {
			for range 10 {
				if c.WriteMessage(websocket.TextMessage, []byte(big[:1000])) != nil {
					break
				}
			}
			return c
		},
		want: bus.CloseEventQueueFull, wantCode: 4005, wantText: "event queue full",
	}, {
		name: "server full",
		cfg:  gateway.Config{MaxConnections: 1},
		cause: func(t *testing.T, s *codeStack, _ *websocket.Conn, _ string) *websocket.Conn {
			second, _ := s.dial(t, false)
			return second
		},
		want: bus.CloseServerFull, wantCode: 4003, wantText: "server full",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.wantCode, tc.want.WSCode(), "the table in bus")
			require.Equal(t, tc.wantText, tc.want.WSText(), "the table in bus")
			s := startCodeStack(t, tc.cfg, tc.noWorker)
			c, id := s.dial(t, !tc.noWorker)
			if got := tc.cause(t, s, c, id); got != nil {
				c = got
			}
			code, text, msgs := readClose(t, c)
			require.Equal(t, tc.wantCode, code, "close code (text %q)", text)
			require.Equal(t, tc.wantText, text)
			if tc.last != "" {
				require.NotEmpty(t, msgs)
				require.Equal(t, tc.last, msgs[len(msgs)-1])
			}
			require.Eventually(t, func() bool { return s.gw.Stats().Closed[tc.want] > 0 }, wait, 10*time.Millisecond,
				"Stats.Closed counts the close under %v", tc.want)
		})
	}
}
