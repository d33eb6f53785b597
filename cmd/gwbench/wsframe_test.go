package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serverFrame builds an unmasked server frame.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, byte(n))
	case n <= 0xFFFF:
		out = binary.BigEndian.AppendUint16(append(out, 126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 127), uint64(n))
	}
	return append(out, payload...)
}

// recorder is a frameHandler that writes down what it gets.
type recorder struct{ events []string }

func (r *recorder) message(op byte, p []byte) {
	r.events = append(r.events, fmt.Sprintf("msg %d %q", op, p))
}

func (r *recorder) control(op byte, p []byte) {
	r.events = append(r.events, fmt.Sprintf("ctl %d %q", op, p))
}

// feedChunks feeds data cut after every step bytes (cycling through steps)
// and returns the events and the first error.
func feedChunks(data []byte, steps []int) ([]string, error) {
	var r frameReader
	rec := &recorder{}
	data = bytes.Clone(data)
	for i, k := 0, 0; i < len(data); k++ {
		n := len(data) - i
		if len(steps) > 0 {
			n = min(n, max(1, steps[k%len(steps)]))
		}
		if err := r.feed(data[i:i+n], rec); err != nil {
			return rec.events, err
		}
		i += n
	}
	return rec.events, nil
}

// TestFrameReaderJoinsFramesCutAnywhere feeds a stream of frames (a
// fragmented message with a ping inside, a 300-byte message with a 16-bit
// length, a masked one, a close) whole, byte by byte, and cut at every
// position, and gets the same messages and controls each time.
func TestFrameReaderJoinsFramesCutAnywhere(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	masked := appendFrame(nil, opText, []byte("masked"), 0x01020304)
	var stream []byte
	for _, f := range [][]byte{
		serverFrame(true, opText, []byte("hello")),
		serverFrame(false, opText, []byte("ab")),
		serverFrame(true, opPing, []byte("p1")),
		serverFrame(false, opCont, nil),
		serverFrame(true, opCont, []byte("cd")),
		serverFrame(true, opBinary, long),
		masked,
		serverFrame(true, opText, nil),
		serverFrame(true, opClose, []byte{0x03, 0xE8, 'b', 'y', 'e'}),
	} {
		stream = append(stream, f...)
	}
	want := []string{
		`msg 1 "hello"`, `ctl 9 "p1"`, `msg 1 "abcd"`, fmt.Sprintf("msg 2 %q", long),
		`msg 1 "masked"`, `msg 1 ""`, `ctl 8 "\x03\xe8bye"`,
	}
	got, err := feedChunks(stream, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
	got, err = feedChunks(stream, []int{1})
	require.NoError(t, err)
	require.Equal(t, want, got, "byte by byte")
	for cut := 1; cut < len(stream); cut++ {
		got, err := feedChunks(stream, []int{cut, len(stream)})
		require.NoError(t, err)
		require.Equal(t, want, got, "cut at %d", cut)
	}
}

func TestFrameReaderRefusesBadFrames(t *testing.T) {
	big := binary.BigEndian.AppendUint64([]byte{0x81, 127}, 1<<40)
	for name, data := range map[string][]byte{
		"reserved bits":             {0xC1, 0},
		"continuation first":        serverFrame(true, opCont, []byte("x")),
		"message inside a message":  append(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))...),
		"fragmented control":        serverFrame(false, opPing, nil),
		"control over 125 bytes":    serverFrame(true, opPing, bytes.Repeat([]byte("x"), 126)),
		"unknown opcode":            serverFrame(true, 0x3, nil),
		"frame over 64 KiB":         big,
		"message over 64 KiB":       append(serverFrame(false, opText, make([]byte, 40<<10)), serverFrame(true, opCont, make([]byte, 40<<10))...),
		"64-bit length top bit set": binary.BigEndian.AppendUint64([]byte{0x81, 127}, 1<<63),
	} {
		_, err := feedChunks(data, []int{3})
		require.Error(t, err, name)
	}
}

// FuzzFrameReader: any input fed in any cuts gives what it gives whole
// (the same events before the same error, or none), and never panics.
func FuzzFrameReader(f *testing.F) {
	f.Add(append(serverFrame(true, opText, []byte("hi")), serverFrame(true, opPing, []byte("p"))...), []byte{1})
	f.Add(append(serverFrame(false, opText, []byte("a")), serverFrame(true, opCont, []byte("b"))...), []byte{2, 5})
	f.Add(serverFrame(true, opBinary, make([]byte, 200)), []byte{7, 1, 3})
	f.Add(appendFrame(nil, opText, []byte("masked"), 7), []byte{4})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		steps := make([]int, len(cuts))
		for i, c := range cuts {
			steps[i] = int(c)
		}
		whole, werr := feedChunks(data, nil)
		parts, perr := feedChunks(data, steps)
		if (werr == nil) != (perr == nil) {
			t.Fatalf("whole: %v, in parts: %v", werr, perr)
		}
		require.Equal(t, whole, parts)
	})
}

func TestAppendFrameLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		payload := bytes.Repeat([]byte("y"), n)
		got, err := feedChunks(appendFrame(nil, opBinary, payload, 0xDEADBEEF), []int{1000})
		require.NoError(t, err)
		require.Equal(t, []string{fmt.Sprintf("msg 2 %q", payload)}, got, n)
	}
}

// TestHandshake upgrades against the reference server (gorilla), and
// refuses a server that answers 200 or a wrong accept key.
func TestHandshake(t *testing.T) {
	raw, _ := startRef(t, refConfig{})
	u, err := url.Parse(raw)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	rest, err := handshake(conn, u, "dGhlIHNhbXBsZSBub25jZQ==")
	require.NoError(t, err)
	require.Empty(t, rest)
	_, err = conn.Write(appendFrame(nil, opText, []byte("echo me"), 42))
	require.NoError(t, err)
	var r frameReader
	rec := &recorder{}
	buf := make([]byte, 256)
	for len(rec.events) == 0 {
		n, err := conn.Read(buf)
		require.NoError(t, err)
		require.NoError(t, r.feed(buf[:n], rec))
	}
	require.Equal(t, []string{`msg 1 "echo me"`}, rec.events)

	for name, resp := range map[string]string{
		"not 101":    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"wrong key":  "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: AAAA\r\n\r\n",
		"no key":     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"head large": "HTTP/1.1 101 Switching Protocols\r\nX: " + string(bytes.Repeat([]byte("a"), 5000)) + "\r\n\r\n",
	} {
		client, server := net.Pipe()
		go func() {
			buf := make([]byte, 1024)
			_, _ = server.Read(buf)
			_, _ = server.Write([]byte(resp))
			_ = server.Close()
		}()
		_, err := handshake(client, u, "dGhlIHNhbXBsZSBub25jZQ==")
		require.Error(t, err, name)
		_ = client.Close()
	}
	// The RFC's example: key dGhlIHNhbXBsZSBub25jZQ== accepts as s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
	require.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", acceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
}
