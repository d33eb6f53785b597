package gateway_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
)

// BenchmarkBroadcast is one broadcast of 1 KB through the fanout to 100
// real WebSocket clients that read as fast as they can. The publisher keeps
// at most broadcastWindow broadcasts ahead of the slowest client, as a
// sender that watches its clients would: the figure is the sustained rate,
// not how fast NATS and the gateway can buffer.
func BenchmarkBroadcast(b *testing.B) {
	const clients, broadcastWindow = 100, 256
	s := startEdge(b, gateway.Config{})
	var got [clients]atomic.Int64
	for i := range clients {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.gw.WebSocketAddr()+"/", nil)
		require.NoError(b, err)
		b.Cleanup(func() { _ = ws.Close() })
		_, _, err = ws.ReadMessage() // the greeting
		require.NoError(b, err)
		go func() {
			for {
				if _, _, err := ws.NextReader(); err != nil {
					return
				}
				got[i].Add(1)
			}
		}()
	}
	slowest := func() int64 {
		low := got[0].Load()
		for i := range got {
			low = min(low, got[i].Load())
		}
		return low
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for slowest() < n {
			if time.Now().After(deadline) {
				b.Fatalf("clients got %d of %d broadcasts", slowest(), n)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	body := bytes.Repeat([]byte("b"), 1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)) * clients)
	b.ResetTimer()
	for i := range b.N {
		if i >= broadcastWindow {
			waitFor(int64(i - broadcastWindow + 1))
		}
		require.NoError(b, s.api.SendToAll(ctx, body))
	}
	waitFor(int64(b.N))
	b.StopTimer()
	b.ReportMetric(float64(b.N)*clients/b.Elapsed().Seconds(), "pushes/s")
}
