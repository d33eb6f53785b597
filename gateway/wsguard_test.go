package gateway_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// upgradeRequest is a valid opening handshake (RFC 6455 §1.3's key).
const upgradeRequest = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// rawWS is a WebSocket client that writes whatever bytes a test gives it.
type rawWS struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	id   string // the client id, once upgraded
}

// dialRaw sends head (the request line and headers, without the blank
// line that ends them) and returns the connection and the response's
// status code.
func dialRaw(t *testing.T, addr, head string) (*rawWS, int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	return handshake(t, conn, head)
}

// handshake is dialRaw on a connection of the caller's.
func handshake(t *testing.T, conn net.Conn, head string) (*rawWS, int) {
	t.Helper()
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(2 * wait))
	_, err := conn.Write([]byte(head + "\r\n"))
	require.NoError(t, err)
	c := &rawWS{t: t, conn: conn, r: bufio.NewReader(conn)}
	status, err := c.r.ReadString('\n')
	require.NoError(t, err)
	var minor, code int
	_, err = fmt.Sscanf(status, "HTTP/1.%d %d", &minor, &code)
	require.NoError(t, err, status)
	for { // the rest of the head
		line, err := c.r.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			break
		}
	}
	return c, code
}

// upgrade opens a WebSocket connection and reads the greeting the edge's
// worker sends on connect: the client's id.
func upgrade(t *testing.T, addr string) *rawWS {
	t.Helper()
	c, code := dialRaw(t, addr, upgradeRequest)
	require.Equal(t, 101, code)
	op, id := c.readFrame()
	require.Equal(t, byte(1), op, "the greeting")
	c.id = string(id)
	return c
}

// readFrame reads one server frame; op is 0xff when the connection ended
// instead.
func (c *rawWS) readFrame() (op byte, payload []byte) {
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0xff, []byte(err.Error())
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(c.r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(c.r, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return 0xff, []byte(err.Error())
	}
	return h[0] & 0x0f, payload
}

// closeCode reads until the server's close frame and returns its code, or
// fails when the connection ends without one.
func (c *rawWS) closeCode() int {
	c.t.Helper()
	for {
		op, p := c.readFrame()
		switch op {
		case 0xff:
			c.t.Fatalf("connection ended without a close frame: %s", p)
		case 8:
			require.GreaterOrEqual(c.t, len(p), 2)
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// next reads the next frame that is not a ping and returns its opcode
// and payload.
func (c *rawWS) next() (byte, string) {
	for {
		if op, p := c.readFrame(); op != 9 {
			return op, string(p)
		}
	}
}

// frame builds a client frame. b0 is the first byte (FIN, RSV, opcode);
// masked frames use a fixed key; lenBytes forces the length encoding
// (0: the shortest, 2 or 8).
func frame(b0 byte, payload []byte, masked bool, lenBytes int) []byte {
	out := []byte{b0}
	mask := byte(0)
	if masked {
		mask = 0x80
	}
	n := len(payload)
	switch {
	case lenBytes == 8 || (lenBytes == 0 && n > 0xffff):
		out = binary.BigEndian.AppendUint64(append(out, mask|127), uint64(n))
	case lenBytes == 2 || (lenBytes == 0 && n > 125):
		out = binary.BigEndian.AppendUint16(append(out, mask|126), uint16(n))
	default:
		out = append(out, mask|byte(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

func masked(b0 byte, payload string) []byte { return frame(b0, []byte(payload), true, 0) }

func TestWebSocketFramesBreakingRFC6455GetCloseCode1002(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	cases := []struct {
		name string
		send [][]byte
	}{
		{"unmasked text", [][]byte{frame(0x81, []byte("hi"), false, 0)}},
		{"length with the top bit set", [][]byte{{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte{'a'}, 4096)}},
		{"RSV1 without compression", [][]byte{masked(0x80|0x40|1, "hi")}},
		{"RSV2", [][]byte{masked(0x80|0x20|1, "hi")}},
		{"RSV3", [][]byte{masked(0x80|0x10|2, "hi")}},
		{"RSV on a ping", [][]byte{masked(0x80|0x10|9, "")}},
		{"reserved data opcode 3", [][]byte{masked(0x83, "")}},
		{"reserved data opcode 7", [][]byte{masked(0x87, "x")}},
		{"reserved control opcode 0xB", [][]byte{masked(0x8b, "")}},
		{"reserved control opcode 0xF", [][]byte{masked(0x8f, "x")}},
		{"continuation without a message", [][]byte{masked(0x80, "x")}},
		{"unfinished continuation without a message", [][]byte{masked(0x00, "x")}},
		{"text while a fragmented text is open", [][]byte{masked(0x01, "a"), masked(0x81, "b")}},
		{"binary while a fragmented text is open", [][]byte{masked(0x01, "a"), masked(0x82, "b")}},
		{"fragmented ping", [][]byte{masked(0x09, "a"), masked(0x80, "b")}},
		{"fragmented close", [][]byte{masked(0x08, "")}},
		{"ping over 125 bytes", [][]byte{frame(0x89, bytes.Repeat([]byte{'p'}, 126), true, 0)}},
		{"pong over 125 bytes", [][]byte{frame(0x8a, bytes.Repeat([]byte{'p'}, 126), true, 0)}},
		{"close over 125 bytes", [][]byte{frame(0x88, append([]byte{3, 232}, bytes.Repeat([]byte{'c'}, 124)...), true, 0)}},
		{"close with a 1-byte payload", [][]byte{masked(0x88, "x")}},
		{"close code 999", [][]byte{masked(0x88, "\x03\xe7")}},
		{"close code 1005 (reserved)", [][]byte{masked(0x88, "\x03\xed")}},
		{"close reason not UTF-8", [][]byte{masked(0x88, "\x03\xe8\xff\xfe")}},
		{"text not UTF-8", [][]byte{masked(0x81, "\xff\xfe")}},
		{"header split across writes", [][]byte{{0x81}, {0xff}, {0x80, 0, 0, 0}, {0, 0, 0, 0}, {1, 2}, {3, 4}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := upgrade(t, s.gw.WebSocketAddr())
			for _, b := range tc.send {
				_, err := c.conn.Write(b)
				require.NoError(t, err)
			}
			require.Equal(t, 1002, c.closeCode())
			require.Equal(t, bus.CloseProtocolError, s.closeReason(t, c.id))
		})
	}
}

func TestWebSocketValidFramesStillWork(t *testing.T) {
	s := startEdge(t, gateway.Config{MaxMessageSize: 128 << 10})
	big := strings.Repeat("b", 70_000)
	cases := []struct {
		name string
		send [][]byte
		want []string // text frames expected back, in order
	}{
		{"7-bit length", [][]byte{masked(0x81, "short")}, []string{"short"}},
		{"16-bit length", [][]byte{masked(0x81, strings.Repeat("m", 300))}, []string{strings.Repeat("m", 300)}},
		{"64-bit length", [][]byte{masked(0x81, big)}, []string{big}},
		{"non-minimal 16-bit length", [][]byte{frame(0x81, []byte("x"), true, 2)}, []string{"x"}},
		{"non-minimal 64-bit length", [][]byte{frame(0x81, []byte("y"), true, 8)}, []string{"y"}},
		{"empty text", [][]byte{masked(0x81, ""), masked(0x81, "after")}, []string{"after"}},
		{"fragmented with a ping between", [][]byte{masked(0x01, "fr"), masked(0x89, "p"), masked(0x00, "ag"), masked(0x80, "ment")}, []string{"fragment"}},
		{"one byte at a time", [][]byte{masked(0x81, "slow")}, []string{"slow"}},
		{"frames coalesced in one write", [][]byte{append(masked(0x81, "one"), masked(0x81, "two")...)}, []string{"one", "two"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := upgrade(t, s.gw.WebSocketAddr())
			for _, b := range tc.send {
				if tc.name == "one byte at a time" {
					for i := range b {
						_, err := c.conn.Write(b[i : i+1])
						require.NoError(t, err)
					}
					continue
				}
				_, err := c.conn.Write(b)
				require.NoError(t, err)
			}
			for _, want := range tc.want {
				op, got := c.next()
				if op == 10 { // the pong
					op, got = c.next()
				}
				require.Equal(t, byte(1), op, "%q", got)
				require.Equal(t, want, got)
			}
			_, err := c.conn.Write(masked(0x88, "\x03\xe8"))
			require.NoError(t, err)
			require.Equal(t, 1000, c.closeCode())
		})
	}
}

// exchange sends a masked frame and returns the next frame back.
func (c *rawWS) exchange(b0 byte, payload string) (byte, string) {
	c.t.Helper()
	_, err := c.conn.Write(masked(b0, payload))
	require.NoError(c.t, err)
	return c.next()
}

func TestWebSocketPingGetsPong(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	op, p := upgrade(t, s.gw.WebSocketAddr()).exchange(0x89, "are you there")
	require.Equal(t, byte(10), op)
	require.Equal(t, "are you there", p)
}

func TestWebSocketBadHandshakesGet400(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	head := func(proto, key string) string {
		return "GET / " + proto + "\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	}
	cases := []struct{ name, head string }{
		{"HTTP/1.0", head("HTTP/1.0", "dGhlIHNhbXBsZSBub25jZQ==")},
		{"key not base64", head("HTTP/1.1", "not a base64 key at all!")},
		{"key of 15 bytes", head("HTTP/1.1", "dGhlIHNhbXBsZSBub25j")},
		{"key of 17 bytes", head("HTTP/1.1", "dGhlIHNhbXBsZSBub25jZTEx")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, code := dialRaw(t, s.gw.WebSocketAddr(), tc.head)
			require.Equal(t, 400, code)
		})
	}
}

// TestUpgradeHeadIsBounded: a head past MaxHeaderBytes or MaxHeaderCount
// gets 431, and so does one that never ends.
func TestUpgradeHeadIsBounded(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	pad := func(n, size int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-Pad-%d: %s\r\n", i, strings.Repeat("p", size))
		}
		return b.String()
	}
	t.Run("just under the limit", func(t *testing.T) {
		_, code := dialRaw(t, s.gw.WebSocketAddr(), upgradeRequest+pad(1, gateway.DefaultMaxHeaderBytes-len(upgradeRequest)-200))
		require.Equal(t, 101, code)
	})
	t.Run("over the byte limit", func(t *testing.T) {
		_, code := dialRaw(t, s.gw.WebSocketAddr(), upgradeRequest+pad(2, gateway.DefaultMaxHeaderBytes/2))
		require.Equal(t, 431, code)
	})
	t.Run("over the line limit", func(t *testing.T) {
		_, code := dialRaw(t, s.gw.WebSocketAddr(), upgradeRequest+pad(gateway.MaxHeaderCount, 1))
		require.Equal(t, 431, code)
	})
	t.Run("header lines without end", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.gw.WebSocketAddr())
		require.NoError(t, err)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * wait))
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
		require.NoError(t, err)
		line := []byte("X-Pad: " + strings.Repeat("p", 100) + "\r\n")
		for err == nil {
			_, err = conn.Write(line)
		}
		resp, _ := io.ReadAll(conn)
		require.True(t, bytes.HasPrefix(resp, []byte("HTTP/1.1 431 ")), "%q (write: %v)", resp, err)
	})
	t.Run("one line without end", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.gw.WebSocketAddr())
		require.NoError(t, err)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * wait))
		_, err = conn.Write([]byte("GET /" + strings.Repeat("q", 64<<10)))
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout())
		resp, _ := io.ReadAll(conn)
		require.True(t, bytes.HasPrefix(resp, []byte("HTTP/1.1 431 ")), "%q (write: %v)", resp, err)
	})
}

// TestWebSocketRSV1OnlyOnCompressedMessages: with permessage-deflate
// negotiated, RSV1 marks a message's first frame, and only that one.
func TestWebSocketRSV1OnlyOnCompressedMessages(t *testing.T) {
	s := startEdge(t, gateway.Config{WebSocketCompression: true})
	dial := func() *rawWS {
		c, code := dialRaw(t, s.gw.WebSocketAddr(), upgradeRequest+"Sec-WebSocket-Extensions: permessage-deflate\r\n")
		require.Equal(t, 101, code)
		op, _ := c.readFrame()
		require.Equal(t, byte(1), op, "the greeting")
		return c
	}
	var deflated bytes.Buffer
	fw, err := flate.NewWriter(&deflated, flate.BestSpeed)
	require.NoError(t, err)
	_, _ = fw.Write([]byte("squeezed"))
	require.NoError(t, fw.Flush())
	body := bytes.TrimSuffix(deflated.Bytes(), []byte{0, 0, 0xff, 0xff})

	c := dial()
	_, err = c.conn.Write(frame(0xc1, body, true, 0))
	require.NoError(t, err)
	op, got := c.next()
	require.Equal(t, byte(1), op)
	require.Equal(t, "squeezed", got)

	c = dial()
	_, err = c.conn.Write(append(frame(0x41, body[:2], true, 0), frame(0xc0, body[2:], true, 0)...))
	require.NoError(t, err)
	require.Equal(t, 1002, c.closeCode(), "RSV1 on a continuation frame")
}

// TestRefusedRequestsThatEndTheConnectionLeaveThePollerRunning: nbio
// closed such a connection inside its parser, and its close job then
// waited for the parser's own lock: the poller froze with every
// connection on it.
func TestRefusedRequestsThatEndTheConnectionLeaveThePollerRunning(t *testing.T) {
	s := startEdge(t, gateway.Config{})
	refuse(t, func() net.Conn {
		conn, err := net.Dial("tcp", s.gw.WebSocketAddr())
		require.NoError(t, err)
		return conn
	})
	for range 8 { // whichever poller they land on
		op, got := upgrade(t, s.gw.WebSocketAddr()).exchange(0x81, "alive")
		require.Equal(t, byte(1), op)
		require.Equal(t, "alive", got)
	}
}

// TestWSSRefusedRequestsCloseTheirConnection: wss:// answers requests that
// do not upgrade as ws:// does, closing their connection (with a TLS
// close_notify) instead of keeping it until HandshakeTimeout.
func TestWSSRefusedRequestsCloseTheirConnection(t *testing.T) {
	certFile, keyFile, pool := bustest.SelfSignedCert(t)
	s := startEdge(t, gateway.Config{WebSocketTLS: &gateway.TLSFiles{CertFile: certFile, KeyFile: keyFile}, HandshakeTimeout: time.Minute})
	refuse(t, func() net.Conn {
		conn, err := tls.Dial("tcp", s.gw.WebSocketAddr(), &tls.Config{RootCAs: pool})
		require.NoError(t, err)
		return conn
	})
}

// refuse sends requests that the gateway answers without an upgrade, each
// on a connection of dial's, and checks that the gateway ends it.
func refuse(t *testing.T, dial func() net.Conn) {
	t.Helper()
	for i := range 50 {
		head := "GET / HTTP/1.0\r\nHost: x\r\n"
		switch i % 5 {
		case 1:
			head = "GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		case 2:
			head = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		case 3:
			head = strings.Replace(upgradeRequest, "HTTP/1.1", "HTTP/1.0", 1)
		case 4: // keep-alive, but refused: closed as well
			head = strings.Replace(upgradeRequest, "dGhlIHNhbXBsZSBub25jZQ==", "short", 1)
		}
		c, code := handshake(t, dial(), head)
		require.Contains(t, []int{400, 404}, code, "request %d", i)
		_, err := io.ReadAll(c.r)
		require.NoError(t, err, "request %d: the gateway ends the connection", i)
	}
}

// TestWSSInputIsGuardedToo: on a wss:// listener the guard sits on the
// decrypted stream, the handshake clock stops at the upgrade, and the
// decrypted request head is bounded as on ws://, with a 431.
func TestWSSInputIsGuardedToo(t *testing.T) {
	certFile, keyFile, pool := bustest.SelfSignedCert(t)
	s := startEdge(t, gateway.Config{
		WebSocketTLS:     &gateway.TLSFiles{CertFile: certFile, KeyFile: keyFile},
		HandshakeTimeout: 300 * time.Millisecond,
	})
	dial := func() net.Conn {
		conn, err := tls.Dial("tcp", s.gw.WebSocketAddr(), &tls.Config{RootCAs: pool})
		require.NoError(t, err)
		return conn
	}
	c, code := handshake(t, dial(), upgradeRequest)
	require.Equal(t, 101, code)
	op, _ := c.readFrame()
	require.Equal(t, byte(1), op, "the greeting")
	time.Sleep(3 * 300 * time.Millisecond) // past HandshakeTimeout
	op, got := c.exchange(0x81, "still here")
	require.Equal(t, byte(1), op)
	require.Equal(t, "still here", got)
	_, err := c.conn.Write([]byte{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	require.NoError(t, err)
	require.Equal(t, 1002, c.closeCode())

	conn := dial()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * wait))
	_, err = conn.Write([]byte(upgradeRequest + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 40)))
	var ne net.Error
	if errors.As(err, &ne) {
		require.False(t, ne.Timeout())
	}
	resp, err := io.ReadAll(conn)
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by the gateway, not by the test's deadline")
	require.True(t, bytes.HasPrefix(resp, []byte("HTTP/1.1 431 ")), "%q (read: %v)", resp, err)
}

// TestFramesBeforeThe101AreGuarded: frames that come with the upgrade
// request, before the client could see the 101 (RFC 6455 §4.1 says it
// must wait), are WebSocket input checked by the frame guard, on ws:// and
// wss:// alike: a ping gets its pong, and an unmasked frame, which nbio
// alone accepts, gets 1002.
func TestFramesBeforeThe101AreGuarded(t *testing.T) {
	certFile, keyFile, pool := bustest.SelfSignedCert(t)
	// A masked ping whose 2-byte payload is the CRLF handshake adds.
	ping := string([]byte{0x89, 0x82, 0x12, 0x34, 0x56, 0x78})
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[secure], func(t *testing.T) {
			cfg := gateway.Config{}
			if secure {
				cfg.WebSocketTLS = &gateway.TLSFiles{CertFile: certFile, KeyFile: keyFile}
			}
			s := startEdge(t, cfg)
			dial := func(early string) *rawWS {
				var conn net.Conn
				var err error
				if secure {
					conn, err = tls.Dial("tcp", s.gw.WebSocketAddr(), &tls.Config{RootCAs: pool})
				} else {
					conn, err = net.Dial("tcp", s.gw.WebSocketAddr())
				}
				require.NoError(t, err)
				c, code := handshake(t, conn, upgradeRequest+"\r\n"+early)
				require.Equal(t, 101, code)
				return c
			}
			c := dial(ping)
			for op, p := c.readFrame(); op != 0xa; op, p = c.readFrame() {
				require.Equal(t, byte(1), op, "the greeting, then the pong: %s", p)
			}
			c = dial(string(frame(0x81, []byte("early"), false, 0)))
			require.Equal(t, 1002, c.closeCode())
		})
	}
}
