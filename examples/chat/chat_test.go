package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestMain checks for leaked goroutines. IgnoreCurrent skips the task pools
// that nbio's websocket package starts in a package-level var.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

const (
	wait  = 5 * time.Second
	quiet = 300 * time.Millisecond // longer than the 100ms heartbeat
	ping  = `{"type":"ping"}`
)

// stack is a real embedded NATS, a real gateway, a real worker running
// the chat, and an API client: what cmd/gatewayworker run starts.
type stack struct {
	gw  *gateway.Gateway
	api *api.Client
}

func startStack(t *testing.T) *stack {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	// The worker starts first, so it is still there when the gateway's
	// cleanup drains its clients' close events.
	workertest.Start(t, e, worker.Config{Handlers: Handlers()})
	gw := gatewaytest.Start(t, e, gateway.Config{
		PingData:     []byte(ping),
		PingInterval: 100 * time.Millisecond,
	})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{Name: "api"})})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return &stack{gw: gw, api: a}
}

// frame is every field any chat message has. Decoding disallows unknown
// fields, so a stray field fails the test.
type frame struct {
	Type           string            `json:"type"`
	ClientID       string            `json:"client_id,omitempty"`
	ClientName     string            `json:"client_name,omitempty"`
	ClientList     map[string]string `json:"client_list,omitempty"`
	FromClientID   string            `json:"from_client_id,omitempty"`
	FromClientName string            `json:"from_client_name,omitempty"`
	ToClientID     string            `json:"to_client_id,omitempty"`
	Content        string            `json:"content,omitempty"`
	Message        string            `json:"message,omitempty"`
	Time           string            `json:"time,omitempty"`
}

// user is a WebSocket client of the chat. Its reads skip the gateway's
// heartbeat frames, counting them.
type user struct {
	t     *testing.T
	ws    *gatewaytest.WS
	id    string
	pings int
}

func dial(t *testing.T, s *stack) *user {
	t.Helper()
	return &user{t: t, ws: gatewaytest.DialWS(t, s.gw, "/", nil)}
}

func (u *user) send(msg string) {
	u.t.Helper()
	u.ws.Send(msg)
}

func (u *user) sendJSON(v map[string]any) {
	u.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(u.t, err)
	u.ws.Send(string(b))
}

// readRaw returns the next frame that is not a heartbeat.
func (u *user) readRaw() string {
	u.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		msg, err := u.ws.TryRead(time.Until(deadline))
		require.NoError(u.t, err, "user %s: waiting for a message", u.id)
		if msg == ping {
			u.pings++
			continue
		}
		return msg
	}
}

// read returns the next message, decoded, after checking its time and
// clearing it, so tests compare whole messages.
func (u *user) read() frame {
	u.t.Helper()
	raw := u.readRaw()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var f frame
	require.NoError(u.t, dec.Decode(&f), raw)
	if f.Type != "error" {
		at, err := time.ParseInLocation(timeLayout, f.Time, time.Local)
		require.NoError(u.t, err, raw)
		require.WithinDuration(u.t, time.Now(), at, time.Minute, raw)
	}
	f.Time = ""
	return f
}

// expectQuiet fails if anything but heartbeats arrives within quiet.
func (u *user) expectQuiet() {
	u.t.Helper()
	deadline := time.Now().Add(quiet)
	for {
		msg, err := u.ws.TryRead(time.Until(deadline))
		if errors.Is(err, gatewaytest.ErrNoMessage) {
			return
		}
		require.NoError(u.t, err, "user %s: connection ended", u.id)
		if msg == ping {
			u.pings++
			continue
		}
		u.t.Fatalf("user %s: unexpected message %s", u.id, msg)
	}
}

// loginUser connects a user to room (a JSON number or string) and checks the
// answer: a login message with the room's list, which it returns.
func loginUser(t *testing.T, s *stack, name string, room any) (*user, map[string]string) {
	t.Helper()
	u := dial(t, s)
	u.sendJSON(map[string]any{"type": "login", "client_name": name, "room_id": room})
	f := u.read()
	require.Equal(t, "login", f.Type)
	require.NotEmpty(t, f.ClientID)
	require.Equal(t, escape(name), f.ClientName)
	require.Equal(t, escape(name), f.ClientList[f.ClientID], "the list holds the newcomer")
	u.id = f.ClientID
	return u, f.ClientList
}

func loginNotice(u *user, name string) frame {
	return frame{Type: "login", ClientID: u.id, ClientName: name}
}

func TestLoginNumberAndStringRoomAreTheSameRoom(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	ann, list := loginUser(t, s, "Ann", 1)
	require.Equal(t, map[string]string{ann.id: "Ann"}, list)

	bob := dial(t, s)
	bob.send(`{"type":"login","client_name":"Bob","room_id":"1"}`)
	raw := bob.readRaw()
	var got loginMessage
	require.NoError(t, json.Unmarshal([]byte(raw), &got))
	bob.id = got.ClientID
	require.Equal(t, loginMessage{
		Type: "login", ClientID: bob.id, ClientName: "Bob", Time: got.Time,
		ClientList: map[string]string{ann.id: "Ann", bob.id: "Bob"},
	}, got)
	// workerman-chat's key order, which a struct keeps.
	require.True(t, strings.HasPrefix(raw, `{"type":"login","client_id":"`+bob.id+`","client_name":"Bob","time":"`+got.Time+`","client_list":{`), raw)

	require.Equal(t, loginNotice(bob, "Bob"), ann.read(), "the room hears of the newcomer")
	bob.expectQuiet() // the newcomer gets its list, not the notice as well

	cat, list := loginUser(t, s, "Cat", 1.0)
	require.Equal(t, map[string]string{ann.id: "Ann", bob.id: "Bob", cat.id: "Cat"}, list)
	require.Equal(t, loginNotice(cat, "Cat"), ann.read())
	require.Equal(t, loginNotice(cat, "Cat"), bob.read())

	members, err := s.api.GetClientIDListByGroup(ctx, "1")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{ann.id, bob.id, cat.id}, members)
	sess, err := s.api.GetSession(ctx, bob.id)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"client_name": "Bob", "room_id": "1"}, sess)

	dan, list := loginUser(t, s, "Dan", "2")
	require.Equal(t, map[string]string{dan.id: "Dan"}, list, "another room has its own list")
	ann.expectQuiet()
}

func TestSayToRoom(t *testing.T) {
	s := startStack(t)
	ann, _ := loginUser(t, s, "Ann", 1)
	bob, _ := loginUser(t, s, "Bob", 1)
	ann.read() // Bob's login notice
	cat, _ := loginUser(t, s, "Cat", 2)

	ann.send(`{"type":"say","to_client_id":"all","to_client_name":"all","content":"hello\nroom"}`)
	want := frame{Type: "say", FromClientID: ann.id, FromClientName: "Ann", ToClientID: "all", Content: "hello<br />\nroom"}
	require.Equal(t, want, ann.read(), "the sender is in the room too")
	require.Equal(t, want, bob.read())
	cat.expectQuiet()

	cat.send(`{"type":"say","to_client_id":"all","content":"anyone?"}`)
	require.Equal(t, frame{Type: "say", FromClientID: cat.id, FromClientName: "Cat", ToClientID: "all", Content: "anyone?"}, cat.read())
	ann.expectQuiet()
	bob.expectQuiet()
}

func TestPrivateSay(t *testing.T) {
	s := startStack(t)
	ann, _ := loginUser(t, s, "Ann", 1)
	bob, _ := loginUser(t, s, "Bob", 1)
	cat, _ := loginUser(t, s, "Cat", 1)
	ann.read()
	ann.read()
	bob.read()

	// The contents carry workerman-chat's prefixes, byte for byte as its
	// Events.php writes them: "said to you: " for the target, "you said
	// to NAME: " for the sender, NAME escaped like the content.
	ann.sendJSON(map[string]any{"type": "say", "to_client_id": bob.id, "to_client_name": "Bob <b>", "content": "psst\n<i>"})
	want := frame{Type: "say", FromClientID: ann.id, FromClientName: "Ann", ToClientID: bob.id}
	want.Content = "<b>对你说: </b>psst<br />\n&lt;i&gt;"
	require.Equal(t, want, bob.read())
	want.Content = "<b>你对Bob &lt;b&gt;说: </b>psst<br />\n&lt;i&gt;"
	require.Equal(t, want, ann.read(), "the sender gets a copy")
	cat.expectQuiet()
	bob.expectQuiet()

	// As in workerman-chat, a message to oneself comes as both copies; a
	// missing to_client_name is an empty name.
	ann.sendJSON(map[string]any{"type": "say", "to_client_id": ann.id, "content": "note to self"})
	want = frame{Type: "say", FromClientID: ann.id, FromClientName: "Ann", ToClientID: ann.id}
	want.Content = "<b>对你说: </b>note to self"
	require.Equal(t, want, ann.read())
	want.Content = "<b>你对说: </b>note to self"
	require.Equal(t, want, ann.read())
	ann.expectQuiet()

	// A public message has no prefix.
	ann.sendJSON(map[string]any{"type": "say", "to_client_id": "all", "to_client_name": "all", "content": "hi"})
	want = frame{Type: "say", FromClientID: ann.id, FromClientName: "Ann", ToClientID: "all", Content: "hi"}
	require.Equal(t, want, ann.read())
	require.Equal(t, want, bob.read())
	require.Equal(t, want, cat.read())
}

func TestLogoutOnClose(t *testing.T) {
	s := startStack(t)
	ann, _ := loginUser(t, s, "Ann", 1)
	bob, _ := loginUser(t, s, "Bob", 1)
	ann.read()
	cat := dial(t, s) // never logs in: its close tells no one

	require.NoError(t, cat.ws.Conn.Close())
	require.NoError(t, bob.ws.Conn.Close())
	require.Equal(t, frame{Type: "logout", FromClientID: bob.id, FromClientName: "Bob"}, ann.read())
	ann.expectQuiet()
}

func TestLoginAgainMovesToTheNewRoom(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	ann, _ := loginUser(t, s, "Ann", 1)
	bob, _ := loginUser(t, s, "Bob", 1)
	ann.read()
	cat, _ := loginUser(t, s, "Cat", 2)

	bob.send(`{"type":"login","client_name":"Bobby","room_id":2}`)
	require.Equal(t, frame{Type: "logout", FromClientID: bob.id, FromClientName: "Bob"}, ann.read())
	f := bob.read()
	require.Equal(t, frame{Type: "login", ClientID: bob.id, ClientName: "Bobby",
		ClientList: map[string]string{bob.id: "Bobby", cat.id: "Cat"}}, f)
	require.Equal(t, loginNotice(bob, "Bobby"), cat.read())

	members, err := s.api.GetClientIDListByGroup(ctx, "1")
	require.NoError(t, err)
	require.Equal(t, []string{ann.id}, members)

	ann.send(`{"type":"say","to_client_id":"all","content":"still there?"}`)
	require.Equal(t, "still there?", ann.read().Content)
	bob.expectQuiet()

	require.NoError(t, bob.ws.Conn.Close())
	require.Equal(t, frame{Type: "logout", FromClientID: bob.id, FromClientName: "Bobby"}, cat.read())
	ann.expectQuiet()
}

func TestEscaping(t *testing.T) {
	s := startStack(t)
	const evil = `<img src=x onerror=alert(1)>`
	const evilEscaped = `&lt;img src=x onerror=alert(1)&gt;`
	ann, _ := loginUser(t, s, "Ann", 1)
	mal := dial(t, s)
	mal.sendJSON(map[string]any{"type": "login", "client_name": evil, "room_id": 1})
	raw := mal.readRaw()
	require.Contains(t, raw, `"client_name":"`+evilEscaped+`"`, "entities, not \\u003c, as PHP sends")
	require.NotContains(t, raw, "<img")
	var f frame
	require.NoError(t, json.Unmarshal([]byte(raw), &f))
	mal.id = f.ClientID
	require.Equal(t, map[string]string{ann.id: "Ann", mal.id: evilEscaped}, f.ClientList)
	require.Equal(t, loginNotice(mal, evilEscaped), ann.read())

	mal.send(`{"type":"say","to_client_id":"all","content":"it's \"quoted\" & <b>bold</b>"}`)
	want := frame{Type: "say", FromClientID: mal.id, FromClientName: evilEscaped, ToClientID: "all",
		Content: "it&#039;s &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"}
	require.Equal(t, want, ann.read())
	require.Equal(t, want, mal.read())

	require.NoError(t, mal.ws.Conn.Close())
	require.Equal(t, frame{Type: "logout", FromClientID: mal.id, FromClientName: evilEscaped}, ann.read())
}

func TestClientMistakes(t *testing.T) {
	s := startStack(t)
	u := dial(t, s)
	errorFrame := func(msg string) frame { return frame{Type: "error", Message: msg} }

	u.send(`{"type":"say","to_client_id":"all","content":"hi"}`)
	require.Equal(t, errorFrame("login first"), u.read())
	u.send(`{"type":"login","client_name":"Ann"`)
	require.Equal(t, errorFrame("invalid JSON"), u.read())
	u.send(`[1,2]`)
	require.Equal(t, errorFrame("a message must be a JSON object"), u.read())
	u.send(`{"client_name":"Ann"}`)
	require.Equal(t, errorFrame("missing type"), u.read())
	u.send(`{"type":"dance"}`)
	require.Equal(t, errorFrame("unknown type"), u.read())
	u.send(`{"type":"login","client_name":"Ann"}`)
	require.Equal(t, errorFrame("login: room_id must be a number or a non-empty string"), u.read())
	u.send(`{"type":"login","client_name":"Ann","room_id":null}`)
	require.Equal(t, errorFrame("login: room_id must be a number or a non-empty string"), u.read())
	u.send(`{"type":"login","room_id":1}`)
	require.Equal(t, errorFrame("login: client_name must be a non-empty string"), u.read())
	u.send(`{"type":"login","client_name":7,"room_id":1}`)
	require.Equal(t, errorFrame("invalid field: client_name"), u.read())
	u.sendJSON(map[string]any{"type": "login", "client_name": strings.Repeat("é", 65), "room_id": 1})
	require.Equal(t, errorFrame("login: client_name is longer than 64 characters"), u.read())
	u.send(`{"type":"pong"}`)
	u.expectQuiet()

	// The connection still works after all that.
	u.send(`{"type":"login","client_name":"Ann","room_id":1}`)
	f := u.read()
	require.Equal(t, "login", f.Type)
	u.id = f.ClientID

	for _, to := range []string{s.gw.ID() + "-1-zzzz", "nogateway-1-1", "garbage"} {
		u.sendJSON(map[string]any{"type": "say", "to_client_id": to, "content": "hi"})
		require.Equal(t, errorFrame("user is offline"), u.read(), "to %q", to)
	}
	u.send(`{"type":"say","content":"hi"}`)
	require.Equal(t, errorFrame("say: to_client_id must be a string"), u.read())
	u.send(`{"type":"say","to_client_id":"all"}`)
	require.Equal(t, errorFrame("say: content must be a string"), u.read())
	u.sendJSON(map[string]any{"type": "say", "to_client_id": "all", "content": strings.Repeat("x", 3001)})
	require.Equal(t, errorFrame("say: content is longer than 3000 bytes"), u.read())
	u.send(`{"type":"say","to_client_id":"all","content":""}`)
	u.send(`{"type":"say","to_client_id":"all","content":"  "}`)
	u.expectQuiet()

	long := strings.Repeat("x", 3000)
	u.sendJSON(map[string]any{"type": "say", "to_client_id": "all", "content": long})
	require.Equal(t, long, u.read().Content, "3000 bytes is still allowed")
}

func TestHeartbeatReachesClients(t *testing.T) {
	s := startStack(t)
	u := dial(t, s)
	// The client never answers, and stays connected: the gateway only
	// sends PingData (PingNotResponseLimit is 0, as cmd configures it).
	for u.pings < 3 {
		msg, err := u.ws.TryRead(wait)
		require.NoError(t, err)
		require.Equal(t, ping, msg)
		u.pings++
	}
	u.send(`{"type":"pong"}`)
	u.send(`{"type":"login","client_name":"Ann","room_id":1}`)
	require.Equal(t, "login", u.read().Type, "a pong has no answer")
}

func TestWebHandler(t *testing.T) {
	s := startStack(t)
	h, err := NewWebHandler(WebConfig{WebSocketURL: "ws://127.0.0.1:7272/", API: s.api})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		return resp, body
	}

	t.Run("page", func(t *testing.T) {
		resp, body := get("/")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Equal(t, fmt.Sprintf(cspFormat, "ws://127.0.0.1:7272"), resp.Header.Get("Content-Security-Policy"))
		require.Contains(t, string(body), `id="messages"`)
		page, err := webFiles.ReadFile("web/index.html")
		require.NoError(t, err)
		require.True(t, bytes.Equal(page, body))
	})
	t.Run("config", func(t *testing.T) {
		resp, body := get("/config.json")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.JSONEq(t, `{"ws_url":"ws://127.0.0.1:7272/","ws_origins":["ws://127.0.0.1:7272"]}`, string(body))
	})
	t.Run("unknown paths", func(t *testing.T) {
		for _, p := range []string{"/nope", "/index.html", "/web/index.html", "/config.json/x", "/api/"} {
			resp, _ := get(p)
			require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
		}
		resp, err := srv.Client().Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	})
	t.Run("stats", func(t *testing.T) {
		statsNow := func() stats {
			resp, body := get("/api/stats")
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var st stats
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&st), string(body))
			return st
		}
		require.Equal(t, stats{Gateways: 1, Connections: 0}, statsNow())
		loginUser(t, s, "Ann", 1)
		bob, _ := loginUser(t, s, "Bob", 1)
		dial(t, s).send(`{"type":"pong"}`) // connected, not logged in: counted too
		require.Eventually(t, func() bool { return statsNow() == stats{Gateways: 1, Connections: 3} }, wait, 20*time.Millisecond)
		require.NoError(t, bob.ws.Conn.Close())
		require.Eventually(t, func() bool { return statsNow() == stats{Gateways: 1, Connections: 2} }, wait, 20*time.Millisecond)
	})
	t.Run("stats disabled", func(t *testing.T) {
		h, err := NewWebHandler(WebConfig{WebSocketURL: "wss://chat.example.com/ws"})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/stats", nil))
		require.Equal(t, http.StatusNotFound, rec.Code)
	})
	t.Run("config errors", func(t *testing.T) {
		for _, u := range []string{"", "http://127.0.0.1:7272/", "ws://", "127.0.0.1:7272"} {
			_, err := NewWebHandler(WebConfig{WebSocketURL: u})
			require.Error(t, err, u)
		}
	})
}

func TestEscape(t *testing.T) {
	require.Equal(t, "&lt;a href=&quot;x&quot;&gt;O&#039;Hara &amp;amp;&lt;/a&gt;", escape(`<a href="x">O'Hara &amp;</a>`))
	require.Equal(t, "plain 中文", escape("plain 中文"))
}

func TestNl2br(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"a":        "a",
		"a\nb":     "a<br />\nb",
		"a\r\nb":   "a<br />\r\nb",
		"a\n\rb":   "a<br />\n\rb",
		"a\rb":     "a<br />\rb",
		"a\n\nb":   "a<br />\n<br />\nb",
		"a\r\n\nb": "a<br />\r\n<br />\nb",
		"\n":       "<br />\n",
	} {
		require.Equal(t, want, nl2br(in), "%q", in)
	}
}

func TestRoomID(t *testing.T) {
	for raw, want := range map[string]string{
		`1`: "1", `"1"`: "1", `1.0`: "1", `1e2`: "100", `-3`: "-3", `1.5`: "1.5",
		`"lobby"`: "lobby", `"01"`: "01", ` 7 `: "7",
		`null`: "", `""`: "", `true`: "", `{}`: "", `[1]`: "", ``: "", `1e999`: "",
		`"` + strings.Repeat("r", api.MaxNameLen+1) + `"`: "",
	} {
		got, ok := roomID(json.RawMessage(raw))
		require.Equal(t, want, got, "room_id %s", raw)
		require.Equal(t, want != "", ok, "room_id %s", raw)
	}
}
