package gateway_test

import (
	"context"
	"fmt"
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
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// TestHostileTokenClaims: a token's sub and groups are names like any
// other: hostile characters stay inside their own subject (no NATS
// wildcard or extra token reaches other clients), while a name longer than
// api.MaxNameLen, or more groups than MaxGroupsPerClient, refuse the
// client with 4502 (cause "claims") instead of binding what the API cannot
// name and what breaks EnvelopeOverhead's longest uid.
func TestHostileTokenClaims(t *testing.T) {
	require.Equal(t, api.MaxNameLen, gateway.MaxNameLen)
	k := testKeys(t)
	s := startAuthStack(t, gateway.Config{Auth: k.authConfig(), MaxGroupsPerClient: 8})
	hour := time.Now().Add(time.Hour)
	ctx := context.Background()
	long := strings.Repeat("n", gateway.MaxNameLen+1)
	many := make([]string, 9)
	for i := range many {
		many[i] = fmt.Sprint("g", i)
	}

	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
	}{
		{"sub too long", claimsFor(long, hour)},
		{"group name too long", claimsFor("ann", hour, "ok", long)},
		{"more groups than MaxGroupsPerClient", claimsFor("ann", hour, many...)},
		{"thousands of groups", claimsFor("ann", hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "thousands of groups" {
				g := make([]string, 3000)
				for i := range g {
					g[i] = fmt.Sprint("room-", i)
				}
				tc.claims["groups"] = g
			}
			before := s.gw.Stats()
			c := s.dial(t, "", nil)
			require.NoError(t, c.WriteMessage(websocket.TextMessage, tokenMessage(sign(t, jwt.SigningMethodHS256, k.secret, "", tc.claims))))
			code, text, msgs := readClose(t, c)
			require.Empty(t, msgs)
			require.Equal(t, bus.CloseUnauthorized.WSCode(), code, text)
			require.Eventually(t, func() bool {
				return s.gw.Stats().AuthFailures["claims"] == before.AuthFailures["claims"]+1
			}, wait, 10*time.Millisecond)
			groups, err := s.api.GetAllGroupIDList(ctx)
			require.NoError(t, err)
			require.Empty(t, groups, "a refused client joined nothing")
		})
	}

	// Hostile characters: each name is its own, encoded subject token.
	hostile := []string{".", "*", ">", "a b", "日本", "x.*.>"}
	c := s.dial(t, "?token="+sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("a.*", hour, hostile...)), nil)
	greeting := strings.Fields(readMsg(t, c))
	require.Equal(t, "a.*", strings.Join(greeting[1:], " "))
	for _, name := range []string{"x", "a", "b", "a.b", "日"} {
		require.NoError(t, s.api.SendToGroup(ctx, name, []byte("not you: "+name)))
		require.NoError(t, s.api.SendToUID(ctx, name, []byte("not you: uid "+name)))
	}
	require.NoError(t, s.api.SendToUID(ctx, "a.b", []byte("not you: uid a.b")))
	for _, name := range hostile {
		require.NoError(t, s.api.SendToGroup(ctx, name, []byte("group "+name)))
		require.Equal(t, "group "+name, readMsg(t, c))
	}
	require.NoError(t, s.api.SendToUID(ctx, "a.*", []byte("uid")))
	require.Equal(t, "uid", readMsg(t, c))
}

// TestLongNamesRefusedOnTheWire: a command that binds a uid, joins a group
// or accepts with a name longer than MaxNameLen is answered bad_request,
// as the API refuses it before sending: a worker in another language
// cannot make a client whose uid breaks EnvelopeOverhead.
func TestLongNamesRefusedOnTheWire(t *testing.T) {
	gw, a, e := frameStackOn(t, gateway.Config{})
	_, ids := gatewaytest.DialGreeted(t, gw)
	raw := bustest.Connect(t, e, bus.Config{})
	ctx := context.Background()
	long := strings.Repeat("n", gateway.MaxNameLen+1)
	for _, op := range []bus.Op{bus.OpBindUID, bus.OpJoinGroup, bus.OpAccept} {
		data, err := bus.Marshal(&bus.Command{Op: op, Clients: ids, Name: long})
		require.NoError(t, err)
		repData, err := raw.Request(ctx, bus.DefaultPrefix+"."+gw.ID()+".cmd", data)
		require.NoError(t, err)
		var rep bus.Reply
		require.NoError(t, bus.Unmarshal(repData, &rep))
		require.Equal(t, bus.ReplyBadRequest, rep.Code, "op %d: %+v", op, rep)
	}
	uid, err := a.GetUIDByClientID(ctx, ids[0])
	require.NoError(t, err)
	require.Empty(t, uid)
	groups, err := a.GetAllGroupIDList(ctx)
	require.NoError(t, err)
	require.Empty(t, groups)
	// The longest name is fine.
	require.NoError(t, a.BindUID(ctx, ids[0], long[1:]))
}

// TestTokenlessClientsHoldSlotsUntilTheAuthTimeout: connections that have
// not sent their token count against MaxConnections (docs/security.md):
// while they fill it, a client with a good token is refused with 4003
// (server full); at the auth timeout they are closed with 4502 and the
// slots are free again.
func TestTokenlessClientsHoldSlotsUntilTheAuthTimeout(t *testing.T) {
	k := testKeys(t)
	cfg := k.authConfig()
	cfg.Timeout = 500 * time.Millisecond
	s := startAuthStack(t, gateway.Config{Auth: cfg, MaxConnections: 2})
	good := "?token=" + sign(t, jwt.SigningMethodHS256, k.secret, "", claimsFor("ann", time.Now().Add(time.Hour)))
	squatters := []*websocket.Conn{s.dial(t, "", nil), s.dial(t, "", nil)}
	require.Eventually(t, func() bool { return s.gw.Stats().Connections == 2 }, wait, 10*time.Millisecond)

	code, text, _ := readClose(t, s.dial(t, good, nil))
	require.Equal(t, bus.CloseServerFull.WSCode(), code, text)

	for _, c := range squatters {
		code, text, _ := readClose(t, c)
		require.Equal(t, bus.CloseUnauthorized.WSCode(), code, text)
	}
	require.Eventually(t, func() bool { return s.gw.Stats().Connections == 0 }, wait, 10*time.Millisecond)
	require.True(t, strings.HasSuffix(readMsg(t, s.dial(t, good, nil)), " ann"))
}
