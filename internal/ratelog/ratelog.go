// Package ratelog keeps log storms in check: a flood of bad input from
// clients must not turn into a flood of log lines, yet the operator must
// learn how much was left out.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter lets through Burst lines per Window and counts the rest. The
// zero value lets one line per second through. It is safe for concurrent use.
type Limiter struct {
	// Window is the period; zero means one second.
	Window time.Duration
	// Burst is how many lines a window lets through; zero means 1.
	Burst int

	mu         sync.Mutex
	start      time.Time
	used       int
	suppressed int
}

// Allow reports whether a line may be logged now, and how many lines were
// suppressed since the last one allowed (to add to it).
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	window, burst := l.Window, l.Burst
	if window <= 0 {
		window = time.Second
	}
	if burst <= 0 {
		burst = 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= window {
		l.start, l.used = now, 0
	}
	if l.used >= burst {
		l.suppressed++
		return false, 0
	}
	l.used++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// Log logs msg at level unless the limiter says no; the first line after a
// quiet spell carries "suppressed" with the number of lines left out.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	ok, suppressed := l.Allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Log(context.Background(), level, msg, args...)
}
