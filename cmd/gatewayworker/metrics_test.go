package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// TestGatewayMetricsReadStatsOncePerScrape: a scrape reads the gateway's
// Stats once, not once a series (it was sixteen times), and every series
// comes from that one reading.
func TestGatewayMetricsReadStatsOncePerScrape(t *testing.T) {
	calls := 0
	stats := func() gateway.Stats {
		calls++
		closed := make([]uint64, int(bus.CloseSlowConsumer)+1)
		closed[bus.CloseSlowConsumer] = 7
		return gateway.Stats{Connections: 3, Accepted: 5, PushesDropped: 2, Closed: closed, AuthFailures: map[string]uint64{"expired": 4}}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newGatewayCollector(stats, true))
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Equal(t, 1, calls)
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	require.Len(t, got, len(gatewayStats)+int(bus.CloseSlowConsumer)+1)
	require.Equal(t, 3.0, got["gatewayworker_gateway_connections"])
	require.Equal(t, 5.0, got["gatewayworker_gateway_connections_accepted_total"])
	require.Equal(t, 2.0, got["gatewayworker_gateway_pushes_dropped_total"])
	require.Equal(t, 7.0, got["gatewayworker_gateway_closed_total{"+bus.CloseSlowConsumer.String()+"}"])
	require.Equal(t, 4.0, got["gatewayworker_gateway_auth_failures_total{expired}"])
}
