package phptest

import (
	"context"
	"strings"
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

// TestPendingFromPHP: Gateway::acceptClient accepts a pending client
// and binds its uid, Gateway::rejectClient closes one with
// 4502 after its last message.
func TestPendingFromPHP(t *testing.T) {
	phpBin(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	g := gatewaytest.Start(t, e, gateway.Config{ID: "g1", Auth: &gateway.AuthConfig{Pending: true}})
	conns, ids := gatewaytest.DialGreeted(t, g, g)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()

	runScript(t, map[string]string{"NATS_URL": e.URL(), "CLIENT_IDS": strings.Join(ids, ",")}, "pending.php").pass()

	require.NoError(t, a.SendToUID(ctx, "user-7", []byte("to user-7")))
	require.Equal(t, "to user-7", conns[0].Read(5*time.Second), "accepted with its uid")
	require.Equal(t, "no entry", conns[1].Read(5*time.Second))
	err = conns[1].Closed(5 * time.Second)
	require.True(t, websocket.IsCloseError(err, 4502), "%v", err)
}
