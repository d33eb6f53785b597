package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/worker"
)

// metrics is one process's Prometheus registry. Gateways and workers keep
// plain counters; this is the only place that knows Prometheus, so the
// libraries carry no metrics dependency. The metric names are listed in
// docs/operations.md ("Metrics").
type metrics struct {
	reg      *prometheus.Registry
	handlers *prometheus.HistogramVec
	failures *prometheus.CounterVec
	// byKind holds each event kind's series, looked up once: finding a
	// series by its label value on every event cost 1.6 % of run's CPU
	// under the echo.
	byKind [bus.EventClose + 1]kindSeries
}

// kindSeries are one event kind's handler series.
type kindSeries struct {
	took   prometheus.Observer
	failed prometheus.Counter
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		handlers: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatewayworker_worker_handler_seconds", Help: "How long worker handlers ran, by event.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10), // 50µs .. 13s
		}, []string{"event"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatewayworker_worker_handler_errors_total", Help: "Handlers that returned an error or panicked, by event.",
		}, []string{"event"}),
	}
	reg.MustRegister(m.handlers, m.failures)
	// Series exist from the start, at 0: an alert on the rate of handler
	// errors sees a series before the first error.
	for k := bus.EventConnect; k <= bus.EventClose; k++ {
		m.byKind[k] = m.lookUp(k)
	}
	return m
}

// lookUp finds kind's series by its label.
func (m *metrics) lookUp(kind bus.EventKind) kindSeries {
	return kindSeries{m.handlers.WithLabelValues(kind.String()), m.failures.WithLabelValues(kind.String())}
}

// observe is a worker.Config.ObserveHandler.
func (m *metrics) observe(kind bus.EventKind, took time.Duration, err error) {
	var s kindSeries
	if kind >= bus.EventConnect && kind <= bus.EventClose {
		s = m.byKind[kind]
	} else {
		s = m.lookUp(kind) // not a kind a worker runs handlers for; its label says so
	}
	s.took.Observe(took.Seconds())
	if err != nil {
		s.failed.Inc()
	}
}

func (m *metrics) gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (m *metrics) counter(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// gatewayStats are the series a gateway's Stats give, one a field.
var gatewayStats = []struct {
	name, help string
	kind       prometheus.ValueType
	value      func(gateway.Stats) float64
}{
	{"gatewayworker_gateway_connections", "Connected clients.", prometheus.GaugeValue, func(s gateway.Stats) float64 { return float64(s.Connections) }},
	{"gatewayworker_gateway_groups", "Groups with a member on this gateway.", prometheus.GaugeValue, func(s gateway.Stats) float64 { return float64(s.Groups) }},
	{"gatewayworker_gateway_uids", "Uids with a client on this gateway.", prometheus.GaugeValue, func(s gateway.Stats) float64 { return float64(s.UIDs) }},
	{"gatewayworker_gateway_pending_acks", "Clients whose event batch waits for a worker.", prometheus.GaugeValue, func(s gateway.Stats) float64 { return float64(s.PendingAcks) }},
	{"gatewayworker_gateway_waiting_for_workers", "Clients whose events wait because MaxBatchesInFlight batches wait for workers.", prometheus.GaugeValue, func(s gateway.Stats) float64 { return float64(s.WaitingForWorkers) }},
	{"gatewayworker_gateway_connections_accepted_total", "Connections accepted.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.Accepted) }},
	{"gatewayworker_gateway_messages_in_total", "Messages received from clients.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.MessagesIn) }},
	{"gatewayworker_gateway_bytes_in_total", "Message bytes received from clients.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.BytesIn) }},
	{"gatewayworker_gateway_pushes_total", "Messages written to clients.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.PushesOut) }},
	{"gatewayworker_gateway_bytes_out_total", "Message bytes written to clients.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.BytesOut) }},
	{"gatewayworker_gateway_event_batches_total", "Event batches sent to workers.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.Batches) }},
	{"gatewayworker_gateway_event_resends_total", "Event batches sent again (a worker died or none ran).", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.Resends) }},
	{"gatewayworker_gateway_nats_reconnects_total", "Reconnections to NATS.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.NATSReconnects) }},
	{"gatewayworker_gateway_pushes_dropped_total", "Pushes (one per client) dropped because the gateway's writers fell 64 MiB or 4,096 pushes per shard behind.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.PushesDropped) }},
	{"gatewayworker_gateway_replies_dropped_total", "JoinGroup and BindUID answers dropped because 65,536 waited for NATS to confirm subscriptions.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.RepliesDropped) }},
	{"gatewayworker_gateway_recoveries_total", "Channels of reconnecting clients recovered completely from the history.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.Recoveries) }},
	{"gatewayworker_gateway_recoveries_incomplete_total", "Channels of reconnecting clients told complete:false (history past its bound, another epoch, unreadable).", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.RecoveriesIncomplete) }},
	{"gatewayworker_gateway_history_replayed_total", "Stored pushes replayed to recovering clients.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.HistoryReplayed) }},
	{"gatewayworker_gateway_history_gaps_total", "Gaps in a live recoverable subject read from the history stream.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.HistoryGaps) }},
	{"gatewayworker_gateway_history_gaps_lost_total", "Gaps given up after 10 failed reads: recoverable pushes this gateway's members did not get live.", prometheus.CounterValue, func(s gateway.Stats) float64 { return float64(s.HistoryGapsLost) }},
}

// addGateway exports a gateway's counters.
func (m *metrics) addGateway(g *gateway.Gateway) {
	m.reg.MustRegister(newGatewayCollector(g.Stats, g.Stats().AuthFailures != nil))
}

// gatewayCollector exports a gateway's Stats: one call a scrape, so the
// series of one scrape agree with each other, and the registry's lock is
// taken once, not once a series.
type gatewayCollector struct {
	stats  func() gateway.Stats
	descs  []*prometheus.Desc
	closed *prometheus.Desc
	// auth, for a gateway with Config.Auth, counts its refusals by cause.
	auth *prometheus.Desc
}

func newGatewayCollector(stats func() gateway.Stats, auth bool) *gatewayCollector {
	c := &gatewayCollector{stats: stats,
		closed: prometheus.NewDesc("gatewayworker_gateway_closed_total", "Closed connections by reason (slow consumer, heartbeat timeout, ...).", []string{"reason"}, nil)}
	if auth {
		c.auth = prometheus.NewDesc("gatewayworker_gateway_auth_failures_total", "Clients refused by authentication, by cause (invalid, expired, missing, rejected, timeout, ...).", []string{"cause"}, nil)
	}
	for _, s := range gatewayStats {
		c.descs = append(c.descs, prometheus.NewDesc(s.name, s.help, nil, nil))
	}
	return c
}

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.closed
	if c.auth != nil {
		ch <- c.auth
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for i, st := range gatewayStats {
		ch <- prometheus.MustNewConstMetric(c.descs[i], st.kind, st.value(s))
	}
	for reason, n := range s.Closed {
		if reason == int(bus.CloseUnknown) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(n), bus.CloseReason(reason).String())
	}
	if c.auth != nil {
		for cause, n := range s.AuthFailures {
			ch <- prometheus.MustNewConstMetric(c.auth, prometheus.CounterValue, float64(n), cause)
		}
	}
}

// addBus exports the slow-consumer reports of one NATS connection (conn
// says whose): a subscription fell bus.PendingMsgs or bus.PendingBytes
// behind and nats.go dropped its messages. The series exists from the
// start, at zero, so an alert on its increase sees the first one.
func (m *metrics) addBus(conn string, b *bus.Conn) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "gatewayworker_nats_slow_consumers_total", Help: "Times a NATS subscription fell behind its pending limits and nats.go dropped messages, by connection.",
		ConstLabels: prometheus.Labels{"conn": conn},
	}, func() float64 { return float64(b.SlowConsumers()) }))
}

// addWorker exports a worker's counters.
func (m *metrics) addWorker(w *worker.Worker) {
	m.counter("gatewayworker_worker_events_total", "Events whose handlers returned.", func() float64 { return float64(w.Handled()) })
	m.gauge("gatewayworker_worker_in_flight", "Event batches whose handlers run now.", func() float64 { return float64(w.InFlight()) })
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// metricsFlag adds --metrics to a command.
func metricsFlag(c *cli, addr *string) {
	c.group("Metrics")
	c.str(addr, "metrics", "", "address to serve Prometheus /metrics on; empty disables (run also serves it on --http)")
}

// newMux returns a mux serving /metrics.
func newMux(m *metrics) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	return mux
}

// newMetricsMux adds Go's profiler under /debug/pprof/ to newMux: for
// --metrics only, never on run's chat page (--http), which browsers reach.
func newMetricsMux(m *metrics) *http.ServeMux {
	mux := newMux(m)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveMetrics serves /metrics on addr until the returned stop is called.
func serveMetrics(addr string, m *metrics, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	s, err := serveHTTP(addr, newMetricsMux(m), log)
	if err != nil {
		return nil, listenError(err, "metrics", addr)
	}
	return s.stop, nil
}
