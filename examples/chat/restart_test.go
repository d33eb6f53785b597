package chat_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/examples/chat"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/internal/testbin"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// gatewayProcess is `gatewayworker gateway` in its own process, which the
// test can kill (no close frame reaches the pages: they see 1006) and
// start again on the same address.
type gatewayProcess struct {
	t                   *testing.T
	bin, nats, ws, page string
	cmd                 *exec.Cmd
}

func (g *gatewayProcess) start() {
	g.t.Helper()
	g.cmd = exec.Command(g.bin, "gateway", "--nats", g.nats, "--ws", g.ws, "--tcp", "", "--origins", g.page,
		"--ping-interval", "1s", "--ping-data", `{"type":"ping"}`, "--log-level", "error", "--nats-wait", "10s")
	require.NoError(g.t, g.cmd.Start())
	cmd := g.cmd
	g.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(g.t, func() bool {
		c, err := net.Dial("tcp", g.ws)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "the gateway process does not listen on %s", g.ws)
}

func (g *gatewayProcess) kill() {
	g.t.Helper()
	require.NoError(g.t, g.cmd.Process.Kill())
	_ = g.cmd.Wait()
}

// stop stops the gateway as a deploy does (SIGTERM): it closes its
// clients with 4000 (gateway shutdown) and drains.
func (g *gatewayProcess) stop() {
	g.t.Helper()
	require.NoError(g.t, g.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(g.t, g.cmd.Wait())
}

// TestBrowserChatSurvivesGatewayRestart: the gateway under two chat pages
// dies and comes back, then is stopped (4000) and started again; each time
// each page reconnects and logs in again by itself, and a message typed
// meanwhile goes out once it is back. Then the app kicks Ann (4500): her
// page stays offline instead of looping.
func TestBrowserChatSurvivesGatewayRestart(t *testing.T) {
	exe := chromiumPath(t)
	bin := testbin.Build(t, "github.com/gatewayworker/gatewayworker/cmd/gatewayworker")
	deadline := time.Now().Add(2 * browserBudget)

	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: chat.Handlers()})
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{Name: "api"}), Logger: bustest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(a.Close)

	pl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gp := &gatewayProcess{t: t, bin: bin, nats: e.URL(), ws: freeAddr(t), page: "http://" + pl.Addr().String()}
	h, err := chat.NewWebHandler(chat.WebConfig{WebSocketURL: "ws://" + gp.ws + "/", API: a, HeartbeatTimeout: 2500 * time.Millisecond})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	require.NoError(t, srv.Listener.Close())
	srv.Listener = pl
	srv.Start()
	t.Cleanup(srv.Close)
	gp.start()

	ann := newTab(t, exe, "Ann", deadline)
	bob := newTab(t, exe, "Bob", deadline)
	saveOnFailure(t, ann, bob)
	ann.do("open the page", chromedp.Navigate(srv.URL+"/"))
	bob.do("open the page", chromedp.Navigate(srv.URL+"/"))
	ann.login("1")
	bob.login("1")
	ann.waitFor("both users at Ann", hasUsers("Ann", "Bob"))

	// The gateway dies: both pages notice and wait to reconnect.
	gp.kill()
	for _, tb := range []*tab{ann, bob} {
		tb.waitFor("reconnecting", `document.getElementById('state').dataset.state === 'reconnecting'`)
	}
	ann.say("sent while the gateway was down")
	ann.waitFor("the queued notice", hasLine("msg notice", "", "Not connected: the message goes out once back online."))

	// It comes back on the same address: the pages log in again by
	// themselves, and Ann's queued message goes out after her login: the
	// room's copy of it comes back to her. (Bob may log in after it went
	// out, so whether he sees it depends on which page reconnected first.)
	gp.start()
	for _, tb := range []*tab{ann, bob} {
		tb.waitFor("online again", `document.getElementById('state').dataset.state === 'online'`)
	}
	ann.waitFor("both users at Ann after the restart", hasUsers("Ann", "Bob"))
	bob.waitFor("both users at Bob after the restart", hasUsers("Bob", "Ann"))
	// The room's copy may come before her login answer (a group push and
	// a push to her travel on different subjects), and the page marks a
	// line as its own only once it knows its new id: either class counts.
	ann.waitFor("Ann's queued message, sent", hasLine("msg self", "Ann", "sent while the gateway was down")+" || "+
		hasLine("msg", "Ann", "sent while the gateway was down"))
	bob.say("welcome back")
	ann.waitFor("Bob's message after the restart", hasLine("msg", "Bob", "welcome back"))

	// A clean stop closes the pages with 4000 (gateway shutdown): they
	// come back too.
	gp.stop()
	for _, tb := range []*tab{ann, bob} {
		tb.waitFor("reconnecting after the stop", `document.getElementById('state').dataset.state === 'reconnecting'`)
	}
	gp.start()
	for _, tb := range []*tab{ann, bob} {
		tb.waitFor("online after the stop", `document.getElementById('state').dataset.state === 'online'`)
	}
	ann.waitFor("both users at Ann after the stop", hasUsers("Ann", "Bob"))
	require.True(t, ann.logged("WebSocket closed 4000 gateway shutdown"), "the page saw the gateway's 4000")
	bob.say("and again")
	ann.waitFor("Bob's message after the stop", hasLine("msg", "Bob", "and again"))

	// The app kicks Ann: her page is told, stops, and does not come back.
	annID := eval[string](ann, `document.querySelector('#users li.self').dataset.clientId`)
	require.NoError(t, a.CloseClient(context.Background(), annID, nil))
	ann.waitFor("Ann offline", `document.getElementById('state').dataset.state === 'offline' && window.chatClient().state === 'closed'`)
	ann.waitFor("the disconnect notice", hasLine("msg notice error", "", "Disconnected: kicked. Pick a room to connect again."))
	bob.waitFor("Bob alone", hasUsers("Bob"))
	// Closed with no timer left, so nothing can bring it back: one client
	// remains (the killed gateway may not be taken for dead yet: a
	// partial answer counts the live one).
	n, err := a.GetAllClientIDCount(context.Background())
	var partial *api.QueryError
	if !errors.As(err, &partial) {
		require.NoError(t, err)
	}
	require.Equal(t, 1, n)
	require.Zero(t, eval[int](ann, `window.chatClient().attempts`))
	require.True(t, ann.logged("WebSocket closed 4500 kicked"), "the page saw 4500")
	for _, tb := range []*tab{ann, bob} {
		for _, p := range tb.problemsSeen() {
			// Chromium logs each attempt that found no gateway: expected here.
			if !strings.Contains(p, "net::ERR_CONNECTION_REFUSED") {
				t.Errorf("%s: %s", tb.name, p)
			}
		}
	}
}

// TestJSClientFrameTypesFromTheGateway: pushes reach the browser as the
// sender chose: a binary push of UTF-8 bytes as an ArrayBuffer, a text
// push as a string, an unchosen one as before (UTF-8 text).
func TestJSClientFrameTypesFromTheGateway(t *testing.T) {
	exe := chromiumPath(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: chat.Handlers()})
	gw, a, pageURL := servePage(t, e, gateway.Config{})

	tb := newTab(t, exe, "client", time.Now().Add(browserBudget))
	saveOnFailure(t, tb)
	loadClient(tb, pageURL)
	tb.do("connect and log in", chromedp.Evaluate[chromedp.Void](`(() => {
		const c = window.track('gw', `+js("ws://"+gw.WebSocketAddr()+"/")+`, {});
		window.R.gw.onOpen = (c) => c.send(JSON.stringify({type: 'login', client_name: 'Ann', room_id: 1}));
	})()`))
	tb.waitFor("the login answer", `window.R.gw.messages.length === 1`)
	id := eval[string](tb, `JSON.parse(window.R.gw.messages[0][1]).client_id`)

	ctx := context.Background()
	require.NoError(t, a.WithFrame(api.FrameBinary).SendToClient(ctx, id, []byte("utf-8, sent as binary")))
	require.NoError(t, a.WithFrame(api.FrameText).SendToClient(ctx, id, []byte("text")))
	require.NoError(t, a.SendToClient(ctx, id, []byte("unchosen")))
	require.NoError(t, a.SendToClient(ctx, id, []byte{0x82, 0xff}))
	require.NoError(t, a.SetWebSocketType(ctx, id, api.FrameBinary))
	require.NoError(t, a.SendToGroup(ctx, "1", []byte("room, as the connection's default")))
	tb.waitFor("6 messages", `window.R.gw.messages.length === 6`)
	require.Equal(t, []any{
		[]any{"binary", bytesAsJSON("utf-8, sent as binary")},
		[]any{"text", "text"},
		[]any{"text", "unchosen"},
		[]any{"binary", []any{float64(0x82), float64(0xff)}},
		[]any{"binary", bytesAsJSON("room, as the connection's default")},
	}, eval[[]any](tb, `window.R.gw.messages.slice(1)`))
	require.Empty(t, tb.problemsSeen())
}

// logged reports whether a console line of tb contains s.
func (tb *tab) logged(s string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, l := range tb.log {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// bytesAsJSON is s's bytes as the page's Array.from(Uint8Array) comes back.
func bytesAsJSON(s string) []any {
	out := make([]any, len(s))
	for i := range len(s) {
		out[i] = float64(s[i])
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestJSClientTokens: against a gateway that requires tokens, the client
// connects with the token its function gives; at the token's expiry the
// gateway closes it with 4501 and the client does not loop (the function
// is not asked again); a client that sends a fresh token in time
// (refreshToken) outlives the first one's expiry.
func TestJSClientTokens(t *testing.T) {
	exe := chromiumPath(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	mint := func(sub string, life time.Duration) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(life).Unix()}).SignedString(secret)
		require.NoError(t, err)
		return tok
	}
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: chat.Handlers()})
	gw, a, pageURL := servePage(t, e, gateway.Config{
		Auth:         &gateway.AuthConfig{HMACSecret: secret},
		PingData:     []byte(`{"type":"ping"}`),
		PingInterval: 200 * time.Millisecond,
	})

	tb := newTab(t, exe, "client", time.Now().Add(browserBudget))
	saveOnFailure(t, tb)
	loadClient(tb, pageURL)
	wsURL := js("ws://" + gw.WebSocketAddr() + "/")
	tb.do("connect two clients", chromedp.Evaluate[chromedp.Void](`(() => {
		window.asked = {short: 0, fresh: 0};
		const opts = (name, tok) => ({token: () => { window.asked[name]++; return tok; }, initialDelay: 10, maxDelay: 40,
			pingMessage: '{"type":"ping"}'});
		window.track('short', `+wsURL+`, opts('short', `+js(mint("ann", 2*time.Second))+`));
		window.track('fresh', `+wsURL+`, opts('fresh', `+js(mint("bob", 2*time.Second))+`));
		window.R.fresh.onOpen = (c) => c.refreshToken(`+js(mint("bob", time.Minute))+`);
	})()`))
	tb.waitFor("the short token's close", `window.R.short.closes.length === 1 && window.C.short.state === 'closed'`)
	require.Equal(t, []any{float64(4501), "token expired", false}, eval[[]any](tb, `window.R.short.closes[0]`))
	require.Equal(t, 1, eval[int](tb, `window.asked.short`), "no second attempt: the token function was asked once")
	// The refreshed client hears 10 more heartbeats (2 s) after the other
	// one's close, and was never closed.
	n := eval[int](tb, `window.R.fresh.pings`)
	tb.waitFor("10 more pings", fmt.Sprintf(`window.R.fresh.pings >= %d`, n+10))
	require.Equal(t, 0, eval[int](tb, `window.R.fresh.closes.length`))
	require.Equal(t, "open", eval[string](tb, `window.C.fresh.state`))
	uids, err := a.GetAllUIDList(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"bob"}, uids, "sub is the uid")
	require.Empty(t, tb.problemsSeen())
}
