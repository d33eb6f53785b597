package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// TestRetryUnavailable: a send NATS refused while reconnecting is tried
// again until it goes through, for up to retryFor; any other error, or the
// context's end, returns at once.
func TestRetryUnavailable(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := retryUnavailable(ctx, func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("send: %w", api.ErrNATSUnavailable)
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)

	other := errors.New("gateway refused")
	calls = 0
	require.ErrorIs(t, retryUnavailable(ctx, func() error { calls++; return other }), other)
	require.Equal(t, 1, calls)

	start := time.Now()
	require.ErrorIs(t, retryUnavailable(ctx, func() error { return api.ErrNATSUnavailable }), api.ErrNATSUnavailable)
	require.GreaterOrEqual(t, time.Since(start), retryFor, "gave up before retryFor")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	require.ErrorIs(t, retryUnavailable(cancelled, func() error { calls++; return api.ErrNATSUnavailable }), api.ErrNATSUnavailable)
	require.Equal(t, 1, calls)
}
