// Package bustest starts real NATS servers for tests: never a mock.
package bustest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/gatewayworker/gatewayworker/bus"
)

// RunServer starts an embedded server on a free loopback port and stops it
// when the test ends. GW_TEST_LOG=1 turns the server's log on.
func RunServer(t testing.TB, cfg bus.EmbeddedConfig) *bus.Embedded {
	t.Helper()
	cfg.Logs = cfg.Logs || os.Getenv("GW_TEST_LOG") != ""
	e, err := bus.StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// Connect connects to e and closes the connection when the test ends (before
// the server stops, as cleanups run last-in first-out).
func Connect(t testing.TB, e *bus.Embedded, cfg bus.Config) *bus.Conn {
	t.Helper()
	cfg.URLs = []string{e.URL()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
