package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// BenchmarkPushRecoverable compares, in one run, plain group pushes with
// recoverable ones (stored in a file stream, acknowledged, republished),
// end to end: 8 publishers, each with one push in flight (it sends the
// next once the opted-in WebSocket client received the last), so the
// figures are pushes delivered per second and the latency from the call
// to the client's receipt (p50, p99). BENCHMARKS.md has the figures and
// the command.
func BenchmarkPushRecoverable(b *testing.B) {
	s, start := newHistoryStack(b, bus.HistoryConfig{Storage: bus.StorageFile})
	g := start()
	c, id := dialRecover(b, g, map[string]string{})
	require.NoError(b, s.web.JoinGroup(context.Background(), id, "room"))
	for _, kind := range []string{"plain", "recoverable"} {
		b.Run(kind, func(b *testing.B) {
			calls := s.web.WithFrame(0)
			if kind == "recoverable" {
				calls = s.web.Recoverable()
			}
			const publishers = 8
			delivered := make([]chan struct{}, publishers)
			for p := range delivered {
				delivered[p] = make(chan struct{}, 1)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			began := time.Now()
			var wg sync.WaitGroup
			for p := range publishers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := p; i < b.N; i += publishers {
						body := fmt.Sprintf("%d:%d", p, time.Now().UnixNano())
						if err := calls.SendToGroup(context.Background(), "room", []byte(body)); err != nil {
							b.Error(err)
							return
						}
						select {
						case <-delivered[p]:
						case <-time.After(10 * time.Second):
							b.Error("a push was not delivered")
							return
						}
					}
				}()
			}
			for len(lat) < b.N {
				m, err := c.TryRead(10 * time.Second)
				require.NoError(b, err, "%d of %d received", len(lat), b.N)
				pub, sent, ok := strings.Cut(m, ":")
				if strings.HasPrefix(m, `{"gw":`) || !ok {
					continue
				}
				ns, err := strconv.ParseInt(sent, 10, 64)
				require.NoError(b, err)
				lat = append(lat, time.Since(time.Unix(0, ns)))
				p, _ := strconv.Atoi(pub)
				delivered[p] <- struct{}{}
			}
			elapsed := time.Since(began)
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pushes/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkRecovery10k: the time from a client's reconnect (dial with its
// position, then the JoinGroup that starts recovery) until it has
// received 10,000 missed pushes and the recovered frame.
func BenchmarkRecovery10k(b *testing.B) {
	const missed = 10_000
	s, start := newHistoryStack(b, bus.HistoryConfig{Storage: bus.StorageFile})
	g := start()
	room := bus.Channel{Name: "room"}
	ctx := context.Background()
	var total, toFirst time.Duration
	for range b.N {
		b.StopTimer()
		last := s.push(room, "before")
		var wg sync.WaitGroup
		for p := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := p; i < missed; i += 8 {
					if _, err := s.pub.PublishRecoverable(ctx, s.subj, room.Stored(s.subj), bus.MarshalCommand(&bus.Command{Op: bus.OpSend, Body: fmt.Appendf(nil, "m%d", i)})); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		info, err := s.pub.HistoryInfo(ctx, s.subj)
		require.NoError(b, err)
		b.StartTimer()
		began := time.Now()
		c, id := dialRecover(b, g, map[string]string{"g:room": bus.Position{Epoch: info.Epoch, Seq: last}.String()})
		require.NoError(b, s.web.JoinGroup(ctx, id, "room"))
		got := 0
		for {
			m, err := c.TryRead(30 * time.Second)
			require.NoError(b, err, "%d of %d replayed", got, missed)
			if got == 0 {
				toFirst += time.Since(began)
			}
			if strings.HasPrefix(m, `{"gw":"recovered"`) {
				require.Contains(b, m, `"complete":true`)
				break
			}
			if !strings.HasPrefix(m, `{"gw":`) {
				got++
			}
		}
		took := time.Since(began)
		b.StopTimer()
		require.Equal(b, missed, got)
		c.Conn.Close()
		total += took
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/recovery")
	b.ReportMetric(float64(toFirst.Milliseconds())/float64(b.N), "ms-to-first")
	b.ReportMetric(float64(missed*b.N)/total.Seconds(), "replayed/s")
	b.ReportMetric(0, "ns/op")
}
