package httpapi

import (
	"hash/maphash"
	"net"
	"strconv"
	"sync"
	"time"
)

// Failed authentications are limited per remote address: AuthFailureBurst
// wrong or missing keys in a row, then one more each AuthFailureRefill. An
// address over its limit is answered 429 before its key is looked at, so a
// key cannot be guessed faster than that. Behind a reverse proxy every
// client shares the proxy's address.
const (
	AuthFailureBurst  = 10
	AuthFailureRefill = 6 * time.Second
)

// authSlots bounds the limiter's memory whatever the number of addresses:
// addresses share slots by hash, so an address rarely (1 in authSlots)
// shares another's limit.
const authSlots = 4096

// authLimiter is a GCRA per slot: due is when the slot's failures are
// all forgiven, in Unix nanoseconds.
type authLimiter struct {
	seed maphash.Seed
	mu   sync.Mutex
	due  [authSlots]int64
}

func newAuthLimiter() *authLimiter { return &authLimiter{seed: maphash.MakeSeed()} }

func (l *authLimiter) slot(remoteAddr string) int {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return int(maphash.String(l.seed, host) % authSlots)
}

// wait is how long the address must wait before its next try; zero when
// it may try now.
func (l *authLimiter) wait(remoteAddr string, now time.Time) time.Duration {
	i := l.slot(remoteAddr)
	l.mu.Lock()
	due := l.due[i]
	l.mu.Unlock()
	if over := time.Duration(due-now.UnixNano()) - (AuthFailureBurst-1)*AuthFailureRefill; over > 0 {
		return over
	}
	return 0
}

// fail counts a failed authentication of the address.
func (l *authLimiter) fail(remoteAddr string, now time.Time) {
	i := l.slot(remoteAddr)
	l.mu.Lock()
	l.due[i] = max(l.due[i], now.UnixNano()) + int64(AuthFailureRefill)
	l.mu.Unlock()
}

// retryAfter is a Retry-After value: whole seconds, rounded up.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
