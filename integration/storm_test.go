package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// metric reads one counter or gauge (the sum of its series) from a
// process's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sum := 0.0
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		sum += v
	}
	require.NoError(t, s.Err())
	return sum
}

// countLines counts, until the test ends, the lines of p's log that match re.
func countLines(t *testing.T, p *proc, re string) *atomic.Int64 {
	rx := regexp.MustCompile(re)
	n := new(atomic.Int64)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case l := <-p.lines:
				if rx.MatchString(l) {
					n.Add(1)
				}
			case <-stop:
				return
			}
		}
	}()
	return n
}

// TestConnectStormIsPaced: a connect storm against a worker far too slow
// for it (one handler at a time, OnConnect 2 ms: 2 × 1,500 clients connect
// within a second or two and wait up to ~8 s for their OnConnect). The
// storm must end in a slower connect (issue 12 item 19): no client closed,
// every OnConnect once, and no batch dropped or sent again meanwhile: the
// worker claims the batches that wait in it and reports them, so the
// gateways do not resend them (before, every batch that waited past
// AckTimeout was resent each second, the copies piled up in the worker
// and, at 100,000 connections, overflowed it).
func TestConnectStormIsPaced(t *testing.T) {
	urls, _ := natsCluster(t, 1)
	const gateways, perGateway = 2, 1500
	var wsURLs, metricsAddrs []string
	for i := range gateways {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, "gateway", "gateway", "--id", fmt.Sprintf("storm%d", i+1), "--nats", urls[0], "--ws", "127.0.0.1:0", "--tcp", "", "--metrics", addr)
		wsURLs = append(wsURLs, "ws://"+p.waitLine(t, `gateway listening.*websocket=(\S+)`)+"/")
		metricsAddrs = append(metricsAddrs, addr)
	}
	log := newProbeLog(t)
	env := []string{"GATEWAYWORKER_PROBE_LOG=" + log.path, "GATEWAYWORKER_PROBE_CONNECT_DELAY=2ms"}
	w := startEnv(t, "worker", env, "worker", "--nats", urls[0], "--app", "probe", "--max-concurrency", "1")
	w.waitLine(t, `(worker taking events)`)
	dropped := countLines(t, w, `slow consumer|event batch dropped`)

	// Dial every client, 64 at a time per gateway; each reads until the
	// test ends and counts it if its connection is closed before.
	var closed atomic.Int64
	var conns sync.Map
	var wg sync.WaitGroup
	dialErrs := make(chan error, gateways*perGateway)
	began := time.Now()
	for _, u := range wsURLs {
		sem := make(chan struct{}, 64)
		for range perGateway {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
				c, _, err := d.Dial(u, nil)
				if err != nil {
					dialErrs <- err
					return
				}
				conns.Store(c, struct{}{})
				go func() {
					for {
						if _, _, err := c.ReadMessage(); err != nil {
							if _, open := conns.Load(c); open {
								closed.Add(1)
							}
							return
						}
					}
				}()
			}()
		}
	}
	wg.Wait()
	close(dialErrs)
	for err := range dialErrs {
		require.NoError(t, err)
	}
	dialled := time.Since(began)
	t.Cleanup(func() {
		conns.Range(func(c, _ any) bool {
			conns.Delete(c)
			_ = c.(*websocket.Conn).Close()
			return true
		})
	})

	const clients = gateways * perGateway
	require.Eventually(t, func() bool { return len(log.count(t).connects) == clients }, 90*time.Second, 200*time.Millisecond,
		"every client's OnConnect runs")
	connected := time.Since(began)
	time.Sleep(3 * time.Second) // past AckTimeout: copies, if any, would run now
	c := log.count(t)
	twice := 0
	for _, n := range c.connects {
		if n > 1 {
			twice++
		}
	}
	resends := 0.0
	for _, addr := range metricsAddrs {
		resends += metric(t, addr, "gatewayworker_gateway_event_resends_total")
	}
	t.Logf("connect storm, %d clients over %d gateways, 1 worker running 1 handler at a time, OnConnect 2 ms: dialled in %v, every OnConnect ran after %v; "+
		"closed %d / OnConnect twice %d / batches resent %.0f / worker drops logged %d",
		clients, gateways, dialled.Round(time.Millisecond), connected.Round(time.Millisecond), closed.Load(), twice, resends, dropped.Load())
	require.Zero(t, closed.Load(), "clients closed")
	require.Len(t, c.connects, clients)
	require.Zero(t, twice, "clients whose OnConnect ran twice")
	require.Empty(t, c.closes, "OnClose calls")
	require.Zero(t, dropped.Load(), "batches the worker dropped")
	// A worker that holds a batch says so: its gateway does not send it
	// again. A few may still be, on a machine too loaded to report in time.
	require.Less(t, resends, float64(clients)/20, "batches sent again")
}
