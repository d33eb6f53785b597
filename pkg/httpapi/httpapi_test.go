package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

const wait = 5 * time.Second

// TestPushesReachWebSockets pushes through HTTP to real WebSocket clients:
// to one client (text and binary), to a uid, to groups with awkward
// names, to everyone with an exclusion, and closes clients.
func TestPushesReachWebSockets(t *testing.T) {
	s := newStack(t, stackConfig{})
	a, aID := s.dial()
	b, bID := s.dial()
	c, cID := s.dial()

	require.Equal(t, map[string]any{"ok": true}, s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": aID, "data": "hello a"}))
	require.Equal(t, "hello a", a.Read(wait))
	bin := []byte{0xff, 0x00, 0x01, 0xfe}
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": bID, "data_base64": base64.StdEncoding.EncodeToString(bin)})
	require.Equal(t, string(bin), b.Read(wait))

	s.ok(200, "POST", "/v1/clients/"+aID+"/uid", map[string]any{"uid": "ann"})
	s.ok(200, "POST", "/v1/clients/"+bID+"/uid", map[string]any{"uid": "ann"})
	s.ok(202, "POST", "/v1/send/uid", map[string]any{"uid": "ann", "data": "to ann"})
	require.Equal(t, "to ann", a.Read(wait))
	require.Equal(t, "to ann", b.Read(wait))

	for _, group := range []string{"a.b", "房间", "a b", "a/b", "*", ">"} {
		path := "/v1/groups/" + url.PathEscape(group)
		s.ok(200, "POST", path+"/join", map[string]any{"client_id": aID})
		s.ok(200, "POST", path+"/join", map[string]any{"client_id": cID})
		s.ok(202, "POST", "/v1/send/group", map[string]any{"group": group, "data": "in " + group, "exclude": []string{cID}})
		require.Equal(t, "in "+group, a.Read(wait), group)
		require.Equal(t, []string{aID, cID}, sorted(strs(s.ok(200, "GET", path+"/clients", nil)["client_ids"])), group)
		require.EqualValues(t, 2, s.ok(200, "GET", path+"/count", nil)["count"], group)
		s.ok(200, "POST", path+"/leave", map[string]any{"client_id": aID})
		require.Equal(t, []string{cID}, strs(s.ok(200, "GET", path+"/clients", nil)["client_ids"]), group)
	}
	require.Equal(t, []string{"*", ">", "a b", "a.b", "a/b", "房间"}, strs(s.ok(200, "GET", "/v1/groups", nil)["groups"]))
	// c was excluded from every group push: its next message is this one.
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": cID, "data": "marker"})
	require.Equal(t, "marker", c.Read(wait))

	s.ok(202, "POST", "/v1/send/all", map[string]any{"data": "to all", "exclude": []string{bID}})
	require.Equal(t, "to all", a.Read(wait))
	require.Equal(t, "to all", c.Read(wait))
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": bID, "data": "marker"})
	require.Equal(t, "marker", b.Read(wait), "b was excluded")

	s.ok(202, "DELETE", "/v1/groups/"+url.PathEscape("房间"), nil)
	require.Eventually(t, func() bool {
		_, m := s.call("GET", "/v1/groups/"+url.PathEscape("房间")+"/count", nil)
		return m["count"] == float64(0)
	}, wait, 10*time.Millisecond)

	s.ok(200, "POST", "/v1/clients/"+cID+"/close", map[string]any{"data": "bye"})
	require.Equal(t, "bye", c.Read(wait))
	require.Error(t, c.Closed(wait))
	s.ok(200, "POST", "/v1/clients/"+bID+"/destroy", nil)
	require.Error(t, b.Closed(wait))
	require.Eventually(t, func() bool {
		_, m := s.call("GET", "/v1/clients/"+bID+"/online", nil)
		return m["online"] == false
	}, wait, 10*time.Millisecond)
	require.Equal(t, true, s.ok(200, "GET", "/v1/clients/"+aID+"/online", nil)["online"])
}

// TestSessionsUidsAndQueries covers the session, uid and query routes.
func TestSessionsUidsAndQueries(t *testing.T) {
	s := newStack(t, stackConfig{})
	_, aID := s.dial()
	_, bID := s.dial()

	s.ok(200, "PUT", "/v1/clients/"+aID+"/session", `{"session":{"name":"Ann","n":1,"big":12345678901,"f":1.5,"tags":["x"],"nested":{"k":2}}}`)
	require.Equal(t, map[string]any{"name": "Ann", "n": float64(1), "big": float64(12345678901), "f": 1.5, "tags": []any{"x"}, "nested": map[string]any{"k": float64(2)}},
		s.ok(200, "GET", "/v1/clients/"+aID+"/session", nil)["session"])
	got, err := s.api.GetSession(t.Context(), aID)
	require.NoError(t, err)
	require.Equal(t, int64(12345678901), got["big"], "JSON integers are stored as integers")
	require.Equal(t, 1.5, got["f"])

	s.ok(200, "PATCH", "/v1/clients/"+aID+"/session", `{"session":{"n":2,"name":null}}`)
	require.Equal(t, map[string]any{"n": float64(2), "big": float64(12345678901), "f": 1.5, "tags": []any{"x"}, "nested": map[string]any{"k": float64(2)}},
		s.ok(200, "GET", "/v1/clients/"+aID+"/session", nil)["session"])
	require.Equal(t, map[string]any{}, s.ok(200, "GET", "/v1/clients/"+bID+"/session", nil)["session"])
	s.ok(200, "PUT", "/v1/clients/"+bID+"/session", `{"session":{"name":"Bob"}}`)

	s.ok(200, "POST", "/v1/clients/"+aID+"/uid", `{"uid":"ann"}`)
	s.ok(200, "POST", "/v1/clients/"+bID+"/uid", `{"uid":"bob"}`)
	s.ok(200, "POST", "/v1/groups/room/join", map[string]any{"client_id": aID})
	s.ok(200, "POST", "/v1/groups/room/join", map[string]any{"client_id": bID})

	all := sorted([]string{aID, bID})
	require.Equal(t, all, strs(s.ok(200, "GET", "/v1/clients", nil)["client_ids"]))
	require.EqualValues(t, 2, s.ok(200, "GET", "/v1/clients/count", nil)["count"])
	sessions := s.ok(200, "GET", "/v1/clients/sessions", nil)["sessions"].(map[string]any)
	require.Len(t, sessions, 2)
	require.Equal(t, map[string]any{"name": "Bob"}, sessions[bID])
	require.Equal(t, sessions, s.ok(200, "GET", "/v1/groups/room/sessions", nil)["sessions"])
	require.Equal(t, []string{"ann", "bob"}, strs(s.ok(200, "GET", "/v1/uids", nil)["uids"]))
	require.EqualValues(t, 2, s.ok(200, "GET", "/v1/uids/count", nil)["count"])
	require.Equal(t, []string{"ann", "bob"}, strs(s.ok(200, "GET", "/v1/groups/room/uids", nil)["uids"]))
	require.EqualValues(t, 2, s.ok(200, "GET", "/v1/groups/room/uid-count", nil)["count"])
	require.Equal(t, []string{aID}, strs(s.ok(200, "GET", "/v1/uids/ann/clients", nil)["client_ids"]))
	require.Equal(t, true, s.ok(200, "GET", "/v1/uids/ann/online", nil)["online"])
	require.Equal(t, "ann", s.ok(200, "GET", "/v1/clients/"+aID+"/uid", nil)["uid"])

	s.ok(200, "DELETE", "/v1/clients/"+aID+"/uid/ann", nil)
	require.Equal(t, "", s.ok(200, "GET", "/v1/clients/"+aID+"/uid", nil)["uid"])
	require.Equal(t, false, s.ok(200, "GET", "/v1/uids/ann/online", nil)["online"])
	require.Equal(t, []string{}, strs(s.ok(200, "GET", "/v1/uids/ann/clients", nil)["client_ids"]), "empty lists are [], not null")

	gws := s.ok(200, "GET", "/v1/gateways", nil)["gateways"].([]any)
	require.Len(t, gws, 1)
	require.Equal(t, "gw1", gws[0].(map[string]any)["id"])
	require.EqualValues(t, 2, gws[0].(map[string]any)["connections"])
	workers := s.ok(200, "GET", "/v1/workers?wait=1s", nil)["workers"].([]any)
	require.Len(t, workers, 1)
	require.NotContains(t, s.ok(200, "GET", "/v1/clients/count", nil), "partial", "a full answer is not marked partial")
}

func TestNewChecksConfig(t *testing.T) {
	_, err := httpapi.New(httpapi.Config{})
	require.ErrorContains(t, err, "API is required")
	s := newStack(t, stackConfig{})
	_, err = httpapi.New(httpapi.Config{API: s.api, MaxBodyBytes: -1})
	require.ErrorContains(t, err, "MaxBodyBytes")
	_, err = httpapi.New(httpapi.Config{API: s.api, Keys: []string{"ok", ""}})
	require.ErrorContains(t, err, "Keys[1]")
}

// TestOpenAPIIsPublic: the document needs no key, everything else does.
func TestOpenAPIIsPublic(t *testing.T) {
	s := newStack(t, stackConfig{})
	status, hdr, body := s.raw("GET", httpapi.OpenAPIPath, nil, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	require.Contains(t, string(body), `"openapi": "3.1.0"`)
	status, _, _ = s.raw("GET", "/v1/clients/count", nil, nil)
	require.Equal(t, http.StatusUnauthorized, status)
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestPushFrameType: "frame" chooses a push's WebSocket frame type.
func TestPushFrameType(t *testing.T) {
	s := newStack(t, stackConfig{})
	a, aID := s.dial()
	_, bID := s.dial()
	s.ok(200, "POST", "/v1/groups/g/join", map[string]any{"client_id": aID})
	s.ok(200, "POST", "/v1/clients/"+aID+"/uid", map[string]any{"uid": "ann"})
	expect := func(want string, binary bool) {
		t.Helper()
		got, isBinary, err := a.TryReadMessage(wait)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, binary, isBinary, "binary frame of %q", want)
	}
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": aID, "data": "unchosen"})
	expect("unchosen", false)
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": aID, "data": "b1", "frame": "binary"})
	expect("b1", true)
	s.ok(202, "POST", "/v1/send/uid", map[string]any{"uid": "ann", "data": "b2", "frame": "binary"})
	expect("b2", true)
	s.ok(202, "POST", "/v1/send/group", map[string]any{"group": "g", "data": "b3", "frame": "binary"})
	expect("b3", true)
	s.ok(202, "POST", "/v1/send/all", map[string]any{"data": "b4", "frame": "binary", "exclude": []string{bID}})
	expect("b4", true)
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": aID, "data_base64": "aGk=", "frame": "text"})
	expect("hi", false)
	s.ok(202, "POST", "/v1/send/client", map[string]any{"client_id": aID, "data": "d", "frame": "default"})
	expect("d", false)

	msg := s.fails(400, "invalid_argument", "POST", "/v1/send/client", map[string]any{"client_id": aID, "data": "x", "frame": "blob"})
	require.Contains(t, msg, "frame")
	s.fails(400, "invalid_argument", "POST", "/v1/clients/"+aID+"/close", map[string]any{"data": "x", "frame": "binary"})
}
