package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
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
// when withMetrics, and the logging flags; parses args; runs check, if
// any, so that bad values are refused before NATS is waited for; and
// connects to NATS. The caller closes the connection.
func (s *singleTier) start(ctx context.Context, name string, role bus.Role, title string, args []string, stdout, stderr io.Writer,
	own func(*cli), withMetrics bool, check func() error) (*slog.Logger, *bus.Conn, error) {
	c := newCLI(name, title)
	s.nats.register(c, false)
	own(c)
	if withMetrics {
		metricsFlag(c, &s.metrics)
	}
	s.logs.register(c)
	log, err := parseWithLogger(c, &s.logs, args, stdout, stderr)
	if err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	b, err := connectBus(ctx, &s.nats, nil, role, log)
	if err != nil {
		return nil, nil, err
	}
	return log, b, nil
}

// runGateway runs one gateway against an external NATS until ctx ends.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		s singleTier
		g gatewayFlags
	)
	log, b, err := s.start(ctx, "gateway", bus.RoleGateway, "gatewayworker gateway: a gateway against an external NATS.", args, stdout, stderr,
		func(c *cli) { g.register(c, defaultGOGC) }, true, g.check)
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
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		s singleTier
		w workerFlags
	)
	log, b, err := s.start(ctx, "worker", bus.RoleWorker, "gatewayworker worker: a worker of --app against an external NATS.", args, stdout, stderr, w.register, true,
		func() error { _, err := appHandlers(w.app); return err })
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

// runReaper runs a worker that takes no events and only reaps (worker.Config.ReapOnly):
// the close events of a lost gateway's clients, for workers in another language.
func runReaper(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s singleTier
	log, b, err := s.start(ctx, "reaper", bus.RoleWorker,
		"gatewayworker reaper: sends the close events of the clients of gateways that died, for workers that do not (the PHP BusinessWorker); run one or two beside them.",
		args, stdout, stderr, func(*cli) {}, false, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	wk, err := worker.New(worker.Config{Bus: b, Prefix: s.nats.prefix, ReapOnly: true, Logger: log})
	if err != nil {
		return err
	}
	if err := wk.Run(ctx); err != nil {
		return fmt.Errorf("reaper: %w", err)
	}
	return nil
}
