package main

import (
	"context"
	"fmt"
	"io"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/worker"
)

// runGateway runs one gateway against an external NATS until ctx ends.
func runGateway(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		n natsFlags
		g gatewayFlags
		l logFlags
	)
	c := newCLI("gateway", "gatewayworker gateway: a gateway against an external NATS.")
	n.register(c, false)
	g.register(c)
	var metricsAddr string
	metricsFlag(c, &metricsAddr)
	l.register(c)
	log, err := parseWithLogger(c, &l, args, stdout)
	if err != nil {
		return err
	}
	b, err := connectBus(ctx, &n, "gateway", log)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg, err := g.config(b, n.prefix, log)
	if err != nil {
		return err
	}
	if len(cfg.AllowedOrigins) == 0 && cfg.WebSocketAddr != "" {
		log.Warn("any browser origin may connect: set --origins to the sites of your pages")
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		return err
	}
	m := newMetrics()
	m.addGateway(gw)
	stopMetrics, err := serveMetrics(metricsAddr, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	return gatewayListenError(gw.Run(ctx))
}

// runWorker runs one worker against an external NATS until ctx ends, then drains.
func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		n natsFlags
		w workerFlags
		l logFlags
	)
	c := newCLI("worker", "gatewayworker worker: a worker of --app against an external NATS.")
	n.register(c, false)
	w.register(c)
	var metricsAddr string
	metricsFlag(c, &metricsAddr)
	l.register(c)
	log, err := parseWithLogger(c, &l, args, stdout)
	if err != nil {
		return err
	}
	b, err := connectBus(ctx, &n, "worker", log)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg, err := w.config(b, n.prefix, log)
	if err != nil {
		return err
	}
	m := newMetrics()
	cfg.ObserveHandler = m.observe
	wk, err := worker.New(cfg)
	if err != nil {
		return err
	}
	m.addWorker(wk)
	stopMetrics, err := serveMetrics(metricsAddr, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if err := wk.Run(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
