package httppush_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/examples/httppush"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) // nbio starts pool goroutines at init
}

// TestNotifyReachesEveryConnectionOfAUser: a web app's HTTP handler, not
// a worker, pushes to a uid bound on two gateways.
func TestNotifyReachesEveryConnectionOfAUser(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	// The app's worker binds each client to the uid it names in its first message.
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnMessage: func(ctx context.Context, c *worker.Client, m worker.MessageEvent) error {
			if err := c.BindUID(ctx, c.ID(), string(m.Data)); err != nil {
				return err
			}
			return c.SendToCurrentClient(ctx, []byte("bound"))
		},
	}})
	gw1 := gatewaytest.Start(t, e, gateway.Config{})
	gw2 := gatewaytest.Start(t, e, gateway.Config{})
	phone, laptop, other := gatewaytest.DialWS(t, gw1, "/", nil), gatewaytest.DialWS(t, gw2, "/", nil), gatewaytest.DialWS(t, gw2, "/", nil)
	for c, uid := range map[*gatewaytest.WS]string{phone: "ann", laptop: "ann", other: "bob"} {
		c.Send(uid)
		require.Equal(t, "bound", c.Read(5*time.Second))
	}

	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{Name: "web-app"})})
	require.NoError(t, err)
	defer a.Close()
	srv := httptest.NewServer(httppush.NewHandler(a))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/notify?uid=ann", "text/plain", strings.NewReader("you have mail"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "you have mail", phone.Read(5*time.Second))
	require.Equal(t, "you have mail", laptop.Read(5*time.Second))
	other.ExpectSilence(150 * time.Millisecond)

	resp, err = http.Post(srv.URL+"/notify", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "no uid")
	resp, err = http.Post(srv.URL+"/notify?uid=ann", "text/plain", strings.NewReader(strings.Repeat("x", httppush.MaxBody+1)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	phone.ExpectSilence(100 * time.Millisecond)
}
