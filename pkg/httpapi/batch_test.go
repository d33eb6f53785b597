package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

func TestBatch(t *testing.T) {
	s := newStack(t, stackConfig{})
	a, aID := s.dial()

	m := s.ok(200, "POST", "/v1/batch", map[string]any{"calls": []map[string]any{
		{"method": "POST", "path": "/v1/groups/room-1/join", "body": map[string]any{"client_id": aID}},
		{"method": "POST", "path": "/v1/send/group", "body": map[string]any{"group": "room-1", "data": "welcome"}},
		{"method": "get", "path": "/v1/groups/room-1/count"},
		{"method": "POST", "path": "/v1/send/client", "body": map[string]any{"client_id": "gw1-1-zzz", "data": "x"}},
		{"method": "GET", "path": "/v1/workers?wait=100ms", "body": nil},
		{"method": "GET", "path": "/v1/groups/" + "%E6%88%BF%E9%97%B4" + "/count"},
	}})
	require.Equal(t, "welcome", a.Read(wait))
	results := m["results"].([]any)
	require.Len(t, results, 6)
	var statuses []float64
	for _, r := range results {
		statuses = append(statuses, r.(map[string]any)["status"].(float64))
	}
	require.Equal(t, []float64{200, 202, 200, 404, 200, 200}, statuses)
	require.Equal(t, map[string]any{"ok": true}, results[1].(map[string]any)["body"])
	require.Equal(t, map[string]any{"count": float64(1)}, results[2].(map[string]any)["body"])
	failed := results[3].(map[string]any)["body"].(map[string]any)["error"].(map[string]any)
	require.Equal(t, "client_not_found", failed["code"], "a call that fails while running fails alone")

	require.Equal(t, map[string]any{"results": []any{}}, s.ok(200, "POST", "/v1/batch", `{"calls": []}`))

	for _, tc := range []struct {
		name, body, code, want string
		call                   float64
	}{
		{"malformed call", `{"calls":[{"method":"POST","path":"/v1/send/all","body":{"data":"x"}},{"method":"POST","path":"/v1/send/uid","body":{"uid":7}}]}`, "bad_json", `calls[1] (POST /v1/send/uid): field "uid" must be a string`, 1},
		{"invalid call", `{"calls":[{"method":"POST","path":"/v1/send/client","body":{"client_id":"nope","data":"x"}}]}`, "invalid_argument", "not a client id", 0},
		{"unknown route", `{"calls":[{"method":"GET","path":"/v1/clients/count"},{"method":"GET","path":"/v1/nope"}]}`, "invalid_argument", "no route GET /v1/nope", 1},
		{"wrong method", `{"calls":[{"method":"DELETE","path":"/v1/clients/count"}]}`, "invalid_argument", "not allowed", 0},
		{"odd method", `{"calls":[{"method":"TRACE","path":"/v1/clients/count"}]}`, "invalid_argument", "want GET, POST", 0},
		{"nested batch", `{"calls":[{"method":"POST","path":"/v1/batch","body":{"calls":[]}}]}`, "invalid_argument", "not a batch", 0},
		{"not a path", `{"calls":[{"method":"GET","path":"http://evil.example/v1/clients"}]}`, "invalid_argument", "want a route", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := s.call("POST", "/v1/batch", tc.body)
			require.Equal(t, 400, status, "%v", m)
			e := m["error"].(map[string]any)
			require.Equal(t, tc.code, e["code"])
			require.Contains(t, e["message"], tc.want)
			require.Equal(t, tc.call, e["call"])
		})
	}
	require.Contains(t, s.fails(400, "invalid_argument", "POST", "/v1/batch", `{}`), "calls is required")
	require.Contains(t, s.fails(400, "invalid_argument", "POST", "/v1/batch", batchOf(httpapi.MaxBatchCalls+1)), "at most 100")
	require.Len(t, s.ok(200, "POST", "/v1/batch", batchOf(httpapi.MaxBatchCalls))["results"], httpapi.MaxBatchCalls)
}

func batchOf(n int) string {
	calls := make([]string, n)
	for i := range calls {
		calls[i] = `{"method":"POST","path":"/v1/send/uid","body":{"uid":"nobody","data":"x"}}`
	}
	return `{"calls":[` + strings.Join(calls, ",") + `]}`
}

// compactBatch is n pushes to everyone, in few bytes.
func compactBatch(n int) string {
	calls := make([]string, n)
	for i := range calls {
		calls[i] = `{"method":"POST","path":"/v1/send/all","body":{"data":"r"}}`
	}
	return `{"calls":[` + strings.Join(calls, ",") + `]}`
}

// TestRejectedRequestsNeverReachNATS watches every subject while requests
// are refused for their key, size, JSON, arguments, route or origin, then
// sends one good push: it must be the first message NATS carries.
func TestRejectedRequestsNeverReachNATS(t *testing.T) {
	s := newStack(t, stackConfig{http: httpapi.Config{MaxBodyBytes: 8192}})
	ws, id := s.dial()
	// The worker's acks of the client's connect events are done: from now
	// on, only this test's requests could make NATS traffic.
	require.Eventually(t, func() bool { return s.gw.Stats().PendingAcks == 0 }, wait, time.Millisecond)

	seen := make(chan bus.Msg, 1024)
	watcher := bustest.Connect(t, s.e, bus.Config{Name: "watcher"})
	sub, err := watcher.Subscribe(">", func(m bus.Msg) {
		if !background(m) {
			seen <- m
		}
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, watcher.Flush(t.Context()))

	key := http.Header{"Authorization": {"Bearer " + testKey}}
	send := func(id string) string { return fmt.Sprintf(`{"client_id":%q,"data":"rejected"}`, id) }
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
	}{
		{"no key", "POST", "/v1/send/all", `{"data":"rejected"}`, nil, 401},
		{"wrong key", "POST", "/v1/send/client", send(id), http.Header{"X-Api-Key": {"wrong"}}, 401},
		{"too large", "POST", "/v1/send/all", `{"data":"` + strings.Repeat("x", 9000) + `"}`, key, 413},
		{"too large batch", "POST", "/v1/batch", batchOf(120), key, 413},
		{"malformed json", "POST", "/v1/send/client", `{"client_id":` + id, key, 400},
		{"unknown field", "POST", "/v1/send/client", `{"client":"` + id + `","data":"rejected"}`, key, 400},
		{"bad client id", "POST", "/v1/send/client", send("nope"), key, 400},
		{"no data", "POST", "/v1/send/group", `{"group":"g"}`, key, 400},
		{"unknown route", "POST", "/v1/send/everyone", `{"data":"rejected"}`, key, 404},
		{"wrong method", "PUT", "/v1/send/all", `{"data":"rejected"}`, key, 405},
		{"batch with one bad call", "POST", "/v1/batch", `{"calls":[{"method":"POST","path":"/v1/send/all","body":{"data":"rejected"}},{"method":"POST","path":"/v1/send/all","body":{"data":5}}]}`, key, 400},
		{"batch over the bound", "POST", "/v1/batch", compactBatch(101), key, 400},
		{"nested batch", "POST", "/v1/batch", `{"calls":[{"method":"POST","path":"/v1/batch#x","body":{"calls":[{"method":"POST","path":"/v1/send/all","body":{"data":"rejected"}}]}}]}`, key, 400},
		{"nested batch, escaped", "POST", "/v1/batch", `{"calls":[{"method":"POST","path":"/v1/%62atch","body":{"calls":[{"method":"POST","path":"/v1/send/all","body":{"data":"rejected"}}]}}]}`, key, 400},
		{"cross-origin", "POST", "/v1/send/all", `{"data":"rejected"}`, http.Header{"Authorization": key["Authorization"], "Origin": {"http://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, 403},
	} {
		status, _, body := s.raw(tc.method, tc.path, io.MultiReader(strings.NewReader(tc.body)), tc.header)
		require.Equal(t, tc.status, status, "%s: %s", tc.name, body)
		if tc.status == 413 {
			require.Greater(t, len(tc.body), 8192)
		} else {
			require.LessOrEqual(t, len(tc.body), 8192)
		}
	}

	s.ok(202, "POST", "/v1/send/all", `{"data":"sentinel"}`)
	var m bus.Msg
	select {
	case m = <-seen:
	case <-time.After(wait):
		t.Fatal("the sentinel never reached NATS")
	}
	require.Equal(t, "gw.all", m.Subject, "the first message on NATS is the sentinel")
	var cmd bus.Command
	require.NoError(t, bus.Unmarshal(m.Data, &cmd))
	require.Equal(t, "sentinel", string(cmd.Body))
	require.Equal(t, "sentinel", ws.Read(wait), "no rejected push reached the client")
}

// background reports the traffic the tiers make by themselves, whatever
// the API is asked: heartbeats, presence, worker beats, replies, and the
// reaper's requests for a gateway's client list (which a loaded machine
// may delay past the first acks).
func background(m bus.Msg) bool {
	switch {
	case m.Subject == "gw.hb", m.Subject == "gw.wk.hb", strings.HasPrefix(m.Subject, "gw.pr."), strings.HasPrefix(m.Subject, "_INBOX."):
		return true
	case strings.HasSuffix(m.Subject, ".cmd"):
		var cmd bus.Command
		return bus.UnmarshalCommand(m.Data, &cmd) == nil && cmd.Op == bus.OpClientList
	}
	return false
}
