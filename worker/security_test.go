package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestRolePermissions runs every tier with the least NATS permissions of
// its role (bus.Subjects.Permissions): the stack works, a worker cannot
// impersonate a gateway, a user without publish rights cannot push, and
// wrong credentials are refused. The worker authenticates with an nkey.
func TestRolePermissions(t *testing.T) {
	var subj bus.Subjects
	role := func(name string, r bus.Role) bus.EmbeddedUser {
		pub, sub := subj.Permissions(r)
		return bus.EmbeddedUser{Name: name, Password: name + "-pw", Publish: pub, Subscribe: sub}
	}
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pubKey, err := kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	seedFile := filepath.Join(t.TempDir(), "worker.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	workerUser := role("", bus.RoleWorker)
	workerUser.Name, workerUser.Password, workerUser.NKey = "", "", pubKey

	e := bustest.RunServer(t, bus.EmbeddedConfig{Users: []bus.EmbeddedUser{
		role("gw", bus.RoleGateway), workerUser, role("web", bus.RoleAPI),
		{Name: "reader", Password: "reader-pw", Publish: []string{"nothing.allowed"}},
		{Name: "admin", Password: "admin-pw"},
	}})

	rec := newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers(), Sticky: true, // its own events subject too
		Bus: bustest.Connect(t, e, bus.Config{NKeySeedFile: seedFile, InboxPrefix: subj.Inbox(bus.RoleWorker)})})
	gw := gatewaytest.Start(t, e, gateway.Config{Bus: bustest.Connect(t, e, bus.Config{User: "gw", Password: "gw-pw", InboxPrefix: subj.Inbox(bus.RoleGateway)})})
	web, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{User: "web", Password: "web-pw", InboxPrefix: subj.Inbox(bus.RoleAPI)})})
	require.NoError(t, err)
	defer web.Close()
	ctx := context.Background()

	c := gatewaytest.DialWS(t, gw, "/", nil)
	id := strings.TrimPrefix(c.Read(wait), "id:")
	c.Send("echo:works")
	require.Equal(t, "echo:works", c.Read(wait))
	require.NoError(t, web.JoinGroup(ctx, id, "room"))
	require.NoError(t, web.SendToGroup(ctx, "room", []byte("from the web app")))
	require.Equal(t, "from the web app", c.Read(wait))
	n, err := web.GetAllClientIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// The admin watches client events and pushes.
	admin := bustest.Connect(t, e, bus.Config{User: "admin", Password: "admin-pw"})
	seen := make(chan string, 16)
	_, err = admin.Subscribe(subj.Events(), func(m bus.Msg) { seen <- m.Subject })
	require.NoError(t, err)
	require.NoError(t, admin.Flush(ctx))

	var logs bustest.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	impostor := bustest.Connect(t, e, bus.Config{NKeySeedFile: seedFile, Logger: logger})
	require.NoError(t, impostor.Publish(subj.Events(), []byte("forged client event")))
	require.NoError(t, impostor.Publish(subj.Heartbeat(), []byte("forged beat")))
	reader := bustest.Connect(t, e, bus.Config{User: "reader", Password: "reader-pw", Logger: logger})
	readerAPI, err := api.New(api.Config{Bus: reader})
	require.NoError(t, err)
	defer readerAPI.Close()
	require.NoError(t, readerAPI.SendToAll(ctx, []byte("must not arrive")))
	require.Eventually(t, func() bool {
		return strings.Count(logs.String(), "Permissions Violation") >= 3
	}, wait, 10*time.Millisecond, "NATS reports each refused publish: %s", logs.String())
	c.ExpectSilence(quiet)
	select {
	case s := <-seen:
		t.Fatalf("a forged event reached %s", s)
	default:
	}

	// A worker may send close events on gw.evl, nothing else: a forged
	// message event there is dropped by every worker.
	forged := bus.MarshalBatch(&bus.EventBatch{Gateway: gw.ID(), Client: id, Seq: 1 << 40,
		Events: []bus.Event{{Kind: bus.EventMessage, Body: []byte("echo:forged")}}})
	require.NoError(t, impostor.PublishRequest(subj.LostEvents(), impostor.NewInbox(), forged))
	require.NoError(t, impostor.Flush(ctx))
	c.ExpectSilence(quiet)
	require.NotContains(t, rec.of(id), "msg echo:forged", "a forged message event ran")
	c.Send("echo:still works")
	require.Equal(t, "echo:still works", c.Read(wait))

	// The API role reads only API replies: not the gateways' acks nor the
	// replies (sessions included) that workers get.
	webConn := bustest.Connect(t, e, bus.Config{User: "web", Password: "web-pw", InboxPrefix: subj.Inbox(bus.RoleAPI), Logger: logger})
	for _, spy := range []string{"_INBOX.>", subj.Inbox(bus.RoleWorker) + ".>", subj.Inbox(bus.RoleGateway) + ".*.*"} {
		sub, err := webConn.Subscribe(spy, func(bus.Msg) {})
		require.NoError(t, err)
		require.ErrorIs(t, webConn.CheckSubscriptions(ctx, sub), bus.ErrPermission, spy)
	}

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = bus.Connect(short, bus.Config{URLs: []string{e.URL()}, User: "web", Password: "wrong", MaxReconnects: 1})
	require.ErrorContains(t, err, "Authorization Violation")
}

// TestForgedSeqDoesNotSwallowRealEvents: a batch forged on the events
// subject with a high sequence number for a real client must not make the
// worker take the client's next real batches for duplicates (acknowledged,
// never handled); a forged synthesized close (the reapers' sequence on the
// events subject) is not run at all.
func TestForgedSeqDoesNotSwallowRealEvents(t *testing.T) {
	e, rec, gw, c, id := oneRecordedClient(t)
	c.Send("echo:first")
	require.Equal(t, "echo:first", c.Read(wait))

	var subj bus.Subjects
	forge := func(seq uint64, ev bus.Event) {
		publishBatch(t, e, subj.Events(), &bus.EventBatch{Gateway: gw.ID(), Client: id, Seq: seq, Events: []bus.Event{ev}})
	}
	forge(math.MaxUint64-1, bus.Event{Kind: bus.EventClose, Reason: bus.CloseGatewayLost})
	forge(1000, bus.Event{Kind: bus.EventMessage, Body: []byte("forged")})
	require.Eventually(t, func() bool { return slices.Contains(rec.of(id), "msg forged") }, wait, 10*time.Millisecond)

	for i := range 3 {
		msg := fmt.Sprintf("echo:real-%d", i)
		c.Send(msg)
		require.Equal(t, msg, c.Read(wait), "a real message after the forged batch is handled")
	}
	require.NotContains(t, rec.of(id), "close gateway lost", "a forged synthesized close does not run")
}

// oneRecordedClient starts NATS, a recording worker, a gateway and one
// WebSocket client, whose id it returns.
func oneRecordedClient(t *testing.T) (e *bus.Embedded, rec *recorder, gw *gateway.Gateway, c *gatewaytest.WS, id string) {
	e = bustest.RunServer(t, bus.EmbeddedConfig{})
	rec = newRecorder()
	workertest.Start(t, e, worker.Config{Handlers: rec.handlers()})
	gw = gatewaytest.Start(t, e, gateway.Config{})
	c = gatewaytest.DialWS(t, gw, "/", nil)
	return e, rec, gw, c, strings.TrimPrefix(c.Read(wait), "id:")
}

// publishBatch publishes b on subject from a connection of its own, as a
// forger (or a reaper) does.
func publishBatch(t *testing.T, e *bus.Embedded, subject string, b *bus.EventBatch) {
	conn := bustest.Connect(t, e, bus.Config{})
	require.NoError(t, conn.PublishRequest(subject, conn.NewInbox(), bus.MarshalBatch(b)))
	require.NoError(t, conn.Flush(context.Background()))
}
