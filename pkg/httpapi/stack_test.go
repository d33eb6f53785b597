package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// testKey is the API key of every test stack.
const testKey = "test-key-0123456789"

// greeter tells each client its id, so the test can name it.
var greeter = worker.Handlers{
	OnConnect: func(ctx context.Context, c *worker.Client) error {
		return c.SendToCurrentClient(ctx, []byte(c.ID()))
	},
	OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
}

// stackConfig adjusts the parts of a test stack.
type stackConfig struct {
	gateway gateway.Config
	api     api.Config
	http    httpapi.Config
}

// stack is a real deployment: embedded NATS, a gateway "gw1", a greeter
// worker, an API client, and the HTTP API on a loopback HTTP server.
type stack struct {
	t   testing.TB
	e   *bus.Embedded
	gw  *gateway.Gateway
	api *api.Client
	// apiBus is the API client's NATS connection.
	apiBus *bus.Conn
	srv    *httptest.Server
}

func newStack(t testing.TB, cfg stackConfig) *stack {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	workertest.Start(t, e, worker.Config{Handlers: greeter})
	if cfg.gateway.ID == "" {
		cfg.gateway.ID = "gw1"
	}
	if cfg.gateway.History == nil {
		cfg.gateway.History = &bus.HistoryConfig{Storage: bus.StorageMemory}
	}
	gw := gatewaytest.Start(t, e, cfg.gateway)
	cfg.api.Bus = bustest.Connect(t, e, bus.Config{Name: "httpapi"})
	cfg.api.Logger = bustest.Logger(t)
	a, err := api.New(cfg.api)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	cfg.http.API = a
	if cfg.http.Keys == nil {
		cfg.http.Keys = []string{testKey}
	}
	cfg.http.Logger = bustest.Logger(t)
	h, err := httpapi.New(cfg.http)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &stack{t: t, e: e, gw: gw, api: a, apiBus: cfg.api.Bus, srv: srv}
}

// dial connects a WebSocket client and returns it with its id. A push to
// everyone made just before may reach the new client ahead of its greeting:
// what is not a client id is skipped.
func (s *stack) dial() (*gatewaytest.WS, string) {
	s.t.Helper()
	c := gatewaytest.DialWS(s.t, s.gw, "/", nil)
	for {
		msg := c.Read(5 * time.Second)
		if _, err := clientid.Gateway(msg); err == nil {
			return c, msg
		}
	}
}

// raw sends a request as given and returns the status, header and body.
func (s *stack) raw(method, path string, body io.Reader, header http.Header) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	require.NoError(s.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.srv.Client().Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, resp.Header, b
}

// call sends body (a string as it is, anything else as JSON) with the
// test key and decodes the JSON answer.
func (s *stack) call(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(s.t, err)
		r = bytes.NewReader(j)
	}
	status, hdr, out := s.raw(method, path, r, http.Header{"Authorization": {"Bearer " + testKey}, "Content-Type": {"application/json"}})
	require.Equal(s.t, "application/json; charset=utf-8", hdr.Get("Content-Type"), "%s %s: %s", method, path, out)
	var m map[string]any
	require.NoError(s.t, json.Unmarshal(out, &m), "%s %s: %s", method, path, out)
	return status, m
}

// ok sends a call that must succeed with status want.
func (s *stack) ok(want int, method, path string, body any) map[string]any {
	s.t.Helper()
	status, m := s.call(method, path, body)
	require.Equal(s.t, want, status, "%s %s: %v", method, path, m)
	return m
}

// fails sends a call that must fail with status and code; it returns the message.
func (s *stack) fails(status int, code, method, path string, body any) string {
	s.t.Helper()
	got, m := s.call(method, path, body)
	require.Equal(s.t, status, got, "%s %s: %v", method, path, m)
	e, ok := m["error"].(map[string]any)
	require.True(s.t, ok, "%s %s: no error object in %v", method, path, m)
	require.Equal(s.t, code, e["code"], "%s %s: %v", method, path, m)
	msg, _ := e["message"].(string)
	require.NotEmpty(s.t, msg)
	return msg
}

func strs(v any) []string {
	out := []string{}
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
