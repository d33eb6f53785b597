package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestFourMiBMessagesBothWays: with NATS's max_payload and the gateway's
// MaxMessageSize raised, a 4 MiB client message reaches a worker, and a
// 4 MiB push (the worker's echo, and one from the API) reaches the client.
func TestFourMiBMessagesBothWays(t *testing.T) {
	const size = 4 << 20
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: size + gateway.EnvelopeOverhead})
	got := make(chan int, 1)
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			return c.SendToCurrentClient(ctx, []byte(c.ID()))
		},
		OnMessage: func(ctx context.Context, c *worker.Client, m worker.MessageEvent) error {
			got <- len(m.Data)
			return c.WithFrame(api.FrameBinary).SendToCurrentClient(ctx, m.Data)
		},
	}})
	gw := gatewaytest.Start(t, e, gateway.Config{MaxMessageSize: size})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+gw.WebSocketAddr()+"/", nil)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetReadLimit(2 * size)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(4*wait)))
	_, id, err := conn.ReadMessage()
	require.NoError(t, err)

	big := make([]byte, size)
	_, _ = rand.Read(big)
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, big))
	select {
	case n := <-got:
		require.Equal(t, size, n, "the worker got the whole message")
	case <-time.After(4 * wait):
		t.Fatal("the worker did not get the 4 MiB message")
	}
	mt, echo, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.BinaryMessage, mt)
	require.True(t, bytes.Equal(big, echo), "the echo is the message")

	text := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	require.NoError(t, a.SendToClient(context.Background(), string(id), text))
	mt, push, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, mt)
	require.True(t, bytes.Equal(text, push), "the API's push")

	// One byte more than MaxMessageSize closes the client.
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, size+1)))
	for err == nil {
		_, _, err = conn.ReadMessage()
	}
	require.Error(t, err)
}

// TestMaxMessageSizeOverNATSMaxPayload: a gateway whose largest client
// message cannot fit NATS's max payload refuses to start, saying which
// numbers and which settings to change.
func TestMaxMessageSizeOverNATSMaxPayload(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{}) // max_payload 1 MiB
	g, err := gateway.New(gateway.Config{
		Bus:            bustest.Connect(t, e, bus.Config{}),
		WebSocketAddr:  "127.0.0.1:0",
		MaxMessageSize: 1 << 20,
		Logger:         bustest.Logger(t),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err = g.Run(ctx)
	require.ErrorIs(t, err, gateway.ErrMaxPayload)
	require.EqualError(t, err, "gateway: MaxMessageSize does not fit NATS's max_payload: a message of MaxMessageSize 1048576 bytes (--max-message-size) "+
		"plus 512 bytes of envelope needs 1049088, but the NATS server's max_payload is 1048576: raise max_payload to at least 1049088 "+
		"(gatewayworker run or nats: --nats-max-payload; nats-server: max_payload) or lower MaxMessageSize to at most 1048064")

	// The largest that fits starts.
	g, err = gateway.New(gateway.Config{
		Bus:            bustest.Connect(t, e, bus.Config{}),
		WebSocketAddr:  "127.0.0.1:0",
		MaxMessageSize: 1<<20 - gateway.EnvelopeOverhead,
		Logger:         bustest.Logger(t),
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	cancel()
	require.NoError(t, <-done)

	_, err = gateway.New(gateway.Config{Bus: &bus.Conn{}, WebSocketAddr: "127.0.0.1:0", MaxMessageSize: gateway.MaxMessageSizeLimit + 1})
	require.ErrorContains(t, err, "MaxMessageSize")
	_, err = bus.StartEmbedded(bus.EmbeddedConfig{MaxPayload: bus.MaxMaxPayload + 1})
	require.ErrorContains(t, err, "MaxPayload")
}
