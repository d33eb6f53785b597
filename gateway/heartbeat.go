package gateway

import (
	"context"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// The heartbeat visits every client once per PingInterval, but not all at
// once: clients are split into up to maxPingParts parts by their admission
// order, and one part is visited every PingInterval/parts. A gateway of
// 19,000 idle clients wrote 19,000 pings in one burst, and on a box of
// fifty such gateways the bursts (and the pongs they brought back) kept
// both cores busy for seconds while beats and events waited behind them.
// Spread out, the same pings cost the same CPU but never all at once.
const (
	maxPingParts = 64
	// minPingTick keeps short intervals (tests use tens of milliseconds)
	// from waking the heartbeat more often than this.
	minPingTick = 10 * time.Millisecond
)

// pingParts is how many parts the heartbeat splits clients into.
func pingParts(interval time.Duration) int {
	return max(1, min(maxPingParts, int(interval/minPingTick)))
}

// pingSchedule says which parts are due: part k%parts at start + (k+1)·tick.
// Only the heartbeat's goroutine uses it.
type pingSchedule struct {
	start time.Time
	tick  time.Duration
	parts int
	next  int // the next part to visit, counted from start
}

func newPingSchedule(start time.Time, interval time.Duration) *pingSchedule {
	n := pingParts(interval)
	return &pingSchedule{start: start, tick: interval / time.Duration(n), parts: n}
}

// due calls visit with each part due at now, oldest first. A heartbeat
// that fell behind (its ticker drops the ticks it could not take) visits
// every part whose time passed once, however many of its times passed.
func (s *pingSchedule) due(now time.Time, visit func(part int)) {
	end := int(now.Sub(s.start) / s.tick)
	s.next = max(s.next, end-s.parts)
	for ; s.next < end; s.next++ {
		visit(s.next % s.parts)
	}
}

// startHeartbeat runs the heartbeat until ctx ends.
func (g *Gateway) startHeartbeat(ctx context.Context) {
	s := newPingSchedule(time.Now(), g.cfg.PingInterval)
	g.startLoop(ctx, s.tick, func(now time.Time) { s.due(now, g.heartbeat) })
}

// heartbeat visits the live clients of one part, with GatewayWorker's
// semantics: one silent for more than PingNotResponseLimit visits is
// closed, the others get PingData, or a ping where the protocol has one.
func (g *Gateway) heartbeat(part int) {
	limit := int32(g.cfg.PingNotResponseLimit)
	ping := newFraming(g.cfg.PingData, bus.FrameDefault, g.cfg.WebSocketType)
	for _, c := range g.reg.livePart(uint8(part), nil) {
		n := c.silent.Add(1)
		if limit > 0 && n > limit {
			c.end(bus.CloseHeartbeatTimeout, nil)
			continue
		}
		if len(g.cfg.PingData) > 0 {
			_ = c.t.send(g.cfg.PingData, ping.text(c))
		} else {
			c.t.ping()
		}
	}
}
