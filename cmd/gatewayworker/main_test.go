package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// quietLogs keeps the commands' logs out of the test output.
var quietLogs = []string{"--log-level", "error"}

func startRun(t *testing.T, args ...string) (banner string, stop func() error) {
	t.Helper()
	return startCommand(t, append(append([]string{"run", "--nats-port", "0", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"}, quietLogs...), args...)...)
}

// startCommand runs a command that prints a banner ending in "Press
// Ctrl-C" (run, nats) until the test ends or stop is called.
func startCommand(t *testing.T, args ...string) (banner string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out bustest.LogBuffer
	done := make(chan error, 1)
	go func() { done <- dispatch(ctx, args, io.Discard, &out) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Press Ctrl-C") }, 15*time.Second, 10*time.Millisecond)
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not stop", args[0])
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return out.String(), stop
}

// chatLogin logs c in to the chat demo's room 1 as name and waits for the
// chat's login answer.
func chatLogin(t *testing.T, c *websocket.Conn, name string) {
	t.Helper()
	require.NoError(t, c.WriteJSON(map[string]any{"type": "login", "client_name": name, "room_id": 1}))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		require.NoError(t, c.ReadJSON(&m))
		if m["type"] == "login" {
			require.Equal(t, name, m["client_name"])
			return
		}
	}
}

func field(t *testing.T, banner, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(label) + `\s+(\S+)`).FindStringSubmatch(banner)
	require.NotNil(t, m, "no %q in banner:\n%s", label, banner)
	return m[1]
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestRunServesTheChat drives the chat demo the way two browser tabs do:
// page, config, then the workerman-chat protocol over WebSocket.
func TestRunServesTheChat(t *testing.T) {
	banner, stop := startRun(t, "--http", freeAddr(t))
	page := field(t, banner, "chat page")
	ws := field(t, banner, "websocket")

	resp, err := http.Get(page)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `id="messages"`)

	resp, err = http.Get(page + "config.json")
	require.NoError(t, err)
	var cfg struct {
		WSURL string `json:"ws_url"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&cfg))
	resp.Body.Close()
	require.Equal(t, ws, cfg.WSURL)

	origin := http.Header{"Origin": {strings.TrimSuffix(page, "/")}}
	dial := func() *websocket.Conn {
		c, _, err := websocket.DefaultDialer.Dial(ws, origin)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	read := func(c *websocket.Conn) map[string]any { return readJSON(t, c) }
	ann, bob := dial(), dial()
	require.NoError(t, ann.WriteJSON(map[string]any{"type": "login", "client_name": "Ann", "room_id": 1}))
	m := read(ann)
	for m["client_list"] == nil {
		m = read(ann)
	}
	require.Equal(t, "Ann", m["client_name"])
	annID := m["client_id"].(string)

	require.NoError(t, bob.WriteJSON(map[string]any{"type": "login", "client_name": "Bob", "room_id": "1"}))
	m = read(ann)
	require.Equal(t, "login", m["type"])
	require.Equal(t, "Bob", m["client_name"])

	require.NoError(t, bob.WriteJSON(map[string]any{"type": "say", "to_client_id": "all", "to_client_name": "all", "content": "hi all"}))
	m = read(ann)
	require.Equal(t, "say", m["type"])
	require.Equal(t, "hi all", m["content"])
	require.Equal(t, "Bob", m["from_client_name"])

	require.NoError(t, bob.WriteJSON(map[string]any{"type": "say", "to_client_id": annID, "to_client_name": "Ann", "content": "psst"}))
	m = read(ann)
	require.Equal(t, "<b>对你说: </b>psst", m["content"], "workerman-chat's private prefix")
	require.Equal(t, annID, m["to_client_id"])

	_, _, err = websocket.DefaultDialer.Dial(ws, http.Header{"Origin": {"http://evil.example"}})
	require.Error(t, err, "a page from another origin must be refused")

	require.NoError(t, bob.Close())
	m = read(ann)
	require.Equal(t, "logout", m["type"])
	require.Equal(t, "Bob", m["from_client_name"])
	require.NoError(t, stop())
}

func TestPortTakenIsOneLineNamingTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	taken := l.Addr().String()
	for _, tc := range []struct{ flag string }{{"ws"}, {"tcp"}, {"http"}} {
		t.Run(tc.flag, func(t *testing.T) {
			args := append([]string{"run", "--nats-port", "0", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--" + tc.flag, taken}, quietLogs...)
			err := dispatch(context.Background(), args, io.Discard, io.Discard)
			require.Error(t, err)
			require.Contains(t, err.Error(), "--"+tc.flag)
			require.Contains(t, err.Error(), "already in use")
			require.NotContains(t, err.Error(), "\n")
		})
	}
	_, port, _ := net.SplitHostPort(taken)
	err = dispatch(context.Background(), append([]string{"run", "--nats-port", port}, quietLogs...), io.Discard, io.Discard)
	require.ErrorContains(t, err, "--nats-port")
}

func TestHelpIsGroupedByTier(t *testing.T) {
	var out bytes.Buffer
	err := dispatch(context.Background(), []string{"run", "--help"}, &out, io.Discard)
	require.ErrorIs(t, err, flag.ErrHelp)
	for _, group := range []string{"NATS (every tier):", "Gateway tier:", "Worker tier:", "Chat page:", "Logging:"} {
		require.Contains(t, out.String(), group)
	}
	require.Contains(t, out.String(), "GW_PING_INTERVAL")

	out.Reset()
	require.NoError(t, dispatch(context.Background(), []string{"--help"}, &out, io.Discard))
	require.Contains(t, out.String(), "gatewayworker gateway")

	require.ErrorContains(t, dispatch(context.Background(), []string{"fly"}, io.Discard, io.Discard), `unknown command "fly"`)
	require.ErrorContains(t, dispatch(context.Background(), []string{"run", "--app", "nope", "--log-level", "error"}, io.Discard, io.Discard), `--app "nope"`)
	require.ErrorContains(t, dispatch(context.Background(), []string{"worker", "--log-format", "xml"}, io.Discard, io.Discard), "--log-format")
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("GW_TCP_PROTOCOL", "bogus")
	err := dispatch(context.Background(), append([]string{"gateway", "--nats", "nats://127.0.0.1:1"}, quietLogs...), io.Discard, io.Discard)
	require.Error(t, err)
	t.Setenv("GW_MAX_CONNS", "many")
	err = dispatch(context.Background(), []string{"gateway"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "GW_MAX_CONNS")
}

// TestStatusAndMetrics: `status` and /metrics show a running `run` with the
// right connection counts.
func TestStatusAndMetrics(t *testing.T) {
	// The TCP listener on all addresses is listed as reachable ones.
	banner, _ := startRun(t, "--http", freeAddr(t), "--tcp", "0.0.0.0:0")
	page := field(t, banner, "chat page")
	ws := field(t, banner, "websocket")
	natsURL := field(t, banner, "nats")
	origin := http.Header{"Origin": {strings.TrimSuffix(page, "/")}}
	var clients []*websocket.Conn
	for range 2 {
		c, _, err := websocket.DefaultDialer.Dial(ws, origin)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.WriteJSON(map[string]any{"type": "login", "client_name": "x", "room_id": 1}))
		clients = append(clients, c)
	}
	metric := func(name string) float64 {
		resp, err := http.Get(page + "metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				require.NoError(t, err)
				return f
			}
		}
		t.Fatalf("no %s in /metrics", name)
		return 0
	}
	// The logins went from the gateway to the worker and back in memory:
	// nothing else is connected to run's NATS yet.
	require.Eventually(t, func() bool { return metric("gatewayworker_nats_handed_over_total") > 0 }, 10*time.Second, 50*time.Millisecond)

	var report statusReport
	require.Eventually(t, func() bool {
		var out bytes.Buffer
		if err := dispatch(context.Background(), append([]string{"status", "--json", "--nats", natsURL}, quietLogs...), &out, io.Discard); err != nil {
			return false
		}
		report = statusReport{}
		return json.Unmarshal(out.Bytes(), &report) == nil && len(report.Gateways) == 1 && report.Gateways[0].Connections == 2 &&
			len(report.Workers) == 1 && report.Workers[0].Handled >= 4
	}, 10*time.Second, 50*time.Millisecond, "report: %+v", report)
	require.Equal(t, int64(1), report.Gateways[0].Groups)
	require.Contains(t, report.Gateways[0].Addrs, ws)

	var text bytes.Buffer
	require.NoError(t, dispatch(context.Background(), append([]string{"status", "--nats", natsURL}, quietLogs...), &text, io.Discard))
	require.Contains(t, text.String(), "GATEWAYS (1)")
	require.Contains(t, text.String(), "WORKERS (1)")
	require.Contains(t, text.String(), " "+ws+" text://127.0.0.1:", "LISTENS")
	require.NotContains(t, text.String(), "[::]")
	require.NotContains(t, text.String(), "0.0.0.0")

	resp, err := http.Get(page + "metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "gatewayworker_gateway_connections 2")
	require.Contains(t, string(body), `gatewayworker_worker_handler_seconds_count{event="message"}`)
	require.Contains(t, string(body), `gatewayworker_gateway_closed_total{reason="slow consumer"} 0`)
	// Initialised for alert rules, before any handler failed.
	require.Contains(t, string(body), `gatewayworker_worker_handler_errors_total{event="close"} 0`)
	// Overload counters exist at zero before the first event, for alerts.
	require.Contains(t, string(body), `gatewayworker_nats_slow_consumers_total{conn="gateway"} 0`)
	require.Contains(t, string(body), `gatewayworker_nats_slow_consumers_total{conn="worker"} 0`)
	require.Contains(t, string(body), "gatewayworker_gateway_pushes_dropped_total 0")
	require.Contains(t, string(body), "gatewayworker_gateway_replies_dropped_total 0")

	// status, a client of run's NATS from elsewhere, came and went: the
	// chat still works, and hands over again once status is gone.
	before := metric("gatewayworker_nats_handed_over_total")
	require.Eventually(t, func() bool {
		require.NoError(t, clients[0].WriteJSON(map[string]any{"type": "say", "to_client_id": "all", "content": "hi"}))
		for m := readJSON(t, clients[1]); m["type"] != "say"; m = readJSON(t, clients[1]) {
		}
		return metric("gatewayworker_nats_handed_over_total") > before
	}, 10*time.Second, 50*time.Millisecond)
}

func TestHealth(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, dispatch(context.Background(), []string{"health", "--addr", l.Addr().String()}, io.Discard, io.Discard))
	err = dispatch(context.Background(), []string{"health", "--addr", freeAddr(t)}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "unhealthy")
	require.ErrorContains(t, dispatch(context.Background(), []string{"health"}, io.Discard, io.Discard), "--addr is required")
}

// readJSON returns c's next JSON message that is not the chat's
// {"type":"ping"}, waiting at most 5 s.
func readJSON(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		_, b, err := c.ReadMessage()
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m), string(b))
		if m["type"] != "ping" {
			return m
		}
	}
}
