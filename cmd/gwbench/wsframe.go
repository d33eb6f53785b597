package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
)

// The lean WebSocket client of conns mode: a handshake on a blocking
// socket, then frames parsed from whatever the poller read, cut anywhere.
// It holds nothing per connection but a frameReader (two nil slices while
// idle), which is what lets one process hold 20,000 connections in a few
// megabytes.

// WebSocket opcodes (RFC 6455, 5.2).
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// Limits of the lean client: it only reads the bench protocol's short
// messages, so anything larger is an error, not a reason to grow.
const (
	maxHandshakeBytes = 4096
	maxLeanMessage    = 64 << 10
)

// Errors of the lean client.
var (
	errHandshake   = errors.New("websocket handshake")
	errFrameTooBig = errors.New("websocket frame larger than 64 KiB")
	errBadFrame    = errors.New("bad websocket frame")
)

// wsGUID is RFC 6455's accept-key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept a server must answer to key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// handshake upgrades conn to WebSocket as a client of u with key (a
// base64 of 16 bytes) and returns the bytes that followed the response
// head: frames the server sent at once. The caller sets conn's deadline.
func handshake(conn net.Conn, u *url.URL, key string) ([]byte, error) {
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxHandshakeBytes {
				return nil, fmt.Errorf("%w: response head over %d bytes", errHandshake, maxHandshakeBytes)
			}
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			if err := checkUpgrade(buf[:end], key); err != nil {
				return nil, err
			}
			return bytes.Clone(buf[end+4:]), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// checkUpgrade checks a response head: status 101 and the right accept key.
func checkUpgrade(head []byte, key string) error {
	lines := bytes.Split(head, []byte("\r\n"))
	status := lines[0]
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("%w: status %q", errHandshake, status)
	}
	want := acceptKey(key)
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			if string(bytes.TrimSpace(value)) != want {
				return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errHandshake)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: no Sec-WebSocket-Accept", errHandshake)
}

// appendFrame appends one final client frame (masked with mask, as RFC
// 6455 requires of clients) of opcode op carrying payload.
func appendFrame(dst []byte, op byte, payload []byte, mask uint32) []byte {
	dst = append(dst, 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var key [4]byte
	binary.BigEndian.PutUint32(key[:], mask)
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= key[i&3]
	}
	return dst
}

// frameHandler gets what a frameReader parses.
type frameHandler interface {
	// message is a whole data message (fragments joined); payload is only
	// valid during the call.
	message(op byte, payload []byte)
	// control is a ping, pong or close frame; payload as above.
	control(op byte, payload []byte)
}

// frameReader parses server frames fed in pieces cut anywhere. partial
// holds an unfinished frame, msg the fragments of an unfinished message;
// both are nil between messages, which is nearly always.
type frameReader struct {
	partial []byte
	msg     []byte
	msgOp   byte
}

// feed parses data, calling h for each complete message and control
// frame. It keeps (copies) what is left of an unfinished frame.
func (r *frameReader) feed(data []byte, h frameHandler) error {
	if len(r.partial) > 0 {
		r.partial = append(r.partial, data...)
		data = r.partial
	}
	for {
		n, err := r.next(data, h)
		if err != nil {
			r.partial = nil
			return err
		}
		if n == 0 {
			break
		}
		data = data[n:]
	}
	switch {
	case len(data) == 0:
		r.partial = nil
	case len(r.partial) > 0:
		// data is the tail of partial: move it to the front.
		r.partial = r.partial[:copy(r.partial, data)]
	default:
		r.partial = append([]byte(nil), data...)
	}
	return nil
}

// next parses one frame at the start of data and returns its length, or 0
// when data holds no whole frame yet.
func (r *frameReader) next(data []byte, h frameHandler) (int, error) {
	if len(data) < 2 {
		return 0, nil
	}
	b0, b1 := data[0], data[1]
	fin, op, masked := b0&0x80 != 0, b0&0x0F, b1&0x80 != 0
	if b0&0x70 != 0 {
		return 0, fmt.Errorf("%w: reserved bits set", errBadFrame)
	}
	hdr := 2
	var n uint64
	switch l := b1 & 0x7F; l {
	case 126:
		if len(data) < 4 {
			return 0, nil
		}
		n, hdr = uint64(binary.BigEndian.Uint16(data[2:])), 4
	case 127:
		if len(data) < 10 {
			return 0, nil
		}
		n, hdr = binary.BigEndian.Uint64(data[2:]), 10
	default:
		n = uint64(l)
	}
	if n > maxLeanMessage {
		return 0, errFrameTooBig
	}
	var key []byte
	if masked {
		if len(data) < hdr+4 {
			return 0, nil
		}
		key, hdr = data[hdr:hdr+4], hdr+4
	}
	total := hdr + int(n)
	if len(data) < total {
		return 0, nil
	}
	payload := data[hdr:total]
	if masked {
		for i := range payload {
			payload[i] ^= key[i&3]
		}
	}
	switch {
	case op >= opClose:
		if !fin || n > 125 {
			return 0, fmt.Errorf("%w: fragmented or long control frame", errBadFrame)
		}
		h.control(op, payload)
	case op == opCont:
		if r.msg == nil {
			return 0, fmt.Errorf("%w: continuation without a message", errBadFrame)
		}
		if len(r.msg)+len(payload) > maxLeanMessage {
			return 0, errFrameTooBig
		}
		r.msg = append(r.msg, payload...)
		if fin {
			msg := r.msg
			r.msg = nil
			h.message(r.msgOp, msg)
		}
	case op == opText || op == opBinary:
		if r.msg != nil {
			return 0, fmt.Errorf("%w: new message inside a fragmented one", errBadFrame)
		}
		if fin {
			h.message(op, payload)
		} else {
			r.msg, r.msgOp = append(make([]byte, 0, len(payload)), payload...), op
		}
	default:
		return 0, fmt.Errorf("%w: opcode %d", errBadFrame, op)
	}
	return total, nil
}
