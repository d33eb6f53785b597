// Package bustest starts real NATS servers for tests: never a mock.
package bustest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
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
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Logger returns a logger for the components under test: silent, unless
// GW_TEST_LOG is set, when it writes through t.Log at debug level.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("GW_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// LogBuffer is a log sink a test reads while the components under test
// write to it from their own goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
