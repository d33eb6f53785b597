package bustest

import (
	"context"
	"testing"
	"time"
)

// Run is the skeleton of gatewaytest.Start and workertest.Start: it runs
// run(ctx) in a goroutine, waits up to 10 s for ready (failing the test
// when run returns or the time passes first), and returns stop, which
// cancels ctx and waits up to stopWithin for run to return. stop also
// runs when the test ends; calling it more than once is fine. what names
// the component in failures ("gatewaytest: gateway").
func Run(t testing.TB, what string, run func(ctx context.Context) error, ready <-chan struct{}, stopWithin time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", what, err)
			}
		case <-time.After(stopWithin):
			t.Errorf("%s did not stop", what)
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		stopped = true
		cancel()
		t.Fatalf("%s: Run: %v", what, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not ready", what)
	}
	return stop
}
