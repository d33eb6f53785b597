package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// run's token files (localTokenFile) go to a directory of this test run,
	dir, err := os.MkdirTemp("", "gw-cmd-test-")
	if err != nil {
		panic(err)
	}
	_ = os.Setenv("XDG_RUNTIME_DIR", dir)
	// and the JetStream directories of embedded servers on a fixed port.
	_ = os.Setenv("XDG_STATE_HOME", dir)
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) // nbio starts pool goroutines at init
}

// startAPI runs `gatewayworker api` with args until the test ends and
// returns its base URL, read from the line it prints.
func startAPI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out bustest.LogBuffer
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, append(append([]string{"api"}, quietLogs...), args...), &out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("api did not stop")
		}
	})
	line := regexp.MustCompile(`gatewayworker api: (http://\S+)/v1/ `)
	var base string
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("api stopped: %v", err)
		default:
		}
		m := line.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 15*time.Second, 10*time.Millisecond)
	return base
}

// TestAPICommandPushesToAChatClient runs `api` against the embedded NATS of
// a `run`, logs a chat client in and pushes to it over HTTP.
func TestAPICommandPushesToAChatClient(t *testing.T) {
	banner, _ := startRun(t, "--http", "")
	natsURL := field(t, banner, "nats")
	ws := field(t, banner, "websocket")

	err := dispatch(context.Background(), append([]string{"api", "--nats", natsURL, "--listen", "0.0.0.0:0"}, quietLogs...), io.Discard, io.Discard)
	require.ErrorContains(t, err, "without --keys")
	require.ErrorContains(t, dispatch(context.Background(), append([]string{"api", "--listen", ":0"}, quietLogs...), io.Discard, io.Discard), "without --keys")

	t.Setenv("GW_KEYS", "first-key, second-key")
	base := startAPI(t, "--nats", natsURL, "--listen", "127.0.0.1:0")

	c, _, err := websocket.DefaultDialer.Dial(ws, nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WriteJSON(map[string]any{"type": "login", "client_name": "Ann", "room_id": 1}))
	read := func() map[string]any { return readJSON(t, c) }
	m := read()
	for m["client_list"] == nil {
		m = read()
	}
	id := m["client_id"].(string)

	post := func(key, path, body string) (int, string) {
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := post("wrong", "/v1/send/client", `{"client_id":"`+id+`","data":"x"}`)
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, body = post("second-key", "/v1/send/client", `{"client_id":"`+id+`","data":"{\"type\":\"notice\",\"content\":\"hello over http\"}"}`)
	require.Equal(t, http.StatusAccepted, status, body)
	m = read()
	require.Equal(t, "notice", m["type"])
	require.Equal(t, "hello over http", m["content"])

	// The chat put the client in group "1" (its room): a query agrees.
	req, err := http.NewRequest("GET", base+"/v1/groups/1/clients", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", "first-key")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		ClientIDs []string `json:"client_ids"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	require.Equal(t, []string{id}, list.ClientIDs)
}

// TestAPIWithoutKeysServesLoopbackNamesOnly: with no key, a request whose
// Host is not a loopback name (DNS rebinding) is refused.
func TestAPIWithoutKeysServesLoopbackNamesOnly(t *testing.T) {
	banner, _ := startRun(t, "--http", "")
	base := startAPI(t, "--nats", field(t, banner, "nats"), "--listen", "127.0.0.1:0")
	get := func(host string) int {
		req, err := http.NewRequest("GET", base+"/v1/clients/count", nil)
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get(""))
	require.Equal(t, http.StatusOK, get("localhost:8081"))
	require.Equal(t, http.StatusForbidden, get("rebound.example:8081"))
}
