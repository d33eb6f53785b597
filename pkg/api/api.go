package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
)

// Errors returned by the API, for errors.Is.
var (
	// ErrClientNotFound means the client is not connected (any more).
	ErrClientNotFound = errors.New("api: client not found")
	// ErrInvalidClientID means a string is not a client id at all.
	ErrInvalidClientID = errors.New("api: invalid client id")
	// ErrInvalidName means a group or uid name is empty or too long.
	ErrInvalidName = errors.New("api: invalid group or uid name")
	// ErrGatewayUnavailable means the client's gateway did not answer.
	ErrGatewayUnavailable = errors.New("api: gateway unavailable")
	// ErrLimit means a gateway refused the call because of a limit.
	ErrLimit = errors.New("api: limit exceeded")
	// ErrBadRequest means a gateway could not make sense of the call.
	ErrBadRequest = errors.New("api: bad request")
	// ErrNATSUnavailable means the NATS connection is down (reconnecting,
	// or closed): nothing was sent. Without it, a push would wait in the
	// reconnect buffer and a query would find no gateway, which a caller
	// could not tell from nobody being online.
	ErrNATSUnavailable = errors.New("api: NATS not connected")
)

// MaxNameLen is the longest group or uid name, in bytes.
const MaxNameLen = 256

// Defaults for [Config].
const (
	DefaultRequestTimeout = 2 * time.Second
	DefaultQueryTimeout   = time.Second
)

// Config configures a [Client].
type Config struct {
	// Bus is the NATS connection. Required.
	Bus *bus.Conn
	// Prefix is the subject prefix of the deployment. Empty means bus.DefaultPrefix.
	Prefix string
	// RequestTimeout bounds a call whose ctx has no deadline. Zero means
	// DefaultRequestTimeout (2s).
	RequestTimeout time.Duration
	// QueryTimeout bounds how long a query waits for gateways that do not
	// answer, when ctx has no earlier deadline. Zero means DefaultQueryTimeout (1s).
	QueryTimeout time.Duration
	// Logger receives warnings. Nil means slog.Default().
	Logger *slog.Logger
	// Recoverable are name patterns ("u:chat-*", "g:room-*": path.Match
	// globs over "u:<uid>" and "g:<group>") whose SendToUID(s) and
	// SendToGroup(s) are recoverable, as through Recoverable(). Empty:
	// none.
	Recoverable []string
}

// Client is the API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	bus      *bus.Conn
	subj     bus.Subjects
	gateways *presence
	// frame is the frame type of this view's pushes (see WithFrame);
	// derived views share the parent's connection and must not Close it.
	frame   Frame
	derived bool
	// recoverable: this view's uid and group pushes are (Recoverable).
	recoverable bool
}

// Frame is the WebSocket frame type of a push; TCP clients get the same
// bytes whatever it is. Its values are the wire's (TestFrameValuesAreTheWires).
type Frame uint8

// Frame types for [Client.WithFrame] and [Client.SetWebSocketType].
const (
	// FrameDefault leaves the choice to the connection's default, then the
	// gateway's (gatewayworker run --websocket-type); where none is set,
	// UTF-8 bytes go as text, others as binary.
	FrameDefault Frame = iota
	// FrameText sends a text frame (a browser's MessageEvent.data is a
	// string). Bytes that are not UTF-8 go as binary all the same: browsers
	// fail a connection on a text frame that is not UTF-8.
	FrameText
	// FrameBinary sends a binary frame (a Blob or ArrayBuffer in browsers).
	FrameBinary
)

// WithFrame returns a view of c whose pushes (every SendTo* call) go to
// WebSocket clients in frames of type f: c.WithFrame(api.FrameBinary).
// SendToGroup(...) sends protobuf or msgpack that a browser receives as
// binary even when its bytes happen to be UTF-8. The view shares c's
// connection and state, and has no Close. f must be one of the Frame
// constants: the view's pushes fail with ErrBadRequest otherwise.
func (c *Client) WithFrame(f Frame) Calls {
	v := *c
	v.frame, v.derived = f, true
	return &v
}

// SetWebSocketType sets the frame type of the pushes to client clientID
// that choose none (GatewayWorker's $connection->websocketType):
// FrameText, FrameBinary, or FrameDefault to restore the gateway's.
func (c *Client) SetWebSocketType(ctx context.Context, clientID string, f Frame) error {
	if f > FrameBinary {
		return fmt.Errorf("%w: frame type %d", ErrBadRequest, f)
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpSetFrame, Frame: bus.Frame(f)})
	return err
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Bus == nil:
		return errors.New("api: Config.Bus is required")
	case c.RequestTimeout < 0:
		return fmt.Errorf("api: RequestTimeout (%v) must not be negative", c.RequestTimeout)
	case c.QueryTimeout < 0:
		return fmt.Errorf("api: QueryTimeout (%v) must not be negative", c.QueryTimeout)
	}
	return checkPatterns(c.Recoverable)
}

// New returns an API client on cfg.Bus. It does no I/O; the first query
// starts following gateway heartbeats. Call Close when done.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return &Client{cfg: cfg, bus: cfg.Bus, subj: subj, gateways: newPresence(cfg.Bus, subj)}, nil
}

// Close stops following gateway heartbeats. The NATS connection stays open.
func (c *Client) Close() {
	if !c.derived {
		c.gateways.stop()
	}
}

func (c *Client) bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func validName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrInvalidName, name, MaxNameLen)
	}
	return nil
}

// Available returns ErrNATSUnavailable while the NATS connection is down
// (every call fails so then), and nil otherwise: for a caller that must
// refuse several calls as a whole before making any.
func (c *Client) Available() error {
	if !c.bus.Connected() {
		return ErrNATSUnavailable
	}
	return nil
}

// publish sends cmd without waiting for anyone.
func (c *Client) publish(ctx context.Context, subject string, cmd *bus.Command) error {
	if err := c.canPush(ctx, cmd); err != nil {
		return err
	}
	return ofBus(c.bus.PublishCommand(subject, cmd))
}

// canPush is what a push needs before it goes out: a live context, a
// known frame type and a NATS connection.
func (c *Client) canPush(ctx context.Context, cmd *bus.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkFrame(cmd); err != nil {
		return err
	}
	return c.Available()
}

// checkFrame refuses a push whose frame type is none of the Frame
// constants (a WithFrame view made with another value): gateways refuse it
// too, but a broadcast has no answer to say so.
func checkFrame(cmd *bus.Command) error {
	if cmd.Frame > bus.Frame(FrameBinary) {
		return fmt.Errorf("%w: frame type %d", ErrBadRequest, cmd.Frame)
	}
	return nil
}

// toClient sends cmd to the gateway of client id and waits for its answer.
func (c *Client) toClient(ctx context.Context, id string, cmd *bus.Command) (bus.Reply, error) {
	gw, err := clientid.Gateway(id)
	if err != nil {
		return bus.Reply{}, fmt.Errorf("%w: %q", ErrInvalidClientID, id)
	}
	if err := checkFrame(cmd); err != nil {
		return bus.Reply{}, err
	}
	if err := c.Available(); err != nil {
		return bus.Reply{}, err
	}
	cmd.Clients = []string{id}
	data := bus.MarshalCommand(cmd)
	ctx, cancel := c.bounded(ctx, c.cfg.RequestTimeout)
	defer cancel()
	answer, err := c.bus.Request(ctx, c.subj.Gateway(gw), data)
	if errors.Is(err, bus.ErrNoResponders) {
		// Its gateway is gone, and the client with it.
		return bus.Reply{}, fmt.Errorf("%w: %s (its gateway %s is not running)", ErrClientNotFound, id, gw)
	}
	if err != nil {
		if cerr := c.Available(); cerr != nil { // lost while waiting
			return bus.Reply{}, fmt.Errorf("%w: %w", cerr, ofBus(err))
		}
		return bus.Reply{}, fmt.Errorf("%w: %s: %w", ErrGatewayUnavailable, gw, ofBus(err))
	}
	var rep bus.Reply
	if err := bus.Unmarshal(answer, &rep); err != nil {
		return bus.Reply{}, ofBus(err)
	}
	return rep, replyErr(rep)
}

func replyErr(rep bus.Reply) error {
	switch rep.Code {
	case bus.ReplyOK:
		return nil
	case bus.ReplyNotFound:
		return fmt.Errorf("%w: %s", ErrClientNotFound, rep.Message)
	case bus.ReplyLimit:
		return fmt.Errorf("%w: %s", ErrLimit, rep.Message)
	}
	return fmt.Errorf("%w: %s", ErrBadRequest, rep.Message)
}

// SendToClient sends data to one client and returns once its gateway has
// queued it for the socket.
func (c *Client) SendToClient(ctx context.Context, clientID string, data []byte) error {
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Body: data})
	return err
}

// SendToUID sends data to every client bound to uid, on any gateway; a
// recoverable push (Recoverable, Config.Recoverable) returns once stored.
func (c *Client) SendToUID(ctx context.Context, uid string, data []byte) error {
	return c.pushTo(ctx, bus.Channel{UID: true, Name: uid}, &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Body: data})
}

// SendToGroup sends data to every member of group except the excluded
// client ids, on any gateway; recoverable as SendToUID is.
func (c *Client) SendToGroup(ctx context.Context, group string, data []byte, exclude ...string) error {
	return c.pushTo(ctx, bus.Channel{Name: group}, &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Body: data, Exclude: exclude})
}

// SendToAll sends data to every client of every gateway except the
// excluded client ids.
func (c *Client) SendToAll(ctx context.Context, data []byte, exclude ...string) error {
	return c.publish(ctx, c.subj.All(), &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Body: data, Exclude: exclude})
}

// SendToClients sends data to each of clientIDs but the excluded ids, on
// any gateways: one message per gateway, published without an answer, as
// SendToGroup is (GatewayWorker's sendToAll with a list of client ids).
// An id that is not a client id fails the call before anything is sent.
func (c *Client) SendToClients(ctx context.Context, clientIDs []string, data []byte, exclude ...string) error {
	byGateway := map[string][]string{}
	var order []string
	for _, id := range clientIDs {
		gw, err := clientid.Gateway(id)
		if err != nil {
			return fmt.Errorf("%w: %q", ErrInvalidClientID, id)
		}
		if slices.Contains(exclude, id) || slices.Contains(byGateway[gw], id) {
			continue
		}
		if byGateway[gw] == nil {
			order = append(order, gw)
		}
		byGateway[gw] = append(byGateway[gw], id)
	}
	for _, gw := range order {
		if err := c.publish(ctx, c.subj.Gateway(gw), &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Clients: byGateway[gw], Body: data}); err != nil {
			return err
		}
	}
	return nil
}

// SendToUIDs sends data to the clients bound to any of uids. A client is
// bound to one uid at most, so none receives it twice.
func (c *Client) SendToUIDs(ctx context.Context, uids []string, data []byte) error {
	for _, uid := range uids {
		if err := validName(uid); err != nil {
			return err
		}
	}
	for _, uid := range uids {
		if err := c.SendToUID(ctx, uid, data); err != nil {
			return err
		}
	}
	return nil
}

// SendToGroups sends data to the members of each of groups but the
// excluded client ids. Each group is a send of its own: a client in two
// of the groups receives data twice.
func (c *Client) SendToGroups(ctx context.Context, groups []string, data []byte, exclude ...string) error {
	for _, g := range groups {
		if err := validName(g); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if err := c.SendToGroup(ctx, g, data, exclude...); err != nil {
			return err
		}
	}
	return nil
}

// BindUID binds a client to uid, replacing the uid it had: a client has at
// most one uid, a uid any number of clients.
func (c *Client) BindUID(ctx context.Context, clientID, uid string) error {
	if err := validName(uid); err != nil {
		return err
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpBindUID, Name: uid})
	return err
}

// UnbindUID unbinds a client from uid; nothing happens if it is bound to another.
func (c *Client) UnbindUID(ctx context.Context, clientID, uid string) error {
	if err := validName(uid); err != nil {
		return err
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpUnbindUID, Name: uid})
	return err
}

// JoinGroup adds a client to group. When it returns, sends to the group reach the client.
func (c *Client) JoinGroup(ctx context.Context, clientID, group string) error {
	if err := validName(group); err != nil {
		return err
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpJoinGroup, Name: group})
	return err
}

// LeaveGroup removes a client from group.
func (c *Client) LeaveGroup(ctx context.Context, clientID, group string) error {
	if err := validName(group); err != nil {
		return err
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpLeaveGroup, Name: group})
	return err
}

// Ungroup removes every member of group on every gateway; the clients stay connected.
func (c *Client) Ungroup(ctx context.Context, group string) error {
	if err := validName(group); err != nil {
		return err
	}
	return c.publish(ctx, c.subj.Group(group), &bus.Command{Op: bus.OpUngroup})
}

// CloseClient sends lastData (if any) to a client and closes it; workers
// then get its close event with reason bus.ClosedByAPI.
func (c *Client) CloseClient(ctx context.Context, clientID string, lastData []byte) error {
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpClose, Body: lastData})
	return err
}

// AcceptClient accepts a pending client (gateway.AuthConfig.Pending): from
// now on broadcasts reach it, and it may join groups. A uid that is not
// empty is bound at once, as BindUID would. Accepting a client that is not
// pending only binds the uid.
func (c *Client) AcceptClient(ctx context.Context, clientID, uid string) error {
	if uid != "" {
		if err := validName(uid); err != nil {
			return err
		}
	}
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpAccept, Name: uid})
	return err
}

// RejectClient sends lastData (if any) to a pending client and closes it
// with close code 4502 (bus.CloseUnauthorized).
func (c *Client) RejectClient(ctx context.Context, clientID string, lastData []byte) error {
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpReject, Body: lastData})
	return err
}

// DestroyClient closes a client at once, sending nothing.
func (c *Client) DestroyClient(ctx context.Context, clientID string) error {
	_, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpDestroy})
	return err
}

// IsOnline reports whether a client is connected. An id whose gateway is
// gone is simply offline.
func (c *Client) IsOnline(ctx context.Context, clientID string) (bool, error) {
	rep, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpIsOnline})
	if errors.Is(err, ErrClientNotFound) {
		return false, nil
	}
	return rep.OK, err
}

// GetSession returns a client's session: never nil for a connected client.
// Integers come back as int64 (see bus.DecodeSession).
func (c *Client) GetSession(ctx context.Context, clientID string) (map[string]any, error) {
	rep, err := c.toClient(ctx, clientID, &bus.Command{Op: bus.OpGetSession})
	if err != nil {
		return nil, err
	}
	return bus.DecodeSession(rep.Body)
}

// SetSession replaces a client's session. A handler running for that
// client at the same moment may overwrite it when it returns, as PHP's
// $_SESSION would: inside a handler, change the current client's session
// through [worker.Client.Session] instead.
func (c *Client) SetSession(ctx context.Context, clientID string, session map[string]any) error {
	b, err := bus.EncodeSession(session)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	_, err = c.toClient(ctx, clientID, &bus.Command{Op: bus.OpSetSession, Body: b})
	return err
}

// UpdateSession merges changes into a client's session: keys present
// replace old values, and keys whose value is nil are removed.
func (c *Client) UpdateSession(ctx context.Context, clientID string, changes map[string]any) error {
	b, err := bus.EncodeSession(changes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	_, err = c.toClient(ctx, clientID, &bus.Command{Op: bus.OpUpdateSession, Body: b})
	return err
}

// SendToClientAsync sends data to client clientID on gateway gatewayID
// without waiting for an answer: no error says whether the client is
// there. Workers use it for the current client, whose gateway they know.
func (c *Client) SendToClientAsync(ctx context.Context, gatewayID, clientID string, data []byte) error {
	return c.publish(ctx, c.subj.Gateway(gatewayID), &bus.Command{Op: bus.OpSend, Frame: bus.Frame(c.frame), Clients: []string{clientID}, Body: data})
}
