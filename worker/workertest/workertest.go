// Package workertest runs real workers against a real NATS server for tests.
package workertest

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
)

// Start runs a worker on e until the test ends (or until stop is called),
// and returns it with a stop function that drains it and waits for Run.
func Start(t testing.TB, e *bus.Embedded, cfg worker.Config) (w *worker.Worker, stop func()) {
	t.Helper()
	if cfg.Bus == nil {
		cfg.Bus = bustest.Connect(t, e, bus.Config{Name: "worker"})
	}
	if cfg.Logger == nil {
		cfg.Logger = bustest.Logger(t)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatalf("workertest: %v", err)
	}
	return w, bustest.Run(t, "workertest: worker", w.Run, w.Ready(), 15*time.Second)
}

// Greeter tells each client its id on connect, so that a test can name
// the clients it dialled; it ignores their messages.
var Greeter = worker.Handlers{
	OnConnect: func(ctx context.Context, c *worker.Client) error {
		return c.SendToCurrentClient(ctx, []byte(c.ID()))
	},
	OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
}
