package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/worker"
)

// singleTier is what the commands that run against an external NATS share:
// its flags, its logger and its NATS connection.
type singleTier struct {
	nats    natsFlags
	logs    logFlags
	metrics string
}

// start registers the NATS flags, the command's own flags (own), --metrics
// when withMetrics, and the logging flags; parses args; and connects to
// NATS. The caller closes the connection.
func (s *singleTier) start(ctx context.Context, name string, role bus.Role, title string, args []string, stdout io.Writer,
	own func(*cli), withMetrics bool) (*slog.Logger, *bus.Conn, error) {
	c := newCLI(name, title)
	s.nats.register(c, false)
	own(c)
	if withMetrics {
		metricsFlag(c, &s.metrics)
	}
	s.logs.register(c)
	log, err := parseWithLogger(c, &s.logs, args, stdout)
	if err != nil {
		return nil, nil, err
	}
	b, err := connectBus(ctx, &s.nats, nil, role, log)
	if err != nil {
		return nil, nil, err
	}
	return log, b, nil
}

// runGateway runs one gateway against an external NATS until ctx ends.
func runGateway(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		s singleTier
		g gatewayFlags
	)
	log, b, err := s.start(ctx, "gateway", bus.RoleGateway, "gatewayworker gateway: a gateway against an external NATS.", args, stdout,
		func(c *cli) { g.register(c, defaultGOGC) }, true)
	if err != nil {
		return err
	}
	defer b.Close()
	g.applyGC()
	cfg, err := g.config(b, s.nats.prefix, log)
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
	m.addBus("gateway", b)
	stopMetrics, err := serveMetrics(s.metrics, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	return gatewayListenError(gw.Run(ctx))
}

// runWorker runs one worker against an external NATS until ctx ends, then drains.
func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		s singleTier
		w workerFlags
	)
	log, b, err := s.start(ctx, "worker", bus.RoleWorker, "gatewayworker worker: a worker of --app against an external NATS.", args, stdout, w.register, true)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg, err := w.config(b, s.nats.prefix, log)
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
	m.addBus("worker", b)
	stopMetrics, err := serveMetrics(s.metrics, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if err := wk.Run(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
