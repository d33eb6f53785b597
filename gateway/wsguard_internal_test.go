package gateway

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// maskedFrame builds a masked client frame with first byte b0.
func maskedFrame(b0 byte, payload []byte) []byte {
	out := []byte{b0}
	switch n := len(payload); {
	case n > 0xffff:
		out = binary.BigEndian.AppendUint64(append(out, 0x80|127), uint64(n))
	case n > 125:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	default:
		out = append(out, 0x80|byte(n))
	}
	return append(append(out, 1, 2, 3, 4), payload...) // the payload's masking is not the guard's business
}

// validStream is frames of every length encoding, fragmented messages with
// control frames between, and a compressed message's RSV1.
func validStream() []byte {
	var s []byte
	for _, f := range [][]byte{
		maskedFrame(0x81, []byte("hello")),
		maskedFrame(0x82, bytes.Repeat([]byte{7}, 300)),
		maskedFrame(0x81, bytes.Repeat([]byte{'x'}, 70_000)),
		maskedFrame(0x01, []byte("fr")),
		maskedFrame(0x89, []byte("ping")),
		maskedFrame(0x00, []byte("ag")),
		maskedFrame(0x8a, nil),
		maskedFrame(0x80, []byte("ment")),
		maskedFrame(0xc1, []byte("deflated")),
		maskedFrame(0x88, []byte{3, 232}),
	} {
		s = append(s, f...)
	}
	return s
}

// TestFrameGuardAcceptsValidStreamsSplitAnywhere: a frame header may be
// cut by any read boundary.
func TestFrameGuardAcceptsValidStreamsSplitAnywhere(t *testing.T) {
	s := validStream()
	for cut := range len(s) + 1 {
		f := frameGuard{deflate: true}
		require.NoError(t, f.scan(s[:cut]), "cut at %d", cut)
		require.NoError(t, f.scan(s[cut:]), "cut at %d", cut)
		require.Zero(t, f.left)
		require.Zero(t, f.n)
		require.False(t, f.fragmented)
	}
}

// FuzzFrameGuard: splitting the stream in two reads never changes the
// verdict.
func FuzzFrameGuard(f *testing.F) {
	f.Add(validStream(), uint16(7), true)
	f.Add([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, uint16(3), false)
	f.Add(maskedFrame(0x09, []byte("p")), uint16(1), false)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, deflate bool) {
		whole := frameGuard{deflate: deflate}
		errWhole := whole.scan(data)
		c := int(cut) % (len(data) + 1)
		split := frameGuard{deflate: deflate}
		errSplit := split.scan(data[:c])
		if errSplit == nil {
			errSplit = split.scan(data[c:])
		}
		if errWhole != errSplit {
			t.Fatalf("whole: %v, split at %d: %v", errWhole, c, errSplit)
		}
	})
}

// BenchmarkFrameGuard is the guard's cost on the echo path: 64-byte
// messages in 16 KiB reads (nbio's read buffer).
func BenchmarkFrameGuard(b *testing.B) {
	one := maskedFrame(0x81, bytes.Repeat([]byte{'x'}, 64))
	read := bytes.Repeat(one, (16<<10)/len(one))
	frames := len(read) / len(one)
	f := frameGuard{}
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	b.ResetTimer()
	for i := 0; i < b.N; i += frames {
		if err := f.scan(read); err != nil {
			b.Fatal(err)
		}
	}
}
