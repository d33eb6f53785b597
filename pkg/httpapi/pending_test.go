package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
)

// TestPendingAcceptAndReject: a pending client gets broadcasts only once
// POST /v1/clients/{id}/accept accepted it, with its uid bound; reject
// closes another with 4502 after its last message.
func TestPendingAcceptAndReject(t *testing.T) {
	s := newStack(t, stackConfig{gateway: gateway.Config{Auth: &gateway.AuthConfig{Pending: true}}})
	ctx := context.Background()
	c, id := s.dial()
	require.NoError(t, s.api.SendToAll(ctx, []byte("before")))
	c.ExpectSilence(200 * time.Millisecond) // a guard only: the order below is the proof
	s.ok(200, "POST", "/v1/clients/"+id+"/accept", map[string]any{"uid": "user-7"})
	require.NoError(t, s.api.SendToUID(ctx, "user-7", []byte("to uid")))
	require.Equal(t, "to uid", c.Read(wait), "accepted, uid bound, and nothing of the broadcast before")
	require.NoError(t, s.api.SendToAll(ctx, []byte("after")))
	require.Equal(t, "after", c.Read(wait))

	r, rid := s.dial()
	s.ok(200, "POST", "/v1/clients/"+rid+"/reject", map[string]any{"data": "login failed"})
	require.Equal(t, "login failed", r.Read(wait))
	err := r.Closed(wait)
	require.True(t, websocket.IsCloseError(err, 4502), "%v", err)
}
