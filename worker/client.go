package worker

import (
	"bytes"
	"context"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// Client is the client whose event a handler is running for. It is valid
// only during the handler call. It embeds the calls of the worker's API
// client, so a handler writes c.SendToGroup(ctx, ...) as GatewayWorker's
// code writes Gateway::sendToGroup(...); not its Close, since every
// handler of the worker shares that client.
type Client struct {
	api.Calls
	id, gateway, addr, uid string

	rawSession []byte
	session    map[string]any
	sessionErr error
}

// ID returns the client id.
func (c *Client) ID() string { return c.id }

// GatewayID returns the id of the gateway holding the client's connection.
func (c *Client) GatewayID() string { return c.gateway }

// RemoteAddr returns the client's address as its gateway saw it.
func (c *Client) RemoteAddr() string { return c.addr }

// UID returns the uid the client was bound to when the event left its
// gateway ("" if none).
func (c *Client) UID() string { return c.uid }

// Session returns the client's session, like PHP's $_SESSION: change the
// map freely; after the handlers of this event batch return, the gateway
// stores it (only when it changed). It is never nil.
func (c *Client) Session() map[string]any {
	if c.session == nil {
		c.session, c.sessionErr = bus.DecodeSession(c.rawSession)
		if c.sessionErr != nil {
			c.session = map[string]any{}
		}
	}
	return c.session
}

// sessionUpdate returns the session to store, if handlers changed it.
func (c *Client) sessionUpdate() (data []byte, changed bool, err error) {
	if c.session == nil || c.sessionErr != nil {
		return nil, false, nil
	}
	b, err := bus.EncodeSession(c.session)
	if err != nil {
		return nil, false, err
	}
	return b, !bytes.Equal(b, c.rawSession), nil
}

// WithFrame returns a copy of c whose pushes go to WebSocket clients in
// frames of type f (see api.Client.WithFrame):
// c.WithFrame(api.FrameBinary).SendToCurrentClient(ctx, msgpackBytes).
// The copy shares c's session.
func (c *Client) WithFrame(f api.Frame) *Client {
	c.Session() // decoded now, so that both hold the same map
	v := *c
	v.Calls = c.Calls.WithFrame(f)
	return &v
}

// SendToCurrentClient sends data to this client without waiting for its
// gateway: messages sent so reach the client in the order they were sent.
func (c *Client) SendToCurrentClient(ctx context.Context, data []byte) error {
	return c.SendToClientAsync(ctx, c.gateway, c.id, data)
}
