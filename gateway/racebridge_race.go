//go:build race

package gateway

import (
	"sync"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// raceBridge (race builds only) gives the race detector the happens-before
// edge that nbhttp's accept → epoll hand-off has but the detector cannot see
// (lesismal/nbio#495; COOKBOOK §5.1). Production builds do not have it. The
// engine's OnOpen is ours: call the returned function at its end.
func raceBridge(e *nbhttp.Engine) (opened func()) {
	var mu sync.Mutex
	e.Engine.OnReadBufferAlloc(func(c *nbio.Conn) *[]byte {
		mu.Lock()
		mu.Unlock()
		return e.Engine.PollerBufferPtr(c)
	})
	return func() { mu.Lock(); mu.Unlock() }
}

// raceBridgeTCP is the same edge for a raw TCP engine, whose OnOpen is
// ours: call the returned function at the end of OnOpen.
func raceBridgeTCP(e *nbio.Engine) (opened func()) {
	var mu sync.Mutex
	e.OnReadBufferAlloc(func(c *nbio.Conn) *[]byte {
		mu.Lock()
		mu.Unlock()
		return e.PollerBufferPtr(c)
	})
	return func() { mu.Lock(); mu.Unlock() }
}
