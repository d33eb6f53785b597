package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/gateway"
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
		m.failures.WithLabelValues(k.String())
	}
	return m
}

// observe is a worker.Config.ObserveHandler.
func (m *metrics) observe(kind bus.EventKind, took time.Duration, err error) {
	m.handlers.WithLabelValues(kind.String()).Observe(took.Seconds())
	if err != nil {
		m.failures.WithLabelValues(kind.String()).Inc()
	}
}

func (m *metrics) gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (m *metrics) counter(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// addGateway exports a gateway's counters.
func (m *metrics) addGateway(g *gateway.Gateway) {
	stat := func(f func(gateway.Stats) float64) func() float64 { return func() float64 { return f(g.Stats()) } }
	m.gauge("gatewayworker_gateway_connections", "Connected clients.", stat(func(s gateway.Stats) float64 { return float64(s.Connections) }))
	m.gauge("gatewayworker_gateway_groups", "Groups with a member on this gateway.", stat(func(s gateway.Stats) float64 { return float64(s.Groups) }))
	m.gauge("gatewayworker_gateway_uids", "Uids with a client on this gateway.", stat(func(s gateway.Stats) float64 { return float64(s.UIDs) }))
	m.gauge("gatewayworker_gateway_pending_acks", "Clients whose event batch waits for a worker.", stat(func(s gateway.Stats) float64 { return float64(s.PendingAcks) }))
	m.gauge("gatewayworker_gateway_waiting_for_workers", "Clients whose events wait because MaxBatchesInFlight batches wait for workers.", stat(func(s gateway.Stats) float64 { return float64(s.WaitingForWorkers) }))
	m.counter("gatewayworker_gateway_connections_accepted_total", "Connections accepted.", stat(func(s gateway.Stats) float64 { return float64(s.Accepted) }))
	m.counter("gatewayworker_gateway_messages_in_total", "Messages received from clients.", stat(func(s gateway.Stats) float64 { return float64(s.MessagesIn) }))
	m.counter("gatewayworker_gateway_bytes_in_total", "Message bytes received from clients.", stat(func(s gateway.Stats) float64 { return float64(s.BytesIn) }))
	m.counter("gatewayworker_gateway_pushes_total", "Messages written to clients.", stat(func(s gateway.Stats) float64 { return float64(s.PushesOut) }))
	m.counter("gatewayworker_gateway_bytes_out_total", "Message bytes written to clients.", stat(func(s gateway.Stats) float64 { return float64(s.BytesOut) }))
	m.counter("gatewayworker_gateway_event_batches_total", "Event batches sent to workers.", stat(func(s gateway.Stats) float64 { return float64(s.Batches) }))
	m.counter("gatewayworker_gateway_event_resends_total", "Event batches sent again (a worker died or none ran).", stat(func(s gateway.Stats) float64 { return float64(s.Resends) }))
	m.counter("gatewayworker_gateway_nats_reconnects_total", "Reconnections to NATS.", stat(func(s gateway.Stats) float64 { return float64(s.NATSReconnects) }))
	m.counter("gatewayworker_gateway_pushes_dropped_total", "Pushes (one per client) dropped because the gateway's writers fell 64 MiB or 4,096 pushes per shard behind.", stat(func(s gateway.Stats) float64 { return float64(s.PushesDropped) }))
	m.counter("gatewayworker_gateway_replies_dropped_total", "JoinGroup and BindUID answers dropped because 65,536 waited for NATS to confirm subscriptions.", stat(func(s gateway.Stats) float64 { return float64(s.RepliesDropped) }))
	closed := prometheus.NewDesc("gatewayworker_gateway_closed_total", "Closed connections by reason (slow consumer, heartbeat timeout, ...).", []string{"reason"}, nil)
	m.reg.MustRegister(closedCollector{desc: closed, g: g})
	if g.Stats().AuthFailures != nil {
		failed := prometheus.NewDesc("gatewayworker_gateway_auth_failures_total", "Clients refused by authentication, by cause (invalid, expired, missing, rejected, timeout, ...).", []string{"cause"}, nil)
		m.reg.MustRegister(authCollector{desc: failed, g: g})
	}
}

// authCollector exports the refusals of a gateway's authentication by cause.
type authCollector struct {
	desc *prometheus.Desc
	g    *gateway.Gateway
}

func (c authCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c authCollector) Collect(ch chan<- prometheus.Metric) {
	for cause, n := range c.g.Stats().AuthFailures {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), cause)
	}
}

// closedCollector exports the close counters with a reason label.
type closedCollector struct {
	desc *prometheus.Desc
	g    *gateway.Gateway
}

func (c closedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c closedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.g.Stats().Closed {
		if reason == int(bus.CloseUnknown) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), bus.CloseReason(reason).String())
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
