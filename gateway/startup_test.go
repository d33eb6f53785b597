package gateway_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// runErr runs a gateway that is expected not to start and returns Run's error.
func runErr(t *testing.T, cfg gateway.Config) error {
	t.Helper()
	cfg.WebSocketAddr, cfg.TCP = "127.0.0.1:0", []gateway.TCPListener{}
	g, err := gateway.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-g.Ready():
		cancel()
		<-done
		t.Fatal("the gateway started")
	case <-time.After(10 * time.Second):
		t.Fatal("Run neither failed nor became ready")
	}
	return nil
}

// TestRunFailsWhenASubscriptionIsRefused: a gateway that may not hear its
// own heartbeats (the permissions README once listed) used to start and then
// close every client 2.5 s later, again and again; now Run says why it
// cannot start.
func TestRunFailsWhenASubscriptionIsRefused(t *testing.T) {
	var subj bus.Subjects
	pub, sub := subj.Permissions(bus.RoleGateway)
	var deaf []string
	for _, s := range sub {
		if s != subj.Heartbeat() {
			deaf = append(deaf, s)
		}
	}
	e := bustest.RunServer(t, bus.EmbeddedConfig{Users: []bus.EmbeddedUser{
		{Name: "gw", Password: "pw", Publish: pub, Subscribe: sub},
		{Name: "deaf", Password: "pw", Publish: pub, Subscribe: deaf},
	}})
	inbox := subj.Inbox(bus.RoleGateway)
	err := runErr(t, gateway.Config{Logger: bustest.Logger(t),
		Bus: bustest.Connect(t, e, bus.Config{User: "deaf", Password: "pw", InboxPrefix: inbox})})
	require.ErrorIs(t, err, bus.ErrPermission)
	require.ErrorContains(t, err, `subscribe to gw.hb`)

	// With the role's permissions it starts and serves.
	g := gatewaytest.Start(t, e, gateway.Config{
		Bus: bustest.Connect(t, e, bus.Config{User: "gw", Password: "pw", InboxPrefix: inbox})})
	gatewaytest.DialWS(t, g, "/", nil)
}

// TestDuplicateIDRefused: a second gateway with a live gateway's id does
// not start, and says which id; the first keeps serving its clients. A
// gateway that hears beats of its id from another process logs it.
func TestDuplicateIDRefused(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	var logs bustest.LogBuffer
	first := gatewaytest.Start(t, e, gateway.Config{ID: "twin", BeatInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := gatewaytest.DialWS(t, first, "/", nil)

	err := runErr(t, gateway.Config{ID: "twin", Bus: bustest.Connect(t, e, bus.Config{}), Logger: bustest.Logger(t)})
	require.ErrorIs(t, err, gateway.ErrIDInUse)
	require.ErrorContains(t, err, `"twin"`)

	// The first gateway's client was not disturbed and the gateway still
	// answers for it.
	other := gatewaytest.Start(t, e, gateway.Config{ID: "other"})
	require.NotEmpty(t, other.ID())
	c.ExpectSilence(300 * time.Millisecond)
	require.Equal(t, 1, first.Stats().Connections)

	// A twin that slipped through (both started at once) is logged by the
	// first as soon as its beats arrive.
	conn := bustest.Connect(t, e, bus.Config{})
	beat, err := bus.Marshal(&bus.Beat{Gateway: "twin", Boot: time.Now().Add(time.Hour).UnixMilli()})
	require.NoError(t, err)
	require.NoError(t, conn.Publish(bus.Subjects{}.Heartbeat(), beat))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "another gateway runs with this id") },
		5*time.Second, 10*time.Millisecond)
}
