package ratelog

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Window: time.Second, Burst: 2}
	t0 := time.Unix(1000, 0)
	ok, n := l.Allow(t0)
	require.True(t, ok)
	require.Zero(t, n)
	ok, _ = l.Allow(t0.Add(time.Millisecond))
	require.True(t, ok)
	for range 5 {
		ok, _ = l.Allow(t0.Add(2 * time.Millisecond))
		require.False(t, ok)
	}
	ok, n = l.Allow(t0.Add(time.Second))
	require.True(t, ok)
	require.Equal(t, 5, n, "the next allowed line reports what was left out")

	var zero Limiter
	ok, _ = zero.Allow(t0)
	require.True(t, ok)
	ok, _ = zero.Allow(t0.Add(500 * time.Millisecond))
	require.False(t, ok)
}

func TestLog(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := Limiter{Burst: 1, Window: time.Hour}
	l.Log(log, slog.LevelWarn, "first")
	l.Log(log, slog.LevelWarn, "second")
	require.Contains(t, buf.String(), "first")
	require.NotContains(t, buf.String(), "second")
}
