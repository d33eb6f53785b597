package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors a [Codec] returns from Split. The gateway closes the connection with
// a protocol-error reason when it sees one.
var (
	// ErrTooLarge means a message is larger than the limit given to Split.
	ErrTooLarge = errors.New("protocol: message too large")
	// ErrMalformed means the input can never become a valid message.
	ErrMalformed = errors.New("protocol: malformed input")
)

// Codec splits a byte stream into messages and frames outgoing ones.
// Implementations must be safe for concurrent use: one value serves every
// connection of a listener.
type Codec interface {
	// Name is the protocol's name in configuration and logs ("text", "frame").
	Name() string
	// Split looks for one whole message at the start of buf. It returns the
	// message (which may alias buf) and how many bytes of buf it consumed.
	// n == 0 with a nil error means "need more input". A message larger than
	// max bytes must yield ErrTooLarge as soon as that is known, without
	// waiting for the rest of it.
	Split(buf []byte, max int) (msg []byte, n int, err error)
	// Append appends msg, framed for the wire, to dst and returns the result.
	Append(dst, msg []byte) []byte
}

// Text is GatewayWorker's "text" protocol: one message per line, ended by
// "\n"; a "\r" before it is dropped. Messages must not contain "\n".
type Text struct{}

// Name returns "text".
func (Text) Name() string { return "text" }

// Split returns the first line of buf without its line ending.
func (Text) Split(buf []byte, max int) ([]byte, int, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > max {
			return nil, 0, fmt.Errorf("%w: line longer than %d bytes", ErrTooLarge, max)
		}
		return nil, 0, nil
	}
	line := buf[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > max {
		return nil, 0, fmt.Errorf("%w: line of %d bytes, limit %d", ErrTooLarge, len(line), max)
	}
	return line, i + 1, nil
}

// Append appends msg and a "\n".
func (Text) Append(dst, msg []byte) []byte {
	dst = append(dst, msg...)
	return append(dst, '\n')
}

// FrameHeaderLen is the size of the [Frame] protocol's length header.
const FrameHeaderLen = 4

// Frame is GatewayWorker's "frame" protocol: a 4-byte big-endian length that
// counts itself, then the payload.
type Frame struct{}

// Name returns "frame".
func (Frame) Name() string { return "frame" }

// Split returns the payload of the first frame in buf.
func (Frame) Split(buf []byte, max int) ([]byte, int, error) {
	if len(buf) < FrameHeaderLen {
		return nil, 0, nil
	}
	total := binary.BigEndian.Uint32(buf)
	if total < FrameHeaderLen {
		return nil, 0, fmt.Errorf("%w: frame length %d is below the %d-byte header", ErrMalformed, total, FrameHeaderLen)
	}
	if int64(total)-FrameHeaderLen > int64(max) {
		return nil, 0, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, total-FrameHeaderLen, max)
	}
	if uint64(len(buf)) < uint64(total) {
		return nil, 0, nil
	}
	return buf[FrameHeaderLen:total], int(total), nil
}

// Append appends the length header and msg.
func (Frame) Append(dst, msg []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)+FrameHeaderLen))
	return append(dst, msg...)
}

// ByName returns the built-in codec called name.
func ByName(name string) (Codec, error) {
	switch name {
	case "text":
		return Text{}, nil
	case "frame":
		return Frame{}, nil
	}
	return nil, fmt.Errorf("protocol: unknown protocol %q (want text or frame)", name)
}
