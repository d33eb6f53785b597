package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// benchMembers is the size of the group BenchmarkSendGroup pushes to.
const benchMembers = 10

// BenchmarkSendGroup measures POST /v1/send/group through a real HTTP
// server (loopback, keep-alive), a real NATS server and gateway, to a group
// of benchMembers real WebSocket clients. It waits until every push was
// delivered to every member, and reports requests/s and pushes/s
// (requests × members), deliveries included.
func BenchmarkSendGroup(b *testing.B) {
	s := newStack(b, stackConfig{})
	var delivered atomic.Int64
	for range benchMembers {
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+s.gw.WebSocketAddr()+"/", nil)
		require.NoError(b, err)
		_, id, err := conn.ReadMessage()
		require.NoError(b, err)
		require.NoError(b, s.api.JoinGroup(b.Context(), string(id), "bench"))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
				delivered.Add(1)
			}
		}()
		b.Cleanup(func() { _ = conn.Close(); <-done })
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	body := []byte(`{"group":"bench","data":"0123456789abcdef"}`)
	url := s.srv.URL + "/v1/send/group"

	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest("POST", url, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	want := int64(b.N) * benchMembers
	require.Eventually(b, func() bool { return delivered.Load() >= want }, 30*time.Second, time.Millisecond,
		"delivered %d of %d pushes", delivered.Load(), want)
	elapsed := time.Since(start)
	b.StopTimer()
	require.Equal(b, want, delivered.Load(), "no push delivered twice")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "pushes/s")
}
