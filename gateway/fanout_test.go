package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// BenchmarkBroadcast is one broadcast of 1 KB through the fanout to 100
// real WebSocket clients that read as fast as they can. The publisher keeps
// at most broadcastWindow broadcasts ahead of the slowest client, as a
// sender that watches its clients would: the figure is the sustained rate,
// not how fast NATS and the gateway can buffer.
func BenchmarkBroadcast(b *testing.B) {
	const clients, broadcastWindow = 100, 256
	// No liveness check: on a machine loaded past its cores the gateway's own
	// beat can come back late enough that it reconnects to NATS, and the
	// pushes published meanwhile are lost (at most once), which would end
	// the run.
	s := startEdge(b, gateway.Config{NATSLossTimeout: -1})
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
				st := s.gw.Stats()
				b.Fatalf("clients got %d of %d broadcasts (closed by reason %v, pushes dropped %d, NATS reconnects %d)", slowest(), n, st.Closed, st.PushesDropped, st.NATSReconnects)
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

// BenchmarkGroupSend is group sends of 64 B, round the groups, to 20
// groups of 10 real WebSocket clients, paced at sendRate per second as
// gwbench group does (so that each send is written alone, as at a
// moderate load), and at most sendWindow deliveries ahead of the
// clients. It reports, per delivery, the
// CPU time of the whole test process (NATS, gateway, clients) and the
// goroutines the Go scheduler ran (runtime/metrics /sched/latencies:
// every time a goroutine was made to run): the fanout's wake-ups show in
// both. Compare two builds alternating, in one run.
func BenchmarkGroupSend(b *testing.B) {
	const groups, members, sendWindow, sendRate = 20, 10, 2000, 2000
	s := startEdge(b, gateway.Config{NATSLossTimeout: -1})
	ctx := context.Background()
	var got atomic.Int64
	for i := range groups * members {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.gw.WebSocketAddr()+"/", nil)
		require.NoError(b, err)
		b.Cleanup(func() { _ = ws.Close() })
		_, id, err := ws.ReadMessage() // the greeting: its id
		require.NoError(b, err)
		require.NoError(b, s.api.JoinGroup(ctx, string(id), fmt.Sprintf("g%d", i%groups)))
		go func() {
			for {
				if _, _, err := ws.NextReader(); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < n {
			if time.Now().After(deadline) {
				b.Fatalf("clients got %d of %d deliveries (pushes dropped %d)", got.Load(), n, s.gw.Stats().PushesDropped)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	body := bytes.Repeat([]byte("g"), 64)
	cpu0, sched0 := cpuTime(), schedCount()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if ahead := int64(i*members) - sendWindow; ahead > 0 {
			waitFor(ahead)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / sendRate)))
		require.NoError(b, s.api.SendToGroup(ctx, fmt.Sprintf("g%d", i%groups), body))
	}
	waitFor(int64(b.N * members))
	b.StopTimer()
	deliveries := float64(b.N * members)
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/deliveries, "cpu-us/delivery")
	b.ReportMetric(float64(schedCount()-sched0)/deliveries, "scheds/delivery")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// schedCount is about how many times the Go scheduler has run a goroutine
// that was waiting to run: the runtime records one such transition in 8
// (gTrackingPeriod in runtime2.go).
func schedCount() uint64 {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	return 8 * n
}

// stormClient dials a WebSocket client with a receive buffer of rcvbuf
// bytes and reads its greeting (its id).
func stormClient(t *testing.T, s *edge, rcvbuf int) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(rcvbuf)
		}
		return c, err
	}}
	ws, _, err := d.Dial("ws://"+s.gw.WebSocketAddr()+"/", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	_, id, err := ws.ReadMessage()
	require.NoError(t, err)
	_ = ws.SetReadDeadline(time.Time{})
	return ws, string(id)
}

// waitReasons waits until OnClose ran for every one of ids, at most
// 2×wait, and counts their close reasons (CloseUnknown: no OnClose).
func (s *edge) waitReasons(ids []string) map[bus.CloseReason]int {
	deadline := time.Now().Add(2 * wait)
	for {
		s.mu.Lock()
		counts := map[bus.CloseReason]int{}
		for _, id := range ids {
			counts[s.reasons[id]]++
		}
		s.mu.Unlock()
		if counts[bus.CloseUnknown] == 0 || time.Now().After(deadline) {
			return counts
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heapPeak samples the heap until stop is called, which returns the
// highest HeapAlloc seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSendQueueLimitHoldsForEveryClient is issue 12's attack on the send
// queue: clients that never read, and a burst of large broadcasts. The
// gateway may hold at most SendQueueLimit plus one message per client at
// any moment (it held up to 64 coalesced pushes per client, built before
// the limit was checked, closed clients included), and clients that read
// are not closed by a burst their socket buffers take (a coalesced write
// larger than the limit closed them at once: nbio checks each write whole).
// The heap figures are logged: go test -run SendQueueLimitHolds -v ./gateway
func TestSendQueueLimitHoldsForEveryClient(t *testing.T) {
	const (
		limit     = 256 << 10
		readers   = 10
		burst     = 16 // 960 KB: more than the limit, less than the readers' socket buffers
		stuck     = 100
		storm     = 200 // 12 MB: more than the socket buffers of a client that does not read
		pushBytes = 60 << 10
	)
	s := startEdge(t, gateway.Config{SendQueueLimit: limit})
	ctx := context.Background()
	body := bytes.Repeat([]byte("s"), pushBytes)

	var got [readers]atomic.Int64
	readerIDs := make([]string, readers)
	for i := range readers {
		var ws *websocket.Conn
		ws, readerIDs[i] = stormClient(t, s, 4<<20)
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				got[i].Add(1)
			}
		}()
	}
	for range burst {
		require.NoError(t, s.api.SendToAll(ctx, body))
	}
	for i := range got {
		deadline := time.Now().Add(2 * wait)
		for got[i].Load() < burst && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		require.Equal(t, int64(burst), got[i].Load(), "reader %d got every push of the burst", i)
		on, err := s.api.IsOnline(ctx, readerIDs[i])
		require.NoError(t, err)
		require.True(t, on, "reader %d still connected", i)
	}

	stuckIDs := make([]string, stuck)
	for i := range stuckIDs {
		_, stuckIDs[i] = stormClient(t, s, 4<<10)
	}
	before := heapNow()
	peak := heapPeak()
	for range storm {
		require.NoError(t, s.api.SendToAll(ctx, body, readerIDs...))
	}
	reasons := s.waitReasons(stuckIDs)
	// A last push that every reader gets: each shard has a reader (ids go
	// round the shards), so each has written everything queued before it.
	require.NoError(t, s.api.SendToAll(ctx, []byte("end")))
	deadline := time.Now().Add(10 * wait)
	for i := range got {
		for got[i].Load() < burst+1 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	top := peak()
	after := heapNow()
	t.Logf("heap: before %d MB, peak %d MB, after %d MB (%d clients that do not read, %d pushes of %d KB, SendQueueLimit %d KB)",
		before>>20, top>>20, after>>20, stuck, storm, pushBytes>>10, limit>>10)
	require.Equal(t, map[bus.CloseReason]int{bus.CloseSlowConsumer: stuck}, reasons, "every client that does not read is closed as a slow consumer")
	// A client's frames live from its round's build to nbio's copy of
	// what the socket did not take; with the collector's lag the heap may
	// hold several times what is live (four, with a loaded machine's margin).
	bound := uint64(4*stuck*(limit+pushBytes) + 32<<20)
	require.Less(t, top-min(top, before), bound, "the heap grew past SendQueueLimit plus one message per client")
}

// TestWriteDelayJoinsPushes sends two broadcasts 50 ms apart to a raw TCP
// client of a gateway with a WriteDelay of 2 s: the client's first read
// gets both, in order, because the gateway wrote them together. Without
// the delay the first arrives alone, 50 ms before the second is sent.
func TestWriteDelayJoinsPushes(t *testing.T) {
	s := startEdge(t, gateway.Config{WriteDelay: 2 * time.Second, TCP: []gateway.TCPListener{{Addr: "127.0.0.1:0"}}})
	conn, err := net.Dial("tcp", s.gw.TCPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	greeting := make([]byte, 0, 64)
	for !bytes.HasSuffix(greeting, []byte("\n")) { // its id, sent to it alone: not delayed
		b := make([]byte, 1)
		_, err := conn.Read(b)
		require.NoError(t, err)
		greeting = append(greeting, b...)
	}
	ctx := context.Background()
	require.NoError(t, s.api.SendToAll(ctx, []byte("first")))
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.api.SendToAll(ctx, []byte("second")))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "first\nsecond\n", string(buf[:n]))
}
