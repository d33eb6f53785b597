package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// TestEmbeddedNATSRequiresTheLocalToken: run's embedded NATS refuses a
// client without credentials (any local user could otherwise read client
// traffic, push and forge events); a worker started beside run reads the
// token from run's file (0600) and works; the file goes when run stops.
func TestEmbeddedNATSRequiresTheLocalToken(t *testing.T) {
	banner, stop := startRun(t, "--http", freeAddr(t))
	natsURL := field(t, banner, "nats")
	ws := field(t, banner, "websocket")
	page := field(t, banner, "chat page")

	short, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := bus.Connect(short, bus.Config{URLs: []string{natsURL}, MaxReconnects: 1})
	require.ErrorContains(t, err, "Authorization Violation", "a local client without the token")

	port, ok := loopbackPort(natsURL)
	require.True(t, ok)
	path, err := localTokenFile(port)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	dir, err := os.Stat(strings.TrimSuffix(path, "/"+st.Name()))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dir.Mode().Perm())
	require.Contains(t, banner, "token in "+path, "run says where the token is")

	ctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- dispatch(ctx, append([]string{"worker", "--nats", natsURL, "--app", "chat"}, quietLogs...), io.Discard, io.Discard)
	}()
	require.Eventually(t, func() bool {
		out := &bustest.LogBuffer{}
		if dispatch(context.Background(), append([]string{"status", "--json", "--nats", natsURL}, quietLogs...), out, io.Discard) != nil {
			return false
		}
		var r statusReport
		return json.Unmarshal([]byte(out.String()), &r) == nil && len(r.Workers) == 2
	}, 15*time.Second, 50*time.Millisecond, "status sees run's worker and the one beside it")

	// The chat works with both workers taking events.
	c, _, err := websocket.DefaultDialer.Dial(ws, http.Header{"Origin": {strings.TrimSuffix(page, "/")}})
	require.NoError(t, err)
	defer c.Close()
	chatLogin(t, c, "Ann")
	stopWorker()
	require.NoError(t, <-workerDone)
	require.NoError(t, stop())
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "run removes its token file")
}

// TestAPIRefusesShortKeysBeyondLoopback: a key anyone could guess is
// refused when the API listens beyond loopback, before anything starts.
func TestAPIRefusesShortKeysBeyondLoopback(t *testing.T) {
	api := func(listen, keys string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return dispatch(ctx, append([]string{"api", "--nats", "nats://127.0.0.1:1", "--nats-wait", "0s", "--listen", listen, "--keys", keys}, quietLogs...), io.Discard, io.Discard)
	}
	err := api("0.0.0.0:0", "0123456789abcdef,short")
	require.ErrorContains(t, err, "key 2 is 5 bytes")
	require.NotContains(t, err.Error(), "short", "the key is not printed")
	for _, ok := range []struct{ listen, keys string }{{"0.0.0.0:0", "0123456789abcdef"}, {"127.0.0.1:0", "short"}} {
		err := api(ok.listen, ok.keys)
		require.ErrorContains(t, err, "connect", "%v passes the key check and fails on the unreachable NATS", ok)
	}
}

// TestProfilerOnlyOnMetrics: the chat page's port serves /metrics but not
// Go's profiler (a browser reaches that port); --metrics serves both.
func TestProfilerOnlyOnMetrics(t *testing.T) {
	metricsAddr := freeAddr(t)
	banner, _ := startRun(t, "--http", freeAddr(t), "--metrics", metricsAddr)
	page := field(t, banner, "chat page")
	status := func(url string) int {
		resp, err := http.Get(url)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, status(page+"metrics"))
	require.NotEqual(t, http.StatusOK, status(page+"debug/pprof/"), "the profiler on the chat page")
	require.NotEqual(t, http.StatusOK, status(page+"debug/pprof/symbol"))
	require.Equal(t, http.StatusOK, status("http://"+metricsAddr+"/debug/pprof/"))
}

// TestEmbeddedNATSWithAGivenToken: --nats-token keeps working, for run
// and beside it, and then no token file is written.
func TestEmbeddedNATSWithAGivenToken(t *testing.T) {
	banner, _ := startRun(t, "--http", "", "--nats-token", "given-token-0123456789")
	natsURL := field(t, banner, "nats")
	port, _ := loopbackPort(natsURL)
	path, err := localTokenFile(port)
	require.NoError(t, err)
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
	status := func(args ...string) error {
		return dispatch(context.Background(), append(append([]string{"status", "--nats", natsURL}, args...), quietLogs...), io.Discard, io.Discard)
	}
	require.Error(t, status("--nats-wait", "0s"), "without the token (refused at once, not after --nats-wait's 30 s of retries)")
	require.NoError(t, status("--nats-token", "given-token-0123456789"))
}
