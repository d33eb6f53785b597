package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
)

// Limits on what a client may send. The page sends at most 32-character
// names; the limits keep a hand-written client from filling every
// member's screen and session.
const (
	// maxContentBytes bounds a message's content, in bytes of UTF-8
	// before escaping.
	maxContentBytes = 3000 // the page allows 1000 UTF-16 units: up to 3000 bytes
	// maxNameRunes bounds a client name, in characters.
	maxNameRunes = 64
)

// timeLayout is PHP's date('Y-m-d H:i:s').
const timeLayout = "2006-01-02 15:04:05"

// Session keys, the same as workerman-chat's $_SESSION keys.
const (
	sessionName = "client_name"
	sessionRoom = "room_id"
)

// toAll is the to_client_id of a message to the whole room.
const toAll = "all"

// The prefixes workerman-chat puts before a private message's content:
// the target's copy reads "<b>对你说: </b>" ("said to you: "), the
// sender's "<b>你对NAME说: </b>" ("you said to NAME: "), NAME being the
// to_client_name the sender gave, escaped. Pages written for
// workerman-chat render content as HTML and tell private messages from
// public ones by them; our page recognises and strips them.
const (
	privateToTarget     = "<b>对你说: </b>"
	privateSenderBefore = "<b>你对"
	privateSenderAfter  = "说: </b>"
)

// Replies to client mistakes. They are plain ASCII, so they need no escaping.
const (
	errLoginFirst   = "login first"
	errOffline      = "user is offline"
	errNotJSON      = "invalid JSON"
	errNotObject    = "a message must be a JSON object"
	errNoType       = "missing type"
	errUnknownType  = "unknown type"
	errNoName       = "login: client_name must be a non-empty string"
	errBadRoom      = "login: room_id must be a number or a non-empty string"
	errNoTarget     = "say: to_client_id must be a string"
	errNoContent    = "say: content must be a string"
	errInvalidField = "invalid field: "
)

// htmlEscaper does what PHP's htmlspecialchars($s, ENT_QUOTES) does, so
// contents are byte for byte what workerman-chat sends. html.EscapeString
// would write &#39; and &#34;, and the page does not decode &#34;.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#039;")

func escape(s string) string { return htmlEscaper.Replace(s) }

// nl2br does what PHP's nl2br does: it puts "<br />" before every line
// break (\r\n, \n\r, \n or \r), keeping the break. workerman-chat sends
// contents through it, and front ends turn the tag back into a line break.
func nl2br(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '\r' && ch != '\n' {
			b.WriteByte(ch)
			continue
		}
		b.WriteString("<br />")
		b.WriteByte(ch)
		if i+1 < len(s) && (s[i+1] == '\r' || s[i+1] == '\n') && s[i+1] != ch {
			i++
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// inMessage is any message a client sends. Pointers tell a missing field
// from an empty one.
type inMessage struct {
	Type       string          `json:"type"`
	ClientName *string         `json:"client_name"`
	RoomID     json.RawMessage `json:"room_id"`
	ToClientID *string         `json:"to_client_id"`
	// ToClientName is the target's name as the sender's page shows it;
	// only the sender's copy of a private message uses it.
	ToClientName *string `json:"to_client_name"`
	Content      *string `json:"content"`
}

// The messages sent to clients. They are structs, not maps, so the keys
// come out in workerman-chat's order.
type (
	loginMessage struct {
		Type       string            `json:"type"`
		ClientID   string            `json:"client_id"`
		ClientName string            `json:"client_name"`
		Time       string            `json:"time"`
		ClientList map[string]string `json:"client_list,omitempty"`
	}
	sayMessage struct {
		Type           string `json:"type"`
		FromClientID   string `json:"from_client_id"`
		FromClientName string `json:"from_client_name"`
		ToClientID     string `json:"to_client_id"`
		Content        string `json:"content"`
		Time           string `json:"time"`
	}
	logoutMessage struct {
		Type           string `json:"type"`
		FromClientID   string `json:"from_client_id"`
		FromClientName string `json:"from_client_name"`
		Time           string `json:"time"`
	}
	errorMessage struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
)

// encode writes v as JSON without Go's HTML escaping of <, > and &: the
// frames go to WebSocket clients, never into a page, and the escaped
// entities ("&lt;") then read the same as in workerman-chat's frames.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("chat: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func now() string { return time.Now().Format(timeLayout) }

// Handlers returns the worker handlers of the chat. They keep no state
// outside client sessions, so any number of workers may run them. A
// client's mistake is answered with an error message, never returned;
// a returned error is a failure of the bus or of a gateway.
func Handlers() worker.Handlers {
	return worker.Handlers{OnMessage: onMessage, OnClose: onClose}
}

func onMessage(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
	var in inMessage
	if err := json.Unmarshal(e.Data, &in); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return replyError(ctx, c, errInvalidField+typeErr.Field)
		case errors.As(err, &typeErr):
			return replyError(ctx, c, errNotObject)
		}
		return replyError(ctx, c, errNotJSON)
	}
	switch in.Type {
	case "pong":
		return nil // the answer to the gateway's {"type":"ping"}
	case "login":
		return login(ctx, c, in)
	case "say":
		return say(ctx, c, in)
	case "":
		return replyError(ctx, c, errNoType)
	}
	return replyError(ctx, c, errUnknownType)
}

// login puts the client in a room: a second login on the same socket
// moves it from its old room.
func login(ctx context.Context, c *worker.Client, in inMessage) error {
	if in.ClientName == nil || strings.TrimSpace(*in.ClientName) == "" {
		return replyError(ctx, c, errNoName)
	}
	name := strings.TrimSpace(*in.ClientName)
	if utf8.RuneCountInString(name) > maxNameRunes {
		return replyError(ctx, c, fmt.Sprintf("login: client_name is longer than %d characters", maxNameRunes))
	}
	room, ok := roomID(in.RoomID)
	if !ok {
		return replyError(ctx, c, errBadRoom)
	}

	sess := c.Session()
	if old, _ := sess[sessionRoom].(string); old != "" {
		oldName, _ := sess[sessionName].(string)
		err := c.LeaveGroup(ctx, c.ID(), old)
		if errors.Is(err, api.ErrClientNotFound) {
			return nil // gone meanwhile: its close event tells the old room
		}
		if err != nil {
			return fmt.Errorf("chat: leave room %s: %w", old, err)
		}
		if err := sendTo(ctx, c, old, logoutMessage{"logout", c.ID(), escape(oldName), now()}); err != nil {
			return err
		}
	}
	sess[sessionName], sess[sessionRoom] = name, room
	// Stored now, not only when the handler returns, so that a member
	// whose login runs at the same moment finds the name in its list.
	if err := c.UpdateSession(ctx, c.ID(), map[string]any{sessionName: name, sessionRoom: room}); err != nil {
		return loginFailed(c, err, "store session")
	}
	if err := c.JoinGroup(ctx, c.ID(), room); err != nil {
		return loginFailed(c, err, "join room")
	}

	sessions, err := c.GetClientSessionsByGroup(ctx, room)
	var partial *api.QueryError
	if err != nil && !errors.As(err, &partial) {
		return fmt.Errorf("chat: list room %s: %w", room, err)
	}
	// A partial answer still lists every member of the gateways that
	// answered: better than no list at all.
	list := make(map[string]string, len(sessions)+1)
	for id, s := range sessions {
		if n, _ := s[sessionName].(string); n != "" {
			list[id] = escape(n)
		}
	}
	list[c.ID()] = escape(name)

	msg := loginMessage{Type: "login", ClientID: c.ID(), ClientName: escape(name), Time: now()}
	// The newcomer gets the same notice with the list instead.
	if err := sendTo(ctx, c, room, msg, c.ID()); err != nil {
		return err
	}
	msg.ClientList = list
	return sendCurrent(ctx, c, msg)
}

// say sends a message to the sender's room, or privately to one client.
func say(ctx context.Context, c *worker.Client, in inMessage) error {
	sess := c.Session()
	room, _ := sess[sessionRoom].(string)
	if room == "" {
		return replyError(ctx, c, errLoginFirst)
	}
	switch {
	case in.ToClientID == nil:
		return replyError(ctx, c, errNoTarget)
	case in.Content == nil:
		return replyError(ctx, c, errNoContent)
	case strings.TrimSpace(*in.Content) == "":
		return nil // the page never sends one; nothing to show
	case len(*in.Content) > maxContentBytes:
		return replyError(ctx, c, fmt.Sprintf("say: content is longer than %d bytes", maxContentBytes))
	case in.ToClientName != nil && utf8.RuneCountInString(*in.ToClientName) > maxNameRunes:
		return replyError(ctx, c, fmt.Sprintf("say: to_client_name is longer than %d characters", maxNameRunes))
	}
	name, _ := sess[sessionName].(string)
	msg := sayMessage{
		Type:           "say",
		FromClientID:   c.ID(),
		FromClientName: escape(name),
		ToClientID:     *in.ToClientID,
		Content:        nl2br(escape(*in.Content)),
		Time:           now(),
	}
	if msg.ToClientID == toAll {
		return sendTo(ctx, c, room, msg)
	}
	// Like workerman-chat, the target may be in any room, and a message
	// to oneself comes twice: as the target's copy and as the sender's.
	body := msg.Content
	msg.Content = privateToTarget + body
	data, err := encode(msg)
	if err != nil {
		return err
	}
	if err := c.SendToClient(ctx, msg.ToClientID, data); err != nil {
		if errors.Is(err, api.ErrClientNotFound) || errors.Is(err, api.ErrInvalidClientID) {
			return replyError(ctx, c, errOffline)
		}
		return fmt.Errorf("chat: private message: %w", err)
	}
	toName := ""
	if in.ToClientName != nil {
		toName = *in.ToClientName
	}
	msg.Content = privateSenderBefore + escape(toName) + privateSenderAfter + body
	return sendCurrent(ctx, c, msg)
}

// onClose tells the room that a member left.
func onClose(ctx context.Context, c *worker.Client, _ worker.CloseEvent) error {
	sess := c.Session()
	room, _ := sess[sessionRoom].(string)
	if room == "" {
		return nil // never logged in
	}
	name, _ := sess[sessionName].(string)
	return sendTo(ctx, c, room, logoutMessage{"logout", c.ID(), escape(name), now()})
}

// roomID returns the group name of a room_id: a JSON string as it is, a
// JSON number in its shortest decimal form, so that 1, 1.0 and "1" are
// the same room.
func roomID(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	var room string
	switch raw[0] {
	case '"':
		if json.Unmarshal(raw, &room) != nil {
			return "", false
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		if i, err := n.Int64(); err == nil {
			room = strconv.FormatInt(i, 10)
			break
		}
		f, err := n.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			room = strconv.FormatInt(int64(f), 10)
		} else {
			room = strconv.FormatFloat(f, 'f', -1, 64)
		}
	default:
		return "", false // null, true, an object, an array
	}
	if room == "" || len(room) > api.MaxNameLen {
		return "", false
	}
	return room, true
}

// loginFailed undoes the session change of a login that could not join
// the room, so that the client's close event does not tell a room that
// never heard of it. The current client having left meanwhile is no
// error: its close event follows. Other errors are failures.
func loginFailed(c *worker.Client, err error, op string) error {
	delete(c.Session(), sessionRoom)
	delete(c.Session(), sessionName)
	if errors.Is(err, api.ErrClientNotFound) {
		return nil
	}
	return fmt.Errorf("chat: %s: %w", op, err)
}

func sendTo(ctx context.Context, c *worker.Client, room string, v any, exclude ...string) error {
	data, err := encode(v)
	if err != nil {
		return err
	}
	if err := c.SendToGroup(ctx, room, data, exclude...); err != nil {
		return fmt.Errorf("chat: send to room %s: %w", room, err)
	}
	return nil
}

func sendCurrent(ctx context.Context, c *worker.Client, v any) error {
	data, err := encode(v)
	if err != nil {
		return err
	}
	return c.SendToCurrentClient(ctx, data)
}

func replyError(ctx context.Context, c *worker.Client, message string) error {
	return sendCurrent(ctx, c, errorMessage{Type: "error", Message: message})
}
