package gateway

import (
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gatewayworker/gatewayworker/bus"
)

// transport writes to one client's socket. Implementations never block:
// nbio queues what the socket cannot take, up to Config.SendQueueLimit.
type transport interface {
	// send writes one message; text says it is valid UTF-8 (see isText).
	send(data []byte, text bool) error
	// ping sends a protocol-level keepalive, where the protocol has one.
	ping()
	// close closes the socket, after sending last if it is not empty.
	close(last []byte)
}

// client is one connection. Its fields are grouped by the lock that guards
// them; an idle client costs only this struct and its registry entries.
type client struct {
	id string
	// reply is the reply subject of the client's event batches; id is its tail.
	reply string
	addr  string
	t     transport
	// shard is the fanout goroutine that writes this client's pushes.
	shard uint8
	// silent counts heartbeat intervals without input.
	silent atomic.Int32
	// reason is the CloseReason recorded by whoever closes the socket.
	reason atomic.Uint32

	// Guarded by registry.mu.
	uid      string
	groups   map[string]struct{}
	detached bool

	// mu guards the session and the event pipeline.
	mu      sync.Mutex
	session []byte
	queue   []bus.Event
	queued  int
	seq     uint64
	// inflight is the encoded batch that waits for an ack; nil when none.
	inflight []byte
	// deadline (Unix nanoseconds) is when inflight is sent again.
	deadline int64
	// ended is set once the close event is queued: nothing follows it.
	ended bool
	// announced is set once the connect event is queued.
	announced bool
	// finished is set once the close event was acknowledged.
	finished bool

	// Only the connection's reader (one at a time) touches these:
	// carry is unconsumed TCP input; rateSecond and rateCount count the
	// messages of the current second for MaxMessagesPerSecond.
	carry      []byte
	rateSecond int64
	rateCount  int32
}

// allowMessage counts one message in second now and reports whether the
// client stays within limit messages per second.
func (c *client) allowMessage(now int64, limit int) bool {
	if now != c.rateSecond {
		c.rateSecond, c.rateCount = now, 0
	}
	c.rateCount++
	return int(c.rateCount) <= limit
}

// setReason records why the socket is being closed, unless a reason is
// recorded already: the first cause wins.
func (c *client) setReason(r bus.CloseReason) {
	c.reason.CompareAndSwap(0, uint32(r))
}

func (c *client) closeReason() bus.CloseReason {
	if r := bus.CloseReason(c.reason.Load()); r != bus.CloseUnknown {
		return r
	}
	return bus.CloseClientClosed
}

// eventSize is what an event counts against MaxPendingEventBytes: its body
// plus a fixed overhead, so a flood of empty messages is bounded too.
func eventSize(e bus.Event) int { return len(e.Body) + 64 }

// isText reports whether data goes to WebSocket clients as a text frame:
// JSON reaches browsers as strings, and bytes that are not UTF-8 as binary.
// Callers compute it once per message, not once per recipient.
func isText(data []byte) bool { return utf8.Valid(data) }
