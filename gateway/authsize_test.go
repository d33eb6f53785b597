package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestUnauthenticatedClientPinsNoBigMessage: with MaxMessageSize raised
// (8 MiB here, 64 MiB allowed), a client that must send its token first
// may send a first message of MaxTokenMessageSize at most: the gateway
// closes it (4503) on the frame header that says more, instead of
// buffering megabytes from someone it does not know yet. A client with a
// token in its upgrade sends big messages as configured; a raw TCP client
// with a valid but oversized token message is refused.
func TestUnauthenticatedClientPinsNoBigMessage(t *testing.T) {
	const size = 8 << 20
	k := testKeys(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: size + gateway.EnvelopeOverhead})
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnMessage: func(ctx context.Context, c *worker.Client, m worker.MessageEvent) error {
			return c.SendToCurrentClient(ctx, m.Data)
		},
	}})
	cfg := k.authConfig()
	cfg.Timeout = time.Minute // the refusal must not be the timeout's
	gw := gatewaytest.Start(t, e, gateway.Config{Auth: cfg, MaxMessageSize: size, TCP: []gateway.TCPListener{{Addr: "127.0.0.1:0"}}})
	hour := time.Now().Add(time.Hour)
	dial := func(query string) *websocket.Conn {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+gw.WebSocketAddr()+"/"+query, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		c.SetReadLimit(2 * size)
		return c
	}

	// No token yet: a frame header announcing 4 MiB, and a few bytes.
	c := dial("")
	head := []byte{0x82, 0x80 | 127}
	head = binary.BigEndian.AppendUint64(head, 4<<20)
	head = append(head, 1, 2, 3, 4)                       // mask key
	head = append(head, bytes.Repeat([]byte{'x'}, 64)...) // some payload
	_, err := c.UnderlyingConn().Write(head)
	require.NoError(t, err)
	code, text, msgs := readClose(t, c)
	require.Empty(t, msgs)
	require.Equal(t, bus.CloseMessageTooLarge.WSCode(), code, text)

	// Fragments: the first message may not grow past the bound either.
	c = dial("")
	w, err := c.NextWriter(websocket.TextMessage)
	require.NoError(t, err)
	_, _ = w.Write([]byte(`{"token":"` + strings.Repeat("a", gateway.MaxTokenMessageSize+8192) + `"}`))
	code, text, _ = readClose(t, c)
	require.Equal(t, bus.CloseMessageTooLarge.WSCode(), code, text)

	// A token message of the bound's size is still read (and judged).
	c = dial("")
	tok := sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", hour))
	require.NoError(t, c.WriteMessage(websocket.TextMessage, tokenMessage(tok)))
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, big))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(4*wait)))
	_, echo, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, big, echo, "after its token, a client sends what MaxMessageSize allows")

	// With its token in the upgrade, the first message may be big.
	c = dial("?token=" + tok)
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, big))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(4*wait)))
	_, echo, err = c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, big, echo)

	// Raw TCP: a first line longer than the bound closes the client before
	// it ends; a valid token, padded past the bound, is refused.
	tc0 := gatewaytest.DialTCP(t, gw)
	_, err = tc0.Conn.Write(bytes.Repeat([]byte{'t'}, 4*gateway.MaxTokenMessageSize)) // no end of line yet
	require.NoError(t, err)
	require.Error(t, tc0.Closed(wait))
	padded := sign(t, jwt.SigningMethodHS256, k.secret, "", jwt.MapClaims{"sub": "tcp", "exp": hour.Unix(), "pad": strings.Repeat("p", gateway.MaxTokenMessageSize)})
	tc := gatewaytest.DialTCP(t, gw)
	tc.Send(string(tokenMessage(padded)))
	require.Error(t, tc.Closed(wait))
}

// TestWhatUnknownClientsPin measures what clients nobody knows pin in a
// gateway whose MaxMessageSize is raised to 16 MiB: each sends a frame
// header announcing 16 MiB and then all of it but the last byte, and holds.
// Without authentication each pins its message (logged); on a gateway that
// wants a token first, the first header closes the client and nothing is
// pinned. The heap figures are logged:
//
//	go test -run TestWhatUnknownClientsPin -v ./gateway
func TestWhatUnknownClientsPin(t *testing.T) {
	const (
		size    = 16 << 20
		clients = 4
		mb      = 1 << 20
	)
	k := testKeys(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: size + gateway.EnvelopeOverhead})
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
	}})
	cfg := k.authConfig()
	cfg.Timeout = time.Minute
	open := gatewaytest.Start(t, e, gateway.Config{MaxMessageSize: size})
	tokens := gatewaytest.Start(t, e, gateway.Config{MaxMessageSize: size, Auth: cfg})
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)

	pin := func(gw *gateway.Gateway) (before, peak uint64) {
		conns := make([]*rawWS, clients)
		for i := range conns {
			var code int
			conns[i], code = dialRaw(t, gw.WebSocketAddr(), upgradeRequest)
			require.Equal(t, 101, code)
		}
		before = heapNow()
		stop := heapPeak()
		for _, c := range conns {
			head := binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, size)
			head = append(head, 1, 2, 3, 4)
			_ = c.conn.SetWriteDeadline(time.Now().Add(4 * wait))
			if _, err := c.conn.Write(head); err != nil {
				continue
			}
			for sent := 0; sent+len(chunk) < size; sent += len(chunk) {
				if _, err := c.conn.Write(chunk); err != nil {
					break // closed by the gateway
				}
			}
		}
		time.Sleep(500 * time.Millisecond) // for the gateway to read what was sent
		peak = stop()
		for _, c := range conns {
			_ = c.conn.Close()
		}
		return before, peak
	}
	before, peak := pin(open)
	t.Logf("no auth: %d clients sending 16 MiB messages: heap %.1f MB before, %.1f MB at the peak (%.1f MB per client)",
		clients, float64(before)/mb, float64(peak)/mb, (float64(peak)-float64(before))/clients/mb)
	before, peak = pin(tokens)
	t.Logf("token first: %d clients announcing 16 MiB messages: heap %.1f MB before, %.1f MB at the peak",
		clients, float64(before)/mb, float64(peak)/mb)
	require.Less(t, float64(peak)-float64(before), float64(clients*gateway.MaxTokenMessageSize+4*mb),
		"a client that has not sent its token pins no more than a token message")
}
