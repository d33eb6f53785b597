package gateway_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// frameStack runs a worker that greets each client with its id and
// answers "bin X" with X in a binary frame, "text X" with X in a text
// frame, "default X" with X unchosen, and "set binary|text|default" by
// setting the client's default frame type.
func frameStack(t *testing.T, cfg gateway.Config) (*gateway.Gateway, *api.Client) {
	t.Helper()
	gw, a, _ := frameStackOn(t, cfg)
	return gw, a
}

// frameStackOn is frameStack, also returning its NATS server.
func frameStackOn(t *testing.T, cfg gateway.Config) (*gateway.Gateway, *api.Client, *bus.Embedded) {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			return c.SendToCurrentClient(ctx, []byte(c.ID()))
		},
		OnMessage: func(ctx context.Context, c *worker.Client, m worker.MessageEvent) error {
			verb, arg, _ := strings.Cut(string(m.Data), " ")
			switch verb {
			case "bin":
				return c.WithFrame(api.FrameBinary).SendToCurrentClient(ctx, []byte(arg))
			case "text":
				return c.WithFrame(api.FrameText).SendToCurrentClient(ctx, []byte(arg))
			case "default":
				return c.SendToCurrentClient(ctx, []byte(arg))
			case "set":
				f, err := bus.ParseFrame(arg)
				if err != nil {
					return err
				}
				if err := c.SetWebSocketType(ctx, c.ID(), api.Frame(f)); err != nil {
					return err
				}
				return c.SendToCurrentClient(ctx, []byte("set"))
			}
			return nil
		},
	}})
	gw := gatewaytest.Start(t, e, cfg)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return gw, a, e
}

// expectFrame reads ws's next message and checks its bytes and frame type.
func expectFrame(t *testing.T, ws *gatewaytest.WS, want string, binary bool) {
	t.Helper()
	got, isBinary, err := ws.TryReadMessage(wait)
	require.NoError(t, err)
	require.Equal(t, want, got)
	kind := map[bool]string{true: "binary", false: "text"}
	require.Equal(t, kind[binary], kind[isBinary], "frame type of %q", want)
}

// TestFrameTypeChosenBySender: a push's frame type is the sender's choice,
// then the connection's default, then the gateway's; only where nobody
// chose do UTF-8 bytes go as text.
func TestFrameTypeChosenBySender(t *testing.T) {
	gw, a := frameStack(t, gateway.Config{})
	conns, ids := gatewaytest.DialGreeted(t, gw, gw)
	ann, bob := conns[0], conns[1]
	ctx := context.Background()
	for _, id := range ids {
		require.NoError(t, a.JoinGroup(ctx, id, "room"))
	}

	// Nobody chose: UTF-8 is text, other bytes binary (as before).
	require.NoError(t, a.SendToClient(ctx, ids[0], []byte(`{"a":1}`)))
	expectFrame(t, ann, `{"a":1}`, false)
	require.NoError(t, a.SendToClient(ctx, ids[0], []byte{0x82, 0xa1}))
	expectFrame(t, ann, "\x82\xa1", true)

	// The API chooses per push, on every kind of send; UTF-8 bytes (as
	// msgpack often is) go binary when the sender says so.
	bin := a.WithFrame(api.FrameBinary)
	require.NoError(t, bin.SendToClient(ctx, ids[0], []byte("abc")))
	expectFrame(t, ann, "abc", true)
	require.NoError(t, bin.SendToGroup(ctx, "room", []byte("group")))
	expectFrame(t, ann, "group", true)
	expectFrame(t, bob, "group", true)
	require.NoError(t, bin.SendToAll(ctx, []byte("all")))
	expectFrame(t, ann, "all", true)
	expectFrame(t, bob, "all", true)
	require.NoError(t, bin.SendToClients(ctx, ids, []byte("some")))
	expectFrame(t, ann, "some", true)
	expectFrame(t, bob, "some", true)
	require.NoError(t, a.WithFrame(api.FrameText).SendToGroup(ctx, "room", []byte("txt")))
	expectFrame(t, ann, "txt", false)
	expectFrame(t, bob, "txt", false)

	// A text frame must be UTF-8: bytes that are not go binary all the same.
	require.NoError(t, a.WithFrame(api.FrameText).SendToClient(ctx, ids[0], []byte{0xff}))
	expectFrame(t, ann, "\xff", true)

	// Workers choose per push too.
	ann.Send("bin hi")
	expectFrame(t, ann, "hi", true)
	ann.Send("text hi")
	expectFrame(t, ann, "hi", false)

	// A per-connection default (websocketType), set by the worker: Ann's
	// unchosen pushes go binary, Bob's stay text; a push's own choice wins.
	ann.Send("set binary")
	expectFrame(t, ann, "set", true)
	require.NoError(t, a.SendToGroup(ctx, "room", []byte("both")))
	expectFrame(t, ann, "both", true)
	expectFrame(t, bob, "both", false)
	require.NoError(t, a.WithFrame(api.FrameText).SendToGroup(ctx, "room", []byte("chosen")))
	expectFrame(t, ann, "chosen", false)
	expectFrame(t, bob, "chosen", false)
	ann.Send("default d")
	expectFrame(t, ann, "d", true)
	ann.Send("set default")
	expectFrame(t, ann, "set", false)
	require.NoError(t, a.SendToClient(ctx, ids[0], []byte("back")))
	expectFrame(t, ann, "back", false)

	// The API refuses an unknown frame type before sending anything.
	require.ErrorIs(t, a.SetWebSocketType(ctx, ids[0], 7), api.ErrBadRequest)
}

// TestGatewayWebSocketType: the gateway's default frame type applies to
// pushes and heartbeat data that neither the sender nor the connection chose.
func TestGatewayWebSocketType(t *testing.T) {
	gw, a := frameStack(t, gateway.Config{WebSocketType: bus.FrameBinary})
	conns, ids := gatewaytest.DialGreeted(t, gw)
	ctx := context.Background()
	require.NoError(t, a.SendToClient(ctx, ids[0], []byte("x")))
	expectFrame(t, conns[0], "x", true)
	require.NoError(t, a.WithFrame(api.FrameText).SendToClient(ctx, ids[0], []byte("y")))
	expectFrame(t, conns[0], "y", false)
	conns[0].Send("set text")
	expectFrame(t, conns[0], "set", false)
	require.NoError(t, a.SendToAll(ctx, []byte("z")))
	expectFrame(t, conns[0], "z", false)

	_, err := gateway.New(gateway.Config{Bus: &bus.Conn{}, WebSocketAddr: "127.0.0.1:0", WebSocketType: 3})
	require.ErrorContains(t, err, "WebSocketType")
}

// TestUnknownFrameTypeRefused: a push whose frame type is none of
// default, text and binary is refused, on the wire (a request gets a bad
// request, a broadcast is dropped) and by the API before it sends, instead
// of going out as if nobody had chosen.
func TestUnknownFrameTypeRefused(t *testing.T) {
	gw, a, e := frameStackOn(t, gateway.Config{})
	conns, ids := gatewaytest.DialGreeted(t, gw)
	ws := conns[0]
	ctx := context.Background()
	require.NoError(t, a.JoinGroup(ctx, ids[0], "room"))

	// The API: every push of a view with an unknown frame type fails
	// before anything is sent.
	bad := a.WithFrame(7)
	require.ErrorIs(t, bad.SendToClient(ctx, ids[0], []byte("api-id")), api.ErrBadRequest)
	require.ErrorIs(t, bad.SendToGroup(ctx, "room", []byte("api-group")), api.ErrBadRequest)
	require.ErrorIs(t, bad.SendToAll(ctx, []byte("api-all")), api.ErrBadRequest)

	// The wire: a command to the gateway is answered with bad request.
	raw := bustest.Connect(t, e, bus.Config{})
	data, err := bus.Marshal(&bus.Command{Op: bus.OpSend, Clients: []string{ids[0]}, Body: []byte("wire-id"), Frame: 7})
	require.NoError(t, err)
	repData, err := raw.Request(ctx, bus.DefaultPrefix+"."+gw.ID()+".cmd", data)
	require.NoError(t, err)
	var rep bus.Reply
	require.NoError(t, bus.Unmarshal(repData, &rep))
	require.Equal(t, bus.ReplyBadRequest, rep.Code, "reply %+v", rep)
	require.Contains(t, rep.Message, "frame")

	// A broadcast with it is dropped: the next good push is the first the
	// client reads.
	var subj bus.Subjects
	data, err = bus.Marshal(&bus.Command{Op: bus.OpSend, Body: []byte("wire-group"), Frame: 9})
	require.NoError(t, err)
	require.NoError(t, raw.Publish(subj.Group("room"), data))
	data, err = bus.Marshal(&bus.Command{Op: bus.OpSend, Body: []byte("wire-all"), Frame: 200})
	require.NoError(t, err)
	require.NoError(t, raw.Publish(subj.All(), data))
	require.NoError(t, a.SendToGroup(ctx, "room", []byte("good")))
	expectFrame(t, ws, "good", false)
}
