package httpapi_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

// errorOf decodes an error body and returns its code and message.
func errorOf(t *testing.T, body []byte) (code, message string) {
	t.Helper()
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &eb), string(body))
	return eb.Error.Code, eb.Error.Message
}

func TestAuthentication(t *testing.T) {
	s := newStack(t, stackConfig{http: httpapi.Config{Keys: []string{"first-key", testKey}}})
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no key", nil, 401},
		{"wrong bearer", http.Header{"Authorization": {"Bearer nope"}}, 401},
		{"prefix of a key", http.Header{"Authorization": {"Bearer " + testKey[:5]}}, 401},
		{"wrong x-api-key", http.Header{"X-Api-Key": {"nope"}}, 401},
		{"basic scheme", http.Header{"Authorization": {"Basic " + testKey}}, 401},
		{"bearer", http.Header{"Authorization": {"Bearer " + testKey}}, 200},
		{"bearer lower case", http.Header{"Authorization": {"bearer first-key"}}, 200},
		{"x-api-key", http.Header{"X-Api-Key": {testKey}}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := s.raw("GET", "/v1/clients/count", nil, tc.header)
			require.Equal(t, tc.want, status, string(body))
			require.Equal(t, "application/json; charset=utf-8", hdr.Get("Content-Type"))
			if tc.want == 401 {
				require.Equal(t, `Bearer realm="gatewayworker"`, hdr.Get("WWW-Authenticate"))
				code, msg := errorOf(t, body)
				require.Equal(t, "unauthorized", code)
				require.NotContains(t, msg, testKey)
			}
		})
	}
	// Unknown routes are not revealed without a key.
	status, _, _ := s.raw("GET", "/v1/nope", nil, nil)
	require.Equal(t, 401, status)
}

func TestErrorAnswers(t *testing.T) {
	s := newStack(t, stackConfig{
		gateway: gateway.Config{MaxGroupsPerClient: 1},
		api:     api.Config{RequestTimeout: 300 * time.Millisecond},
		http:    httpapi.Config{MaxBodyBytes: 1024},
	})
	_, id := s.dial()
	auth := http.Header{"Authorization": {"Bearer " + testKey}}

	t.Run("unknown route", func(t *testing.T) {
		msg := s.fails(404, "not_found", "GET", "/v1/nope", nil)
		require.Contains(t, msg, "/v1/nope")
		s.fails(404, "not_found", "GET", "/v1/groups//clients", nil)
		s.fails(404, "not_found", "POST", "/v2/send/all", `{"data":"x"}`)
	})
	t.Run("method not allowed", func(t *testing.T) {
		status, hdr, body := s.raw("GET", "/v1/send/all", nil, auth)
		require.Equal(t, 405, status)
		require.Equal(t, "POST", hdr.Get("Allow"))
		code, _ := errorOf(t, body)
		require.Equal(t, "method_not_allowed", code)
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"data":"` + strings.Repeat("x", 2000) + `"}`
		s.fails(413, "body_too_large", "POST", "/v1/send/all", big)
		// Without Content-Length the limit holds while reading.
		status, _, body := s.raw("POST", "/v1/send/all", io.MultiReader(strings.NewReader(big)), auth)
		require.Equal(t, 413, status)
		code, _ := errorOf(t, body)
		require.Equal(t, "body_too_large", code)
	})
	t.Run("bad json", func(t *testing.T) {
		for _, tc := range []struct{ body, want string }{
			{`{"client_id": 5, "data": "x"}`, `field "client_id" must be a string, not a number`},
			{`{"group": "g", "data": "x", "exclude": "not-a-list"}`, `field "exclude" must be an array of strings`},
			{`{"client_id" "x"}`, "malformed JSON at byte"},
			{`{"client_id": "x", `, "truncated"},
			{`{"clientid": "x", "data": "y"}`, `unknown field "clientid"`},
			{`["x"]`, "must be a JSON object, not an array"},
			{`{"data": "x"} {"data": "y"}`, "unexpected data after the JSON object"},
		} {
			path := "/v1/send/client"
			if strings.Contains(tc.body, "group") {
				path = "/v1/send/group"
			}
			require.Contains(t, s.fails(400, "bad_json", "POST", path, tc.body), tc.want, tc.body)
		}
	})
	t.Run("invalid argument", func(t *testing.T) {
		for _, tc := range []struct{ method, path, body, want string }{
			{"POST", "/v1/send/client", `{"client_id": "not an id", "data": "x"}`, "not a client id"},
			{"POST", "/v1/send/client", `{"data": "x"}`, "client_id is required"},
			{"POST", "/v1/send/client", `{"client_id": "` + id + `"}`, "data"},
			{"POST", "/v1/send/all", `{"data": "x", "data_base64": "eA=="}`, "not both"},
			{"POST", "/v1/send/all", `{"data_base64": "!!!"}`, "not base64"},
			{"POST", "/v1/send/uid", `{"uid": "", "data": "x"}`, "uid is required"},
			{"POST", "/v1/send/group", `{"group": "` + strings.Repeat("g", 257) + `", "data": "x"}`, "at most 256"},
			{"GET", "/v1/groups/%FF/count", "", "not UTF-8"},
			{"GET", "/v1/clients/nope/session", "", "not a client id"},
			{"PUT", "/v1/clients/" + id + "/session", `{}`, "session is required"},
			{"PUT", "/v1/clients/" + id + "/session", `{"session": {"n": 1e999}}`, "out of range"},
			{"GET", "/v1/workers?wait=forever", "", "wait"},
		} {
			require.Contains(t, s.fails(400, "invalid_argument", tc.method, tc.path, tc.body), tc.want, tc.path)
		}
	})
	t.Run("client not found", func(t *testing.T) {
		// A gateway that is not running, and a client its gateway no longer has.
		s.fails(404, "client_not_found", "POST", "/v1/send/client", `{"client_id": "gone-1-1", "data": "x"}`)
		s.fails(404, "client_not_found", "GET", "/v1/clients/gw1-1-zzz/session", nil)
		s.fails(404, "client_not_found", "POST", "/v1/groups/g/join", `{"client_id": "gw1-1-zzz"}`)
		require.Equal(t, false, s.ok(200, "GET", "/v1/clients/gw1-1-zzz/online", nil)["online"])
	})
	t.Run("limit exceeded", func(t *testing.T) {
		s.ok(200, "POST", "/v1/groups/one/join", map[string]any{"client_id": id})
		s.fails(409, "limit_exceeded", "POST", "/v1/groups/two/join", map[string]any{"client_id": id})
	})
	t.Run("gateway unavailable", func(t *testing.T) {
		// A gateway that takes commands but never answers (frozen).
		frozen := bustest.Connect(t, s.e, bus.Config{})
		sub, err := frozen.Subscribe("gw.frozen.cmd", func(bus.Msg) {})
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
		require.NoError(t, frozen.Flush(t.Context()))
		s.fails(503, "gateway_unavailable", "POST", "/v1/send/client", `{"client_id": "frozen-1-1", "data": "x"}`)
	})
	t.Run("internal", func(t *testing.T) {
		// A session value that JSON cannot carry, written by a Go program.
		require.NoError(t, s.api.SetSession(t.Context(), id, map[string]any{"x": math.NaN()}))
		s.fails(500, "internal", "GET", "/v1/clients/"+id+"/session", nil)
	})
	t.Run("cross-origin browser request", func(t *testing.T) {
		h := http.Header{"Authorization": auth["Authorization"], "Sec-Fetch-Site": {"cross-site"}}
		status, _, body := s.raw("POST", "/v1/send/all", strings.NewReader(`{"data":"x"}`), h)
		require.Equal(t, 403, status)
		code, _ := errorOf(t, body)
		require.Equal(t, "forbidden", code)
	})
}

// TestPartialResult: a gateway that vanished without a goodbye makes
// queries answer 200 in bounded time, marked partial and naming it.
func TestPartialResult(t *testing.T) {
	s := newStack(t, stackConfig{api: api.Config{QueryTimeout: 300 * time.Millisecond}})
	s.dial()
	doomedBus := bustest.Connect(t, s.e, bus.Config{})
	doomed := gatewaytest.Start(t, s.e, gateway.Config{ID: "doomed", Bus: doomedBus})
	c := gatewaytest.DialWS(t, doomed, "/", nil)
	c.Read(wait)
	m := s.ok(200, "GET", "/v1/clients/count", nil)
	require.EqualValues(t, 2, m["count"])
	require.NotContains(t, m, "partial")

	doomedBus.Close()
	start := time.Now()
	m = s.ok(200, "GET", "/v1/clients/count", nil)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, map[string]any{"count": float64(1), "partial": true, "missing": []any{"doomed"}}, m)
	m = s.ok(200, "GET", "/v1/groups/nobody/clients", nil)
	require.Equal(t, map[string]any{"client_ids": []any{}, "partial": true, "missing": []any{"doomed"}}, m)
}
