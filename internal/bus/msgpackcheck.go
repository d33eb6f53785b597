package bus

import (
	"encoding/binary"
	"fmt"
)

// checkLengths walks the first msgpack object of b without decoding it and
// fails when any string, binary, array or map claims more than the bytes
// left could hold. msgpack/v5 sizes maps by their header before reading
// them, so without this check seven bytes that announce a map of a billion
// entries make the decoder allocate gigabytes (found by FuzzUnmarshal).
// After it, every allocation is bounded by len(b).
//
// Extension types are refused: envelopes never hold any, and msgpack/v5
// reads a map or array header found inside an extension's payload as the
// container itself, which would slip past this walk. Sessions, which may
// hold times (extension -1), are decoded by decodeSessionValue instead.
func checkLengths(b []byte) error {
	return walkLengths(b, false)
}

// walkLengths is checkLengths; allowTime lets the time extension (-1) through.
func walkLengths(b []byte, allowTime bool) error {
	pending := 1 // objects still to read
	i := 0
	need := func(n uint64) error {
		if n > uint64(len(b)-i) {
			return fmt.Errorf("%w: msgpack length %d at byte %d, only %d bytes left", ErrBadEnvelope, n, i, len(b)-i)
		}
		return nil
	}
	// length reads an n-byte big-endian length at i.
	length := func(n int) (uint64, error) {
		if err := need(uint64(n)); err != nil {
			return 0, err
		}
		var v uint64
		switch n {
		case 1:
			v = uint64(b[i])
		case 2:
			v = uint64(binary.BigEndian.Uint16(b[i:]))
		case 4:
			v = uint64(binary.BigEndian.Uint32(b[i:]))
		}
		i += n
		return v, nil
	}
	for pending > 0 {
		if i >= len(b) {
			return fmt.Errorf("%w: msgpack truncated", ErrBadEnvelope)
		}
		c := b[i]
		i++
		pending--
		var skip, items uint64
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			skip, err = length(1)
		case c == 0xc5 || c == 0xda:
			skip, err = length(2)
		case c == 0xc6 || c == 0xdb:
			skip, err = length(4)
		case c == 0xc7 || c == 0xc8 || c == 0xc9: // ext: length, then a type byte
			skip, err = length(1 << (c - 0xc7))
			if err == nil {
				err = extAllowed(b, i, allowTime)
			}
			skip++
		case c == 0xca || c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcb || c == 0xcf || c == 0xd3:
			skip = 8
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16 and a type byte
			skip = 1 + 1<<(c-0xd4)
			err = extAllowed(b, i, allowTime)
		case c == 0xdc:
			items, err = length(2)
		case c == 0xdd:
			items, err = length(4)
		case c == 0xde:
			items, err = length(2)
			items *= 2
		case c == 0xdf:
			items, err = length(4)
			items *= 2
		default:
			return fmt.Errorf("%w: msgpack byte 0x%02x at %d", ErrBadEnvelope, c, i-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		i += int(skip)
		if err := need(items); err != nil { // every item takes at least a byte
			return err
		}
		pending += int(items)
	}
	return nil
}

// extAllowed checks the type byte of an extension at b[i].
func extAllowed(b []byte, i int, allowTime bool) error {
	if i < len(b) && allowTime && int8(b[i]) == -1 {
		return nil
	}
	return fmt.Errorf("%w: msgpack extension at byte %d", ErrBadEnvelope, i)
}
