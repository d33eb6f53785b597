package api_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestRecoverablePushesAndHistory: pushes through Recoverable() and those
// matching Config.Recoverable are stored, reach members with their pos
// frames, and GetHistory reads them back by position; other pushes are
// not stored.
func TestRecoverablePushesAndHistory(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	g := gatewaytest.Start(t, e, gateway.Config{History: &bus.HistoryConfig{Storage: bus.StorageMemory}})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{}), Recoverable: []string{"g:chat-*"}})
	require.NoError(t, err)
	defer a.Close()
	ctx := context.Background()

	c := gatewaytest.DialWS(t, g, "/?recover="+url.QueryEscape("{}"), nil)
	id := c.Read(5 * time.Second)
	require.NoError(t, a.JoinGroup(ctx, id, "chat-1"))
	require.NoError(t, a.BindUID(ctx, id, "bob"))

	require.NoError(t, a.SendToGroup(ctx, "chat-1", []byte("by pattern")))
	require.Contains(t, c.Read(5*time.Second), `"pos"`)
	require.Equal(t, "by pattern", c.Read(5*time.Second))
	require.NoError(t, a.Recoverable().WithFrame(api.FrameBinary).SendToUID(ctx, "bob", []byte("by view")))
	require.Contains(t, c.Read(5*time.Second), `"ch":"u:bob"`)
	require.Equal(t, "by view", c.Read(5*time.Second))
	require.NoError(t, a.SendToUID(ctx, "bob", []byte("plain")))
	require.Equal(t, "plain", c.Read(5*time.Second), "no pos frame: not recoverable")

	h, err := a.GetHistory(ctx, "uid", "bob", "", 0)
	require.NoError(t, err)
	require.True(t, h.Complete)
	require.Len(t, h.Messages, 1)
	require.Equal(t, "by view", string(h.Messages[0].Body))
	require.Equal(t, api.FrameBinary, h.Messages[0].Frame)

	for i := range 10 {
		require.NoError(t, a.Recoverable().SendToGroups(ctx, []string{"chat-1"}, fmt.Appendf(nil, "m%d", i)))
	}
	h, err = a.GetHistory(ctx, "group", "chat-1", "", 4)
	require.NoError(t, err)
	require.Len(t, h.Messages, 4)
	require.Equal(t, "by pattern", string(h.Messages[0].Body))
	h, err = a.GetHistory(ctx, "group", "chat-1", h.Messages[3].Pos, 100)
	require.NoError(t, err)
	require.Len(t, h.Messages, 7)
	require.Equal(t, "m3", string(h.Messages[0].Body))
	require.Equal(t, "m9", string(h.Messages[6].Body))

	h, err = a.GetHistory(ctx, "group", "chat-1", "zzz:1", 10)
	require.NoError(t, err, "another epoch")
	require.False(t, h.Complete)
	require.Empty(t, h.Messages)

	_, err = a.GetHistory(ctx, "room", "chat-1", "", 10)
	require.ErrorIs(t, err, api.ErrBadRequest)
	_, err = a.GetHistory(ctx, "group", "chat-1", "x", 10)
	require.ErrorIs(t, err, api.ErrBadRequest)
	_, err = a.GetHistory(ctx, "group", "chat-1", "", api.MaxHistoryLimit+1)
	require.ErrorIs(t, err, api.ErrLimit)
	_, err = a.GetHistory(ctx, "group", "", "", 1)
	require.ErrorIs(t, err, api.ErrInvalidName)

	_, err = api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{}), Recoverable: []string{"room-*"}})
	require.Error(t, err, "a pattern without u: or g:")
}

func TestNoHistory(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	defer a.Close()
	ctx := context.Background()
	require.ErrorIs(t, a.Recoverable().SendToGroup(ctx, "g", []byte("x")), api.ErrNoHistory)
	_, err = a.GetHistory(ctx, "group", "g", "", 1)
	require.ErrorIs(t, err, api.ErrNoHistory)
}
