package api_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) // nbio starts pool goroutines at init
}

// TestQueriesAcrossThreeGateways scripts connects, binds, joins, leaves and
// closes over three gateways and checks that every query answers exactly.
func TestQueriesAcrossThreeGateways(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	gws := []*gateway.Gateway{
		gatewaytest.Start(t, e, gateway.Config{ID: "g1"}),
		gatewaytest.Start(t, e, gateway.Config{ID: "g2"}),
		gatewaytest.Start(t, e, gateway.Config{ID: "g3"}),
	}
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()

	// Two clients on each gateway: c[i] on gateway i/2.
	conns, ids := gatewaytest.DialGreeted(t, gws[0], gws[0], gws[1], gws[1], gws[2], gws[2])
	for i, uid := range []string{"ann", "ann", "bob", "", "cy", "bob"} {
		if uid != "" {
			require.NoError(t, a.BindUID(ctx, ids[i], uid))
		}
	}
	for i, groups := range [][]string{{"red", "blue"}, {"red"}, {"blue"}, {"red"}, {}, {"green"}} {
		for _, g := range groups {
			require.NoError(t, a.JoinGroup(ctx, ids[i], g))
		}
		require.NoError(t, a.SetSession(ctx, ids[i], map[string]any{"n": i}))
	}
	require.NoError(t, a.LeaveGroup(ctx, ids[3], "red"))
	require.NoError(t, a.JoinGroup(ctx, ids[3], "green"))
	require.NoError(t, a.BindUID(ctx, ids[1], "dan")) // replaces ann for c1
	require.NoError(t, conns[4].Conn.Close())         // cy leaves
	require.Eventually(t, func() bool {
		n, err := a.GetAllClientIDCount(ctx)
		return err == nil && n == 5
	}, 5*time.Second, 10*time.Millisecond)

	live := []string{ids[0], ids[1], ids[2], ids[3], ids[5]}
	check := func(name string, got any, err error, want any) {
		t.Helper()
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
	all, err := a.GetAllClientIDList(ctx)
	check("GetAllClientIDList", all, err, sorted(live...))
	sessions, err := a.GetAllClientSessions(ctx)
	require.NoError(t, err)
	require.Len(t, sessions, 5)
	require.Equal(t, int64(5), sessions[ids[5]]["n"])
	got, err := a.GetClientIDsByUID(ctx, "bob")
	check("GetClientIDsByUID bob", got, err, sorted(ids[2], ids[5]))
	got, err = a.GetClientIDsByUID(ctx, "ann")
	check("GetClientIDsByUID ann", got, err, []string{ids[0]})
	uid, err := a.GetUIDByClientID(ctx, ids[1])
	check("GetUIDByClientID", uid, err, "dan")
	uid, err = a.GetUIDByClientID(ctx, ids[3])
	check("GetUIDByClientID none", uid, err, "")
	on, err := a.IsUIDOnline(ctx, "cy")
	check("IsUIDOnline cy", on, err, false)
	on, err = a.IsUIDOnline(ctx, "dan")
	check("IsUIDOnline dan", on, err, true)
	got, err = a.GetAllUIDList(ctx)
	check("GetAllUIDList", got, err, []string{"ann", "bob", "dan"})
	n, err := a.GetAllUIDCount(ctx)
	check("GetAllUIDCount", n, err, 3)
	got, err = a.GetClientIDListByGroup(ctx, "red")
	check("GetClientIDListByGroup red", got, err, sorted(ids[0], ids[1]))
	n, err = a.GetClientCountByGroup(ctx, "green")
	check("GetClientCountByGroup green", n, err, 2)
	groupSessions, err := a.GetClientSessionsByGroup(ctx, "blue")
	require.NoError(t, err)
	require.Equal(t, map[string]map[string]any{ids[0]: {"n": int64(0)}, ids[2]: {"n": int64(2)}}, groupSessions)
	got, err = a.GetUIDListByGroup(ctx, "green")
	check("GetUIDListByGroup green", got, err, []string{"bob"})
	n, err = a.GetUIDCountByGroup(ctx, "red")
	check("GetUIDCountByGroup red", n, err, 2)
	got, err = a.GetAllGroupIDList(ctx)
	check("GetAllGroupIDList", got, err, []string{"blue", "green", "red"})
	got, err = a.GetGatewayIDs(ctx)
	check("GetGatewayIDs", got, err, []string{"g1", "g2", "g3"})
	infos, err := a.GetGatewayInfos(ctx)
	require.NoError(t, err)
	require.Len(t, infos, 3)
	require.Equal(t, int64(1), infos[2].Connections, "g3 lost cy")

	require.NoError(t, a.DestroyClient(ctx, ids[5]))
	require.Eventually(t, func() bool {
		got, err := a.GetClientIDsByUID(ctx, "bob")
		return err == nil && len(got) == 1 && got[0] == ids[2]
	}, 5*time.Second, 10*time.Millisecond)
	got, err = a.GetAllGroupIDList(ctx)
	check("GetAllGroupIDList after destroy", got, err, []string{"blue", "green", "red"})
}

// TestQueryWithAVanishedGateway: a gateway whose process froze or died
// (its NATS connection gone without a goodbye) makes queries return in
// bounded time, with what the others said and an error naming it.
func TestQueryWithAVanishedGateway(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	gatewaytest.Start(t, e, gateway.Config{ID: "alive"})
	doomedBus := bustest.Connect(t, e, bus.Config{})
	doomed := gatewaytest.Start(t, e, gateway.Config{ID: "doomed", Bus: doomedBus})
	c := gatewaytest.DialWS(t, doomed, "/", nil)
	c.Read(5 * time.Second)

	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{}), QueryTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()
	n, err := a.GetAllClientIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	doomedBus.Close() // the gateway can no longer answer, and says no goodbye
	start := time.Now()
	n, err = a.GetAllClientIDCount(ctx)
	took := time.Since(start)
	var qe *api.QueryError
	require.True(t, errors.As(err, &qe), "err = %v", err)
	require.Equal(t, []string{"doomed"}, qe.Missing)
	require.Zero(t, n, "the partial answer holds what the live gateway said")
	require.Less(t, took, 3*time.Second, "bounded by QueryTimeout")
	require.Contains(t, err.Error(), "doomed")

	// A deadline in ctx bounds it as well.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = a.GetAllClientIDList(short)
	require.ErrorAs(t, err, &qe)
}

func TestValidation(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	defer a.Close()
	ctx := context.Background()
	_, err = api.New(api.Config{})
	require.ErrorContains(t, err, "Bus is required")
	require.ErrorIs(t, a.SendToClient(ctx, "not an id", nil), api.ErrInvalidClientID)
	require.ErrorIs(t, a.JoinGroup(ctx, "g-1-1", strings.Repeat("x", 300)), api.ErrInvalidName)
	_, err = a.GetClientIDsByUID(ctx, "")
	require.ErrorIs(t, err, api.ErrInvalidName)
	on, err := a.IsOnline(ctx, "gone-1-1")
	require.NoError(t, err)
	require.False(t, on, "a client of a gateway that is not running is offline")
	n, err := a.GetAllClientIDCount(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "no gateway: nobody online")
}

func sorted(ids ...string) []string {
	out := append([]string(nil), ids...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestListFormsAndGroupMaps covers what GatewayWorker's API has beyond
// single names: sends to lists of clients, uids and groups, queries over
// several groups, and the per-group maps, over two gateways.
func TestListFormsAndGroupMaps(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	g1 := gatewaytest.Start(t, e, gateway.Config{ID: "g1"})
	g2 := gatewaytest.Start(t, e, gateway.Config{ID: "g2"})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()

	conns, ids := gatewaytest.DialGreeted(t, g1, g1, g2, g2)
	for i, uid := range []string{"ann", "bob", "bob", ""} {
		if uid != "" {
			require.NoError(t, a.BindUID(ctx, ids[i], uid))
		}
	}
	for i, groups := range [][]string{{"red"}, {"red", "blue"}, {"blue"}, {"green"}} {
		for _, g := range groups {
			require.NoError(t, a.JoinGroup(ctx, ids[i], g))
		}
	}

	require.NoError(t, a.SendToClients(ctx, []string{ids[0], ids[2], ids[3], ids[0]}, []byte("list"), ids[3]))
	require.NoError(t, a.SendToUIDs(ctx, []string{"ann", "bob"}, []byte("uids")))
	require.NoError(t, a.SendToGroups(ctx, []string{"blue", "green"}, []byte("groups"), ids[2]))
	want := [][]string{{"list", "uids"}, {"groups", "uids"}, {"list", "uids"}, {"groups"}}
	for i, c := range conns {
		var got []string
		for range want[i] {
			got = append(got, c.Read(5*time.Second))
		}
		slices.Sort(got)
		require.Equal(t, want[i], got, "client %d", i)
		c.ExpectSilence(100 * time.Millisecond)
	}
	require.ErrorIs(t, a.SendToClients(ctx, []string{ids[0], "nope"}, []byte("x")), api.ErrInvalidClientID)
	require.ErrorIs(t, a.SendToGroups(ctx, []string{"red", ""}, []byte("x")), api.ErrInvalidName)
	require.ErrorIs(t, a.SendToUIDs(ctx, []string{""}, []byte("x")), api.ErrInvalidName)
	conns[0].ExpectSilence(100 * time.Millisecond) // the invalid calls sent nothing

	members, err := a.GetClientIDListByGroups(ctx, []string{"red", "blue"})
	require.NoError(t, err)
	require.Equal(t, sorted(ids[0], ids[1], ids[2]), members)
	uids, err := a.GetUIDListByGroups(ctx, []string{"blue", "green"})
	require.NoError(t, err)
	require.Equal(t, []string{"bob"}, uids)
	byGroup, err := a.GetAllGroupClientIDList(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"red": sorted(ids[0], ids[1]), "blue": sorted(ids[1], ids[2]), "green": {ids[3]}}, byGroup)
	clientCounts, err := a.GetAllGroupClientIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"red": 2, "blue": 2, "green": 1}, clientCounts)
	uidsByGroup, err := a.GetAllGroupUIDList(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"red": {"ann", "bob"}, "blue": {"bob"}}, uidsByGroup, "green's member has no uid")
	uidCounts, err := a.GetAllGroupUIDCount(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"red": 2, "blue": 1}, uidCounts)
}
