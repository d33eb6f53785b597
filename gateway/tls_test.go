package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// startTLSEdge runs a gateway whose listeners all speak TLS: wss://,
// text+tls:// and frame+tls://, and returns their addresses by scheme.
func startTLSEdge(t *testing.T, cfg gateway.Config) (*edge, map[string]string, *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool := bustest.SelfSignedCert(t)
	files := &gateway.TLSFiles{CertFile: certFile, KeyFile: keyFile}
	cfg.WebSocketAddr, cfg.WebSocketTLS = "127.0.0.1:0", files
	cfg.TCP = []gateway.TCPListener{
		{Addr: "127.0.0.1:0", TLS: files},
		{Addr: "127.0.0.1:0", Codec: protocol.Frame{}, TLS: files},
	}
	s := startEdge(t, cfg)
	addrs := map[string]string{}
	for _, a := range s.gw.Addrs() {
		scheme, hostport, ok := strings.Cut(a, "://")
		require.True(t, ok, a)
		addrs[scheme] = strings.TrimSuffix(hostport, "/")
	}
	require.Len(t, addrs, 3, s.gw.Addrs())
	return s, addrs, pool
}

// postQuantum accepts only the X25519MLKEM768 key exchange, which Go's
// crypto/tls has had since Go 1.24 and llib's 2021 fork of it never had.
func postQuantum(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}
}

// tlsLines is a text+tls:// client.
type tlsLines struct {
	conn *tls.Conn
	r    *bufio.Reader
}

func (c *tlsLines) read(t *testing.T) string {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	line, err := c.r.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSuffix(line, "\n")
}

// tlsFrames is a frame+tls:// client.
type tlsFrames struct{ conn *tls.Conn }

func (c *tlsFrames) read(t *testing.T) string {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	var hdr [4]byte
	_, err := ioReadFull(c.conn, hdr[:])
	require.NoError(t, err)
	body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
	_, err = ioReadFull(c.conn, body)
	require.NoError(t, err)
	return string(body)
}

func (c *tlsFrames) send(t *testing.T, msg string) {
	t.Helper()
	_, err := c.conn.Write(protocol.Frame{}.Append(nil, []byte(msg)))
	require.NoError(t, err)
}

// TestTLSIsGoCryptoTLS proves that Go's crypto/tls answers on every TLS
// listener: a client that accepts only the post-quantum key exchange gets
// it, echoes go through a real worker, and the worker sees the client's own
// address.
func TestTLSIsGoCryptoTLS(t *testing.T) {
	s, addrs, pool := startTLSEdge(t, gateway.Config{})

	d := websocket.Dialer{TLSClientConfig: postQuantum(pool)}
	ws, _, err := d.Dial("wss://"+addrs["wss"]+"/", nil)
	require.NoError(t, err, "wss:// with X25519MLKEM768 only")
	defer ws.Close()
	require.Equal(t, tls.X25519MLKEM768, ws.NetConn().(*tls.Conn).ConnectionState().CurveID)
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	_, id, err := ws.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, ws.LocalAddr().String(), s.remoteAddr(string(id)), "the worker sees the wss client's address")
	for _, msg := range []string{"over wss", strings.Repeat("a record and more ", 2000)} {
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(msg)))
		_, got, err := ws.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, msg, string(got))
	}

	conn, err := tls.Dial("tcp", addrs["text+tls"], postQuantum(pool))
	require.NoError(t, err, "text+tls:// with X25519MLKEM768 only")
	defer conn.Close()
	require.Equal(t, tls.X25519MLKEM768, conn.ConnectionState().CurveID)
	lines := &tlsLines{conn: conn, r: bufio.NewReader(conn)}
	id2 := lines.read(t)
	require.Equal(t, conn.LocalAddr().String(), s.remoteAddr(id2), "the worker sees the text+tls client's address")
	_, err = conn.Write([]byte("over text+tls\n"))
	require.NoError(t, err)
	require.Equal(t, "over text+tls", lines.read(t))

	fconn, err := tls.Dial("tcp", addrs["frame+tls"], postQuantum(pool))
	require.NoError(t, err, "frame+tls:// with X25519MLKEM768 only")
	defer fconn.Close()
	frames := &tlsFrames{conn: fconn}
	require.Equal(t, fconn.LocalAddr().String(), s.remoteAddr(frames.read(t)), "the worker sees the frame+tls client's address")
	for _, msg := range []string{"over frame+tls", strings.Repeat("x", 40<<10)} {
		frames.send(t, msg)
		require.Equal(t, msg, frames.read(t))
	}

	// Closing sends TLS's close_notify, and the workers hear of each close.
	require.NoError(t, conn.Close())
	require.Equal(t, bus.CloseClientClosed, s.closeReason(t, id2))
}

func TestTLSRefusesVersionsBefore12(t *testing.T) {
	_, addrs, pool := startTLSEdge(t, gateway.Config{})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		old := &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}
		_, _, err := (&websocket.Dialer{TLSClientConfig: old}).Dial("wss://"+addrs["wss"]+"/", nil)
		require.Error(t, err, "wss:// with %s", tls.VersionName(v))
		for _, scheme := range []string{"text+tls", "frame+tls"} {
			_, err := tls.Dial("tcp", addrs[scheme], old)
			require.Error(t, err, "%s:// with %s", scheme, tls.VersionName(v))
		}
	}
	conn, err := tls.Dial("tcp", addrs["text+tls"], &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12})
	require.NoError(t, err, "TLS 1.2 is served")
	require.NoError(t, conn.Close())
}

// TestTLSHandshakeTimeout: clients that open a TLS listener's socket and
// never finish the handshake are closed after HandshakeTimeout, and what
// served them is gone with them.
func TestTLSHandshakeTimeout(t *testing.T) {
	_, addrs, _ := startTLSEdge(t, gateway.Config{HandshakeTimeout: 300 * time.Millisecond})
	before := runtime.NumGoroutine()
	var conns []net.Conn
	for _, scheme := range []string{"wss", "text+tls", "frame+tls"} {
		for i := range 10 {
			c, err := net.Dial("tcp", addrs[scheme])
			require.NoError(t, err)
			defer c.Close()
			if i%2 == 1 { // half a ClientHello record header: the handshake starts, never ends
				_, err = c.Write([]byte{22, 3, 1, 2})
				require.NoError(t, err)
			}
			conns = append(conns, c)
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, err := c.Read(make([]byte, 64))
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection %d still open after %v", i, wait)
		require.Error(t, err, "connection %d", i)
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines of unfinished handshakes remain")
}

// TestTLSSlowConsumerIsClosed: pushes to TLS clients that stop reading pile
// up in the gateway's send queue, never in a blocked writer: the others
// keep receiving, and the stuck ones are closed as slow consumers.
func TestTLSSlowConsumerIsClosed(t *testing.T) {
	s, addrs, pool := startTLSEdge(t, gateway.Config{SendQueueLimit: 256 << 10})
	reader, _, err := (&websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}).Dial("wss://"+addrs["wss"]+"/", nil)
	require.NoError(t, err)
	defer reader.Close()
	readMsg := func(c *websocket.Conn) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, msg, err := c.ReadMessage()
		require.NoError(t, err)
		return string(msg)
	}
	readMsg(reader) // its id

	// Clients that never read, with a small socket buffer so the gateway's
	// queue fills instead of the kernel's.
	smallBuffer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}
	stuckWS, _, err := (&websocket.Dialer{NetDialContext: smallBuffer, TLSClientConfig: &tls.Config{RootCAs: pool}}).Dial("wss://"+addrs["wss"]+"/", nil)
	require.NoError(t, err)
	defer stuckWS.Close()
	raw, err := smallBuffer(context.Background(), "tcp", addrs["text+tls"])
	require.NoError(t, err)
	stuckTCP := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	defer stuckTCP.Close()
	lines := &tlsLines{conn: stuckTCP, r: bufio.NewReader(stuckTCP)}
	stuck := []string{readMsg(stuckWS), lines.read(t)}

	payload := []byte(strings.Repeat("storm ", 2000)) // 12 KB
	const rounds, perRound = 50, 20
	for range rounds {
		for range perRound {
			require.NoError(t, s.api.SendToAll(context.Background(), payload))
		}
		for range perRound {
			require.Equal(t, string(payload), readMsg(reader))
		}
	}
	pending := map[string]bool{stuck[0]: true, stuck[1]: true}
	deadline := time.After(2 * wait)
	for len(pending) > 0 {
		select {
		case id := <-s.closed:
			delete(pending, id)
		case <-deadline:
			t.Fatalf("no close event for %v", pending)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range stuck {
		require.Equal(t, bus.CloseSlowConsumer, s.reasons[id], id)
	}
}

// trickle writes what it is given a few bytes at a time, so that the
// gateway reads TLS records in pieces.
type trickle struct{ net.Conn }

func (c trickle) Write(b []byte) (int, error) {
	for i := 0; i < len(b); i += 7 {
		if _, err := c.Conn.Write(b[i:min(i+7, len(b))]); err != nil {
			return i, err
		}
		time.Sleep(200 * time.Microsecond)
	}
	return len(b), nil
}

// TestTLSRecordsInPieces: TLS records (the handshake's and the data's)
// that reach the gateway a few bytes at a time are put together.
func TestTLSRecordsInPieces(t *testing.T) {
	_, addrs, pool := startTLSEdge(t, gateway.Config{})
	raw, err := net.Dial("tcp", addrs["text+tls"])
	require.NoError(t, err)
	conn := tls.Client(trickle{raw}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	defer conn.Close()
	lines := &tlsLines{conn: conn, r: bufio.NewReader(conn)}
	require.NotEmpty(t, lines.read(t))
	for _, msg := range []string{"one", strings.Repeat("two ", 100)} {
		_, err = conn.Write([]byte(msg + "\n"))
		require.NoError(t, err)
		require.Equal(t, msg, lines.read(t))
	}
}

// TestTLSGarbageIsAProtocolError: bytes that are no TLS record, sent after
// the handshake, close the client with the reason "protocol error".
func TestTLSGarbageIsAProtocolError(t *testing.T) {
	s, addrs, pool := startTLSEdge(t, gateway.Config{})
	garbage := []byte{23, 3, 3, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8} // an application data record that fails to decrypt

	var raw net.Conn
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		raw = c
		return c, err
	}}
	ws, _, err := d.Dial("wss://"+addrs["wss"]+"/", nil)
	require.NoError(t, err)
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(wait))
	_, wsID, err := ws.ReadMessage()
	require.NoError(t, err)
	_, err = raw.Write(garbage)
	require.NoError(t, err)
	require.Equal(t, bus.CloseProtocolError, s.closeReason(t, string(wsID)), "wss://")

	raw, err = net.Dial("tcp", addrs["text+tls"])
	require.NoError(t, err)
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	lines := &tlsLines{conn: conn, r: bufio.NewReader(conn)}
	tcpID := lines.read(t)
	_, err = raw.Write(garbage)
	require.NoError(t, err)
	require.Equal(t, bus.CloseProtocolError, s.closeReason(t, tcpID), "text+tls://")
}

// TestReadersOfEveryKindKeepTheirSendQueue: what a client reads leaves its
// send queue (the socket's written bytes are counted back) on ws://,
// wss://, text:// and text+tls:// alike, so a client that keeps reading is
// never closed as a slow consumer however much it gets in all: here eight
// times SendQueueLimit, in rounds it reads.
func TestReadersOfEveryKindKeepTheirSendQueue(t *testing.T) {
	const limit = 64 << 10
	payload := strings.Repeat("storm ", 2000) // 12 KB
	plain := startEdge(t, gateway.Config{SendQueueLimit: limit, TCP: []gateway.TCPListener{{Addr: "127.0.0.1:0"}}})
	secure, addrs, pool := startTLSEdge(t, gateway.Config{SendQueueLimit: limit})
	dialWSS := func(t *testing.T) func() string {
		ws, _, err := (&websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}).Dial("wss://"+addrs["wss"]+"/", nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = ws.Close() })
		return func() string {
			_ = ws.SetReadDeadline(time.Now().Add(wait))
			_, msg, err := ws.ReadMessage()
			require.NoError(t, err)
			return string(msg)
		}
	}
	dialTextTLS := func(t *testing.T) func() string {
		conn, err := tls.Dial("tcp", addrs["text+tls"], &tls.Config{RootCAs: pool})
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		lines := &tlsLines{conn: conn, r: bufio.NewReader(conn)}
		return func() string { return lines.read(t) }
	}
	for _, kind := range []struct {
		name string
		s    *edge
		dial func(*testing.T) func() string
	}{
		{"ws", plain, func(t *testing.T) func() string {
			c := gatewaytest.DialWS(t, plain.gw, "/", nil)
			return func() string { return c.Read(wait) }
		}},
		{"text", plain, func(t *testing.T) func() string {
			c := gatewaytest.DialTCP(t, plain.gw)
			return func() string { return c.Read(wait) }
		}},
		{"wss", secure, dialWSS},
		{"text+tls", secure, dialTextTLS},
	} {
		t.Run(kind.name, func(t *testing.T) {
			read := kind.dial(t)
			id := read()
			const rounds, perRound = 10, 4
			for range rounds {
				for range perRound {
					require.NoError(t, kind.s.api.SendToAll(context.Background(), []byte(payload)))
				}
				for range perRound {
					require.Equal(t, payload, read())
				}
			}
			on, err := kind.s.api.IsOnline(context.Background(), id)
			require.NoError(t, err)
			require.True(t, on, "a client that reads everything stays connected")
		})
	}
}
