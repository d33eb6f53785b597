package gateway

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lesismal/nbio"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// transport writes to one client's socket. Implementations never block:
// nbio queues what the socket cannot take, up to Config.SendQueueLimit.
type transport interface {
	// queued is how many bytes written through writeFrames still wait in
	// nbio for the socket (see sendQueue).
	queued() int
	// send writes one message; text says it is valid UTF-8 (see isText).
	send(data []byte, text bool) error
	// appendFrame appends data's wire form to dst, for writeFrames; ok is
	// false when the transport cannot coalesce (a compressed WebSocket).
	appendFrame(dst, data []byte, text bool) (frames []byte, ok bool)
	// writeFrames writes what appendFrame built, in one write.
	writeFrames(frames []byte) error
	// ping sends a protocol-level keepalive, where the protocol has one.
	ping()
	// close closes the socket, after sending last if it is not empty,
	// saying why where the protocol can (a WebSocket close frame with
	// r.WSCode and r.WSText; raw TCP protocols have no way to).
	close(last []byte, r bus.CloseReason)
}

// sendQueue counts the bytes that wait in nbio for one socket, so that the
// fanout can check SendQueueLimit before it builds frames: nbio's own check
// (MaxWriteBufferSize) compares the bytes it holds plus the whole of each
// write with the limit, before the socket takes any of it, so one write
// larger than the limit closes even a client that reads, and whatever the
// gateway builds before writing is not counted at all. Bytes are added
// before nbio.Conn.Write, and nbio reports each chunk the kernel took
// (Engine.OnWrittenSize). nbio's own writes (pongs, close frames, TLS
// record overhead, compressed messages) are only reported, never added, so
// the count errs low and is kept at or above zero: nbio's check still
// closes a client whose queue truly overflows.
type sendQueue struct{ unsent atomic.Int64 }

func (q *sendQueue) queued() int { return int(q.unsent.Load()) }

// countWritten is the engines' OnWrittenSize: the socket took n bytes of
// what waited for conn. The queue is the poller conn's session's: a raw TCP
// client's, an upgraded ws:// client's transport, or a tlsSession, which
// wss:// and +tls:// transports share (before its client exists or the
// upgrade, it counts nothing and stays at zero).
func countWritten(conn *nbio.Conn, _ []byte, n int) {
	switch s := conn.Session().(type) {
	case *client:
		if t, ok := s.t.(*tcpTransport); ok {
			t.written(n)
		}
	case *wsTransport:
		s.written(n)
	case *tlsSession:
		s.sent.written(n)
	}
}

// adding counts n bytes about to be written.
func (q *sendQueue) adding(n int) { q.unsent.Add(int64(n)) }

// written counts n bytes that the socket took.
func (q *sendQueue) written(n int) {
	for {
		v := q.unsent.Load()
		if q.unsent.CompareAndSwap(v, max(0, v-int64(n))) {
			return
		}
	}
}

// frameBuffers hold one framed message while it is written: nbio copies
// what the socket does not take at once, so a buffer is free again when the
// write returns.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledFrame bounds the buffers kept for reuse.
const maxPooledFrame = 64 << 10

// sendFramed writes one message through t's appendFrame and writeFrames,
// framed into a pooled buffer: no allocation per push. ok is false, and
// nothing was written, when t cannot frame it (a compressed WebSocket).
func sendFramed(t transport, data []byte, text bool) (ok bool, err error) {
	buf := frameBuffers.Get().(*[]byte)
	if *buf, ok = t.appendFrame((*buf)[:0], data, text); ok {
		err = t.writeFrames(*buf)
	}
	if cap(*buf) <= maxPooledFrame {
		frameBuffers.Put(buf)
	}
	return ok, err
}

// client is one connection. Its fields are grouped by the lock that guards
// them; an idle client costs only this struct and its registry entries.
type client struct {
	// id is the tail of reply, the reply subject of the client's event
	// batches: one string for both.
	id    string
	reply string
	addr  string
	t     transport

	// Guarded by registry.mu. unaccepted: the client waits for its token
	// or, pending, for a worker's accept; it gets no broadcasts and can
	// have no groups or uid meanwhile (auth.go).
	uid        string
	groups     map[string]struct{}
	unaccepted bool

	// mu guards the session and the event pipeline.
	mu      sync.Mutex
	session []byte
	queue   []bus.Event
	// inflight is the encoded batch that waits for an ack; nil when none.
	inflight []byte
	seq      uint64
	// deadline (Unix nanoseconds) is when inflight is sent again.
	deadline int64
	queued   int32
	// claimed: a worker was granted inflight since it was last sent, so a
	// stale copy elsewhere must not run (see answerClaimLocked); resent:
	// inflight was marked bus.EventBatch.Resent.
	claimed, resent bool
	// direct is where c's batches go: "" for the queue group, else the
	// subject of the sticky worker that acknowledged c's last batch
	// (bus.Ack.Worker); cleared when that worker does not answer.
	direct string

	// rec is the recovery state of a client that opted in with the
	// recover query parameter (history.go); nil otherwise. Set before the
	// client is announced, never changed.
	rec *recovery

	// auth is the authentication state (auth.go), guarded by mu; nil when
	// the gateway requires none, so that clients without it do not carry
	// its fields.
	auth *clientAuth
	// awaiting is set while the first message must be a token message.
	awaiting atomic.Bool

	// silent counts heartbeat intervals without input.
	silent atomic.Int32
	// reason is the CloseReason recorded by whoever closes the socket.
	reason atomic.Uint32
	// frame is the client's default bus.Frame (bus.OpSetFrame); zero
	// defers to Config.WebSocketType.
	frame atomic.Uint32

	// Only the connection's reader (one at a time) touches these: they
	// count the messages of the current second for MaxMessagesPerSecond.
	rateSecond uint32
	rateCount  uint16

	// shard is the fanout goroutine that writes this client's pushes.
	shard uint8
	// pingPart is the part of the clients the heartbeat visits it with
	// (heartbeat.go).
	pingPart uint8
	// detached is guarded by registry.mu, the rest by mu.
	detached bool
	// ended is set once the close event is queued: nothing follows it.
	ended bool
	// announced is set once the connect event is queued.
	announced bool
	// finished is set once the close event was acknowledged.
	finished bool
}

// allowMessage counts one message in second now and reports whether the
// client stays within limit messages per second.
func (c *client) allowMessage(now int64, limit int) bool {
	if sec := uint32(now); sec != c.rateSecond { // equality only: wrapping is harmless
		c.rateSecond, c.rateCount = sec, 0
	}
	if c.rateCount < math.MaxUint16 { // limit is at most MaxMessagesPerSecondLimit
		c.rateCount++
	}
	return int(c.rateCount) <= limit
}

// setReason records why the socket is being closed, unless a reason is
// recorded already: the first cause wins.
func (c *client) setReason(r bus.CloseReason) {
	c.reason.CompareAndSwap(0, uint32(r))
}

// end records r as the reason c closes, unless one is recorded already,
// and closes c's socket with the recorded reason, after last (if not
// empty): the close code the client sees is the reason workers hear.
// clientAuth is a client's authentication state. While holding, events
// are held (heldBytes of them), the connect events first, until the token
// came and NATS confirmed the subscriptions it gave (see push); sub is the
// token's subject, which a fresh token must repeat; expires (Unix ns, exp
// plus the leeway) ends the client's life unless a fresh token comes;
// timer fires at the auth timeout, then at expires.
type clientAuth struct {
	holding   bool
	held      []bus.Event
	heldBytes int32
	sub       string
	expires   int64
	timer     *time.Timer
}

func (c *client) end(r bus.CloseReason, last []byte) {
	c.setReason(r)
	c.t.close(last, c.closeReason())
}

// closing reports whether c's socket is closed or being closed: every path
// that closes it records a reason first (onSocketClosed at the latest).
func (c *client) closing() bool { return c.reason.Load() != uint32(bus.CloseUnknown) }

func (c *client) closeReason() bus.CloseReason {
	if r := bus.CloseReason(c.reason.Load()); r != bus.CloseUnknown {
		return r
	}
	return bus.CloseClientClosed
}

// eventOverhead is what an event costs beyond its variable fields: a
// flood of empty messages is bounded too.
const eventOverhead = 64

// eventSize is what an event counts against MaxPendingEventBytes and
// MaxBatchBytes: an upper bound of its encoded size. A connect event
// carries its handshake's path, query and headers.
func eventSize(e bus.Event) int {
	n := len(e.Body) + eventOverhead
	if ws := e.WS; ws != nil {
		n += len(ws.Path) + len(ws.Query)
		for k, vs := range ws.Header {
			n += len(k) + 8
			for _, v := range vs {
				n += len(v) + 8
			}
		}
	}
	return n
}

// batchOverhead bounds what a batch of c's carries besides its events:
// ids, address, uid and session. c.mu must be held.
func batchOverhead(gatewayID string, c *client, uid string) int {
	return len(gatewayID) + len(c.reply) + len(c.addr) + len(uid) + len(c.session) + eventOverhead
}

// isText reports whether data can go to WebSocket clients as a text frame:
// a text frame must carry UTF-8, or browsers fail the connection (1007).
func isText(data []byte) bool { return utf8.Valid(data) }

// framing chooses the frame type of one push for each recipient: the
// push's own choice, else the recipient's default, else the gateway's. It
// checks the body for UTF-8 once per push, and only when a recipient's
// frame may be text.
type framing struct {
	body []byte
	push bus.Frame
	dflt bus.Frame
	utf8 int8 // 0 not checked yet, 1 UTF-8, -1 not
}

func newFraming(body []byte, push, gatewayDefault bus.Frame) framing {
	return framing{body: body, push: push, dflt: gatewayDefault}
}

// text reports whether c gets the push as a text frame.
func (f *framing) text(c *client) bool {
	ft := f.push
	if ft == bus.FrameDefault {
		ft = bus.Frame(c.frame.Load())
	}
	if ft == bus.FrameDefault {
		ft = f.dflt
	}
	if ft == bus.FrameBinary {
		return false
	}
	if f.utf8 == 0 {
		f.utf8 = -1
		if isText(f.body) {
			f.utf8 = 1
		}
	}
	return f.utf8 == 1
}
