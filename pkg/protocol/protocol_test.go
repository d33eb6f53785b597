package protocol

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// splitAll feeds input to c in chunks of size step, the way a socket may
// deliver it, and returns every message in order.
func splitAll(t *testing.T, c Codec, input []byte, step, max int) ([][]byte, error) {
	t.Helper()
	var carry, out = []byte(nil), [][]byte(nil)
	for off := 0; off < len(input); off += step {
		end := min(off+step, len(input))
		carry = append(carry, input[off:end]...)
		for {
			msg, n, err := c.Split(carry, max)
			if err != nil {
				return out, err
			}
			if n == 0 {
				break
			}
			out = append(out, append([]byte(nil), msg...))
			carry = carry[n:]
		}
	}
	return out, nil
}

func TestCodecsRoundTripAnyChunking(t *testing.T) {
	msgs := [][]byte{[]byte("hello"), []byte(""), []byte("wörld ✓"), bytes.Repeat([]byte("x"), 300)}
	for _, c := range []Codec{Text{}, Frame{}} {
		var wire []byte
		for _, m := range msgs {
			wire = c.Append(wire, m)
		}
		for _, step := range []int{1, 2, 3, 7, len(wire)} {
			t.Run(c.Name(), func(t *testing.T) {
				got, err := splitAll(t, c, wire, step, 1024)
				require.NoError(t, err)
				require.Len(t, got, len(msgs))
				for i := range msgs {
					require.Equal(t, string(msgs[i]), string(got[i]))
				}
			})
		}
	}
}

func TestTextDropsCarriageReturn(t *testing.T) {
	got, err := splitAll(t, Text{}, []byte("a\r\nb\n\r\n"), 1, 10)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, []string{"a", "b", ""}, []string{string(got[0]), string(got[1]), string(got[2])})
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name  string
		codec Codec
		input []byte
		want  error
	}{
		{"text line over limit without newline", Text{}, bytes.Repeat([]byte("a"), 11), ErrTooLarge},
		{"text line over limit with newline", Text{}, append(bytes.Repeat([]byte("a"), 11), '\n'), ErrTooLarge},
		{"frame header announces too much", Frame{}, []byte{0, 0, 1, 0}, ErrTooLarge},
		{"frame length below header", Frame{}, []byte{0, 0, 0, 3}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := tt.codec.Split(tt.input, 10)
			require.ErrorIs(t, err, tt.want)
			require.Zero(t, n)
		})
	}
}

func TestByName(t *testing.T) {
	c, err := ByName("frame")
	require.NoError(t, err)
	require.Equal(t, "frame", c.Name())
	_, err = ByName("http")
	require.ErrorContains(t, err, `unknown protocol "http"`)
}

// FuzzSplit checks that no input makes a codec panic, consume more than it
// was given, or return a message over the limit.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("hello\nworld\r\n"), 8)
	f.Add([]byte{0, 0, 0, 9, 'h', 'e', 'l', 'l', 'o'}, 8)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1<<20)
	f.Add([]byte{0, 0, 0, 0}, 0)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 {
			max = -max
		}
		for _, c := range []Codec{Text{}, Frame{}} {
			buf := data
			for len(buf) > 0 {
				msg, n, err := c.Split(buf, max)
				if err != nil || n == 0 {
					break
				}
				if n > len(buf) || len(msg) > max {
					t.Fatalf("%s: n=%d len=%d msg=%d max=%d", c.Name(), n, len(buf), len(msg), max)
				}
				buf = buf[n:]
			}
		}
	})
}
