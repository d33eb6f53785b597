package gateway

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// Errors of the WebSocket input checks, as nbio's close callbacks see
// them; clients and workers see close codes and bus.CloseReason instead.
var (
	// errFrameProtocol means a client frame broke RFC 6455 §5: the gateway
	// answered with close code 1002; workers hear bus.CloseProtocolError.
	errFrameProtocol = errors.New("gateway: websocket frame breaks RFC 6455")
	// errMessageTooLarge means a client's uncompressed message passed
	// MaxMessageSize, as its frame headers said: the gateway answered
	// with close code 4503 (bus.CloseMessageTooLarge), before the payload
	// came.
	errMessageTooLarge = errors.New("gateway: websocket message over MaxMessageSize")
	// errHeaderTooLarge means an upgrade request's head passed
	// MaxHeaderBytes or MaxHeaderCount: the gateway answered 431.
	errHeaderTooLarge = errors.New("gateway: request header fields too large")
)

// frameError is one way a frame breaks RFC 6455; its text is the close
// frame's reason (at most 123 bytes).
type frameError string

func (e frameError) Error() string        { return string(e) }
func (e frameError) Is(target error) bool { return target == errFrameProtocol }

const (
	errUnmasked          = frameError("client frame not masked")
	errLengthTopBit      = frameError("frame length with the most significant bit set")
	errReservedBits      = frameError("reserved bits set without an extension")
	errReservedOpcode    = frameError("reserved opcode")
	errFragmentedControl = frameError("fragmented control frame")
	errControlTooLong    = frameError("control frame over 125 bytes")
	errCloseLength       = frameError("close frame with a 1-byte payload")
	errContinuation      = frameError("continuation frame without a message to continue")
	errUnfinished        = frameError("new data frame before the fragmented message ended")
)

// frameGuard checks the header of every frame a client sends before nbio
// parses it. nbio v1.6.8 does not check them itself, or checks them too
// late: it reads a 64-bit length as a signed int64, so a length with the
// top bit set is negative, passes the MaxMessageSize check, and nbio then
// buffers the stream without end (up to its 64 MiB ReadLimit, per
// connection); it accepts unmasked frames; and the frames it refuses
// (reserved bits or opcodes, bad continuations, fragmented or long control
// frames) it refuses only once their whole payload has arrived, by
// dropping the TCP connection without a close frame. The guard sees only
// headers: it keeps no payload, allocates nothing, and costs a few
// comparisons per frame.
type frameGuard struct {
	// left is how many payload bytes of the current frame are still to come.
	left uint64
	// head holds a header split across reads; n is how much of it came.
	head [14]byte
	n    uint8
	// fragmented is set inside a message whose last frame has not come.
	fragmented bool
	// deflate is set when permessage-deflate was negotiated: RSV1 then
	// marks a compressed message.
	deflate bool
	// compressed is set inside a compressed message: its frames say
	// nothing of its size, which nbio checks once inflated (close code
	// 1009, its own).
	compressed bool
	// limit is MaxMessageSize; message counts the current data message's
	// payload bytes so far.
	limit, message uint64
	// first, if set, is the limit of the client's first data message
	// instead of limit: a client that must send its token first
	// (auth.go) sends a token message, and one of MaxMessageSize (up to
	// 64 MiB) would sit in nbio's buffer before anyone knows who sent it.
	// It holds for the message's bytes on the wire, compressed or not.
	first uint64
	// cur is the limit of the current data message; strict makes it hold
	// for a compressed message's wire bytes too (the first message).
	cur    uint64
	strict bool
}

// headerLen is the length of a masked client frame header whose second
// byte is b1.
func headerLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// scan checks the frame headers in data, the next bytes of the stream.
func (f *frameGuard) scan(data []byte) error {
	for len(data) > 0 {
		if f.left > 0 {
			n := min(f.left, uint64(len(data)))
			f.left -= n
			data = data[n:]
			continue
		}
		if f.n == 0 && len(data) >= 2 {
			if data[1]&0x80 == 0 {
				return errUnmasked // before its (shorter) header is whole
			}
			if hl := headerLen(data[1]); len(data) >= hl {
				if err := f.check(data[:hl]); err != nil {
					return err
				}
				data = data[hl:]
				continue
			}
		}
		// A header split across reads: gather it.
		f.head[f.n] = data[0]
		f.n++
		data = data[1:]
		if f.n == 2 && f.head[1]&0x80 == 0 {
			return errUnmasked // its header is shorter than a masked one
		}
		if f.n >= 2 && int(f.n) == headerLen(f.head[1]) {
			f.n = 0
			if err := f.check(f.head[:headerLen(f.head[1])]); err != nil {
				return err
			}
		}
	}
	return nil
}

// check validates one whole frame header h (RFC 6455 §5.2, §5.4, §5.5) and
// sets up the guard for its payload.
func (f *frameGuard) check(h []byte) error {
	fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	if h[1]&0x80 == 0 {
		return errUnmasked
	}
	length := uint64(h[1] & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
		if length>>63 != 0 {
			return errLengthTopBit
		}
	}
	switch op {
	case 0x0: // continuation
		if !f.fragmented {
			return errContinuation
		}
		if rsv != 0 {
			return errReservedBits
		}
		f.fragmented = !fin
		f.message += length
		if f.cur > 0 && f.message > f.cur && (!f.compressed || f.strict) {
			return errMessageTooLarge
		}
	case 0x1, 0x2: // text, binary
		if f.fragmented {
			return errUnfinished
		}
		if rsv != 0 && (rsv != 0x40 || !f.deflate) {
			return errReservedBits
		}
		f.fragmented = !fin
		f.message, f.compressed = length, rsv != 0
		f.cur, f.strict = f.limit, false
		if f.first > 0 {
			f.cur, f.strict, f.first = f.first, true, 0
		}
		if f.cur > 0 && f.message > f.cur && (!f.compressed || f.strict) {
			return errMessageTooLarge
		}
	case 0x8, 0x9, 0xa: // close, ping, pong
		switch {
		case !fin:
			return errFragmentedControl
		case length > 125:
			return errControlTooLong
		case rsv != 0:
			return errReservedBits
		case op == 0x8 && length == 1:
			return errCloseLength
		}
	default:
		return errReservedOpcode
	}
	f.left = length
	return nil
}

// MaxHeaderCount bounds the header lines of an upgrade request.
const MaxHeaderCount = 100

// response431 ends a request whose head is too large (RFC 6585 §5).
var response431 = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

// handshakes bounds WebSocket handshakes in time and size. It closes
// connections whose handshake has not finished within HandshakeTimeout:
// nbio's own means, the engine's KeepaliveTime read deadline, races the
// upgrade: the accepting goroutine sets that deadline after it hands the
// connection to the poller, so when the handshake is handled first, the
// deadline lands after the upgrade cleared it and the WebSocket connection
// dies HandshakeTimeout after it opened, however active (1 idle connection
// in 2,000 was lost so with 3 gateways and 3 load generators sharing 2
// cores). And it counts what a connection sends before its upgrade: nbio's
// parser keeps every header line of a request in memory, without bound
// (20 MiB of headers were accepted, then sent to workers).
type handshakes struct {
	timeout time.Duration
	// maxBytes bounds the bytes read before the upgrade (see within).
	maxBytes int
	mu       sync.Mutex
	pending  map[*nbio.Conn]*handshake
	// stopping is set once the gateway stops: no handshake is parsed.
	stopping bool
}

type handshake struct {
	timer *time.Timer
	// bytes and lines count what came before the upgrade.
	bytes, lines int
	// refused is set once a request was answered without an upgrade:
	// guardedData (ws://) or serveWSS (wss://) closes the connection when
	// nbio's parser has returned.
	refused bool
	// parsing is set while nbio's parser reads the connection's data on
	// its poller (ws://). closing is set once the connection is to close
	// from another goroutine: then no parse starts, and one in progress is
	// followed by the close, on the poller (see guardedData).
	parsing, closing bool
}

// pollerConn is the nbio connection under c: what OnOpen and OnData see.
func pollerConn(c net.Conn) *nbio.Conn {
	for {
		switch v := c.(type) {
		case *nbio.Conn:
			return v
		case *nbhttp.Conn:
			c = v.Conn
		case interface{ NetConn() net.Conn }: // crypto/tls's Conn
			c = v.NetConn()
		case *tlsSession:
			return v.nbc
		default:
			return nil
		}
	}
}

// opened starts c's handshake clock. A connection that closes before its
// handshake ends stays pending until its timer fires, which then closes it
// again, harmlessly: no work for every close.
func (h *handshakes) opened(c *nbio.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := &handshake{}
	hs.timer = time.AfterFunc(h.timeout, func() {
		if h.closeLater(c, hs) {
			return
		}
		_ = c.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		// nbio may reuse the connection for a later one: hs must still be
		// its entry.
		if h.pending[c] == hs {
			delete(h.pending, c)
		}
	})
	h.pending[c] = hs
}

// closeLater marks c's handshake hs closing, and reports whether c is
// already taken care of: gone from the handshakes (upgraded, or a later
// connection's), or being parsed, so that its poller closes it. Otherwise
// the caller closes c: closing it from another goroutine while nbio's
// parser runs a handler would freeze the poller (see closingAfterRead).
func (h *handshakes) closeLater(c *nbio.Conn, hs *handshake) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending[c] != hs {
		return true
	}
	hs.closing = true
	return hs.parsing
}

// stop closes every connection still in its handshake and returns once
// none is being parsed, or at ctx's end; from then on no handshake is
// parsed and nbio's own shutdown may close connections from its goroutine.
func (h *handshakes) stop(ctx context.Context) {
	h.mu.Lock()
	h.stopping = true
	idle := make([]*nbio.Conn, 0, len(h.pending))
	for c, hs := range h.pending {
		hs.closing = true
		if !hs.parsing {
			idle = append(idle, c)
		}
	}
	h.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for h.parsingAny() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *handshakes) parsingAny() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hs := range h.pending {
		if hs.parsing {
			return true
		}
	}
	return false
}

// finished ends a connection's handshake clock.
func (h *handshakes) finished(c *nbio.Conn) {
	h.mu.Lock()
	hs := h.pending[c]
	delete(h.pending, c)
	h.mu.Unlock()
	if hs != nil {
		hs.timer.Stop()
	}
}

// within counts data, read by hs's connection before its upgrade, and
// reports whether the request head is still within bounds. data is the
// request's text: on a TLS listener, what crypto/tls decrypted (the TLS
// handshake is bounded by crypto/tls and MaxPendingEventBytes). h.mu is
// held.
func (h *handshakes) within(hs *handshake, data []byte) bool {
	hs.bytes += len(data)
	for _, b := range data {
		if b == '\n' {
			hs.lines++
		}
	}
	return hs.bytes <= h.maxBytes && hs.lines <= MaxHeaderCount+2
}

// bound counts data, read by c before its upgrade, and past the bounds
// answers 431 on w and returns errHeaderTooLarge: c is to be closed.
func (h *handshakes) bound(c *nbio.Conn, w io.Writer, data []byte) error {
	h.mu.Lock()
	hs := h.pending[c]
	ok := hs == nil || h.within(hs, data) // nil: upgraded, or timed out and closing
	h.mu.Unlock()
	if ok {
		return nil
	}
	_, _ = w.Write(response431)
	return errHeaderTooLarge
}

// errHandshakeClosing is why a connection whose handshake was to close
// (timed out, or the gateway stopping) read no further.
var errHandshakeClosing = errors.New("gateway: websocket handshake closing")

// guardedData wraps the engine's data handler: before the upgrade it
// bounds the request head, answering 431 and closing past MaxHeaderBytes,
// so that a client sending header lines without end holds at most that
// much, and it closes connections whose request was refused (see
// closingAfterRead) or that were to close meanwhile (closeLater, stop)
// once the parser has returned. After the upgrade it costs a type check.
// wss:// connections, whose session is a tlsSession, pass through:
// serveWSS bounds their decrypted head.
func (h *handshakes) guardedData(c *nbio.Conn, data []byte) {
	p, ok := c.Session().(*nbhttp.Parser)
	if !ok {
		c.DataHandler()(c, data)
		return
	}
	hs, err := h.parse(c, data)
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			_, _ = p.Conn.Write(response431)
		}
		_ = c.CloseWithError(err)
		return
	}
	c.DataHandler()(c, data)
	if hs != nil && h.parsed(c, hs) {
		_ = c.Close()
	}
}

// parse admits data, read by c before its upgrade, to nbio's parser and
// returns c's handshake, marked parsing (nil: c upgraded, or it closed and
// nbio runs no handler for it), or the error to close c with.
func (h *handshakes) parse(c *nbio.Conn, data []byte) (*handshake, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := h.pending[c]
	switch {
	case h.stopping || hs != nil && hs.closing:
		return nil, errHandshakeClosing
	case hs == nil:
		return nil, nil
	case !h.within(hs, data):
		return nil, errHeaderTooLarge
	}
	hs.parsing = true
	return hs, nil
}

// parsed ends hs's parse and reports whether c, still in its handshake,
// is to close now: its request was refused, or it was to close meanwhile.
func (h *handshakes) parsed(c *nbio.Conn, hs *handshake) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs.parsing = false
	if h.pending[c] != hs || !hs.refused && !hs.closing {
		return false
	}
	delete(h.pending, c)
	hs.timer.Stop()
	return true
}

// refused reports whether c's request was answered without an upgrade
// (see closingAfterRead).
func (h *handshakes) refused(c *nbio.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := h.pending[c]
	return hs != nil && hs.refused
}

// closingAfterRead wraps the engine's HTTP handler, which runs inside
// nbio's parser (on ws://, on the poller; on wss://, in serveWSS's), so that
// no connection is closed there. On ws:// nbio runs a handler as a job of the
// connection's serial executor while its parser holds the parser's lock;
// a close meanwhile queues the connection's cleanup behind that job, in
// the same loop, and the cleanup takes the parser's lock again: the poller
// froze, with every connection on it. nbio closes there after a response
// that ends the connection (HTTP/1.0, "Connection: close"). A request that
// did not upgrade is answered "Connection: close" instead, and guardedData
// closes its connection once the parser has returned. (An upgraded
// connection's cleanup takes the WebSocket connection's lock, not the
// parser's.) On wss:// such a close would not freeze anything (the
// tlsSession ends the parser after its drain), but the connection is closed
// the same way, so both listeners answer alike.
func (h *handshakes) closingAfterRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		p := parserOf(w)
		if p == nil {
			return
		}
		nc := pollerConn(p.Conn)
		h.mu.Lock()
		defer h.mu.Unlock()
		if hs := h.pending[nc]; hs != nil { // not upgraded
			hs.refused, r.Close = true, false
			w.Header().Set("Connection", "close")
		}
	})
}

// parserOf is the parser that read the request w answers, or nil.
func parserOf(w http.ResponseWriter) *nbhttp.Parser {
	if res, ok := w.(*nbhttp.Response); ok {
		return res.Parser
	}
	return nil
}

// badHandshake says what makes r an invalid opening handshake that nbio's
// upgrader lets through (RFC 6455 §4.2.1), or "".
func badHandshake(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return "websocket upgrade needs HTTP/1.1"
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	var nonce [18]byte
	if n, err := base64.StdEncoding.Decode(nonce[:], []byte(key)); len(key) != 24 || err != nil || n != 16 {
		return "Sec-WebSocket-Key is not a base64-encoded 16-byte value"
	}
	return ""
}
