package chat_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/jsclient"
)

// wsServer is a WebSocket server whose endpoints behave as the client
// tests need; it counts what it sees, by endpoint path.
type wsServer struct {
	url string // http://127.0.0.1:port

	mu     sync.Mutex
	conns  map[string]int      // connections accepted
	pongs  map[string]int      // {"type":"pong"} received
	frames map[string][]string // messages received, as "text:..." or "binary:hex"
}

func (s *wsServer) count(m map[string]int, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[path]
}

func (s *wsServer) received(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.frames[path]...)
}

// startWSServer serves a blank page at /, the client at
// /gatewayworker.js, and these WebSocket endpoints:
//
//	/close/CODE   closes each connection at once with CODE ("abrupt": no close frame, 1006)
//	/token        records the query's token and keep, closes with 4000
//	/silent       never sends anything
//	/ping         sends {"type":"ping"} every 50 ms, counts pongs
//	/echo         echoes each message in a frame of the same type
func startWSServer(t *testing.T) *wsServer {
	t.Helper()
	s := &wsServer{conns: map[string]int{}, pongs: map[string]int{}, frames: map[string][]string{}}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>gatewayworker.js test</title>"))
	})
	mux.Handle("GET "+jsclient.Path, jsclient.Handler())
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ws := func(pattern string, serve func(c *websocket.Conn, r *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			s.mu.Lock()
			s.conns[r.URL.Path]++
			s.mu.Unlock()
			serve(c, r)
		})
	}
	ws("GET /close/{code}", func(c *websocket.Conn, r *http.Request) {
		if r.PathValue("code") == "abrupt" {
			return // the deferred Close drops the TCP connection
		}
		code, _ := strconv.Atoi(r.PathValue("code"))
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "because "+r.PathValue("code")), time.Now().Add(time.Second))
		_, _, _ = c.ReadMessage() // the client's close frame
	})
	ws("GET /token", func(c *websocket.Conn, r *http.Request) {
		s.mu.Lock()
		s.frames[r.URL.Path] = append(s.frames[r.URL.Path], r.URL.Query().Get("token")+"&"+r.URL.Query().Get("keep"))
		s.mu.Unlock()
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "again"), time.Now().Add(time.Second))
		_, _, _ = c.ReadMessage()
	})
	ws("GET /silent", func(c *websocket.Conn, _ *http.Request) {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	ws("GET /ping", func(c *websocket.Conn, r *http.Request) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				_, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if string(msg) == `{"type":"pong"}` {
					s.mu.Lock()
					s.pongs[r.URL.Path]++
					s.mu.Unlock()
				}
			}
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)) != nil {
					return
				}
			}
		}
	})
	ws("GET /echo", func(c *websocket.Conn, r *http.Request) {
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			s.mu.Lock()
			if mt == websocket.BinaryMessage {
				s.frames[r.URL.Path] = append(s.frames[r.URL.Path], fmt.Sprintf("binary:%x", msg))
			} else {
				s.frames[r.URL.Path] = append(s.frames[r.URL.Path], "text:"+string(msg))
			}
			s.mu.Unlock()
			if c.WriteMessage(mt, msg) != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// loadClient opens the blank page of url and imports the module as
// window.GW, with a helper window.track(name, url, options) that makes a
// client, records its events in window.R[name] and connects it.
func loadClient(tb *tab, url string) {
	tb.t.Helper()
	tb.do("open the test page", chromedp.Navigate(url+"/"))
	tb.do("import the client", chromedp.Evaluate[chromedp.Void](`
		window.R = {}; window.C = {};
		window.track = (name, url, options, connect = true) => {
			const r = window.R[name] = { opens: 0, closes: [], reconnecting: [], messages: [], pings: 0 };
			const c = window.C[name] = new window.GW.GatewayClient(url, options);
			c.on('open', () => { r.opens++; if (r.onOpen) r.onOpen(c); });
			c.on('close', (e) => r.closes.push([e.code, e.reason, e.willReconnect]));
			c.on('reconnecting', (e) => r.reconnecting.push([e.attempt, e.code]));
			c.on('ping', () => r.pings++);
			c.on('message', (e) => r.messages.push(e.binary ? ['binary', Array.from(new Uint8Array(e.data))] : ['text', e.data]));
			if (connect) c.connect();
			return c;
		};
		import('/gatewayworker.js').then((m) => { window.GW = m; });
	`))
	tb.waitFor("the module", `window.GW !== undefined`)
}

// TestJSClientCloseCodes: the client reconnects after 4000-4499, after
// 1002 and after a connection that broke (1006); it does not after
// 4500-4999, nor after 1000 unless told to.
func TestJSClientCloseCodes(t *testing.T) {
	exe := chromiumPath(t)
	s := startWSServer(t)
	tb := newTab(t, exe, "client", time.Now().Add(browserBudget))
	saveOnFailure(t, tb)
	loadClient(tb, s.url)
	wsBase := "ws" + strings.TrimPrefix(s.url, "http")
	fast := `{initialDelay: 10, maxDelay: 40}`

	for _, code := range []string{"4000", "4001", "4006", "4499", "1002", "1011", "abrupt"} {
		tb.do("connect to /close/"+code, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.track(%s, %s, %s)`, js(code), js(wsBase+"/close/"+code), fast)))
		tb.waitFor("3 connections after "+code, fmt.Sprintf(`window.R[%s].opens >= 3`, js(code)))
		tb.do("stop", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.C[%s].close()`, js(code))))
		require.GreaterOrEqual(t, s.count(s.conns, "/close/"+code), 3, code)
		want := code
		if code == "abrupt" {
			want = "1006"
		}
		require.Equal(t, want, eval[string](tb, fmt.Sprintf(`String(window.R[%s].closes[0][0])`, js(code))), "the close code the app sees")
		require.True(t, eval[bool](tb, fmt.Sprintf(`window.R[%s].closes[0][2] === true`, js(code))), "%s: willReconnect", code)
	}

	for _, code := range []string{"4500", "4501", "4502", "4503", "4999", "1000"} {
		tb.do("connect to /close/"+code, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.track(%s, %s, %s)`, js(code), js(wsBase+"/close/"+code), fast)))
		tb.waitFor("the close of "+code, fmt.Sprintf(`window.R[%s].closes.length === 1 && window.C[%s].state === 'closed'`, js(code), js(code)))
		// Closed, with no timer left: a loop would have to start here.
		require.Equal(t, []any{mustAtoi(t, code), "because " + code, false}, eval[[]any](tb, fmt.Sprintf(`window.R[%s].closes[0]`, js(code))))
		require.Zero(t, eval[int](tb, fmt.Sprintf(`window.R[%s].reconnecting.length`, js(code))), code)
		require.Equal(t, 1, s.count(s.conns, "/close/"+code), "%s: one connection, no loop", code)
	}
	// Every client is closed with nothing pending, yet the server never saw
	// a second connection of a 45xx endpoint or of 1000.
	for _, code := range []string{"4500", "4501", "4502", "4503", "4999", "1000"} {
		require.Equal(t, 1, s.count(s.conns, "/close/"+code), code)
	}

	// 1000 reconnects when the app asks for it.
	tb.do("connect to /close/1000 again", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.track('1000r', %s, {initialDelay: 10, maxDelay: 40, reconnectOnNormalClose: true})`, js(wsBase+"/close/1000"))))
	tb.waitFor("3 connections after 1000", `window.R['1000r'].opens >= 3`)
	tb.do("stop", chromedp.Evaluate[chromedp.Void](`window.C['1000r'].close()`))

	// The token goes in the query, fetched anew (here: a promise) before
	// every attempt; the URL's other parameters stay.
	tb.do("connect with tokens", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		let n = 0;
		window.track('token', %s, {initialDelay: 10, maxDelay: 40, token: () => Promise.resolve('jwt-' + (++n))});
	})()`, js(wsBase+"/token?keep=1&token=stale"))))
	tb.waitFor("3 connections with tokens", `window.R.token.closes.length >= 3`)
	tb.do("stop", chromedp.Evaluate[chromedp.Void](`window.C.token.close()`))
	require.Equal(t, []string{"jwt-1&1", "jwt-2&1", "jwt-3&1"}, s.received("/token")[:3])

	// A client closed by its app may connect again.
	tb.do("connect 4500 again", chromedp.Evaluate[chromedp.Void](`window.C['4500'].connect()`))
	tb.waitFor("the second close of 4500", `window.R['4500'].closes.length === 2 && window.C['4500'].state === 'closed'`)
	require.Equal(t, 2, s.count(s.conns, "/close/4500"))
	require.Empty(t, tb.problemsSeen())
}

func mustAtoi(t *testing.T, s string) any {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return float64(n) // as JSON numbers come back
}

// TestJSClientHeartbeatAndQueue: a connection that stays silent past
// heartbeatTimeout is given up and replaced; one that hears the server's
// pings (answering them) is kept; sends made before the connection opens
// are queued, up to maxQueue, and go out after what the open listener
// sends, as text or binary as given.
func TestJSClientHeartbeatAndQueue(t *testing.T) {
	exe := chromiumPath(t)
	s := startWSServer(t)
	tb := newTab(t, exe, "client", time.Now().Add(browserBudget))
	saveOnFailure(t, tb)
	loadClient(tb, s.url)
	wsBase := "ws" + strings.TrimPrefix(s.url, "http")

	tb.do("connect to /silent", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.track('silent', %s, {heartbeatTimeout: 300, initialDelay: 10, maxDelay: 40})`, js(wsBase+"/silent"))))
	tb.waitFor("a second connection", `window.R.silent.opens >= 2`)
	tb.do("stop", chromedp.Evaluate[chromedp.Void](`window.C.silent.close()`))
	require.Equal(t, []any{float64(1006), "heartbeat timeout", true}, eval[[]any](tb, `window.R.silent.closes[0]`))
	require.GreaterOrEqual(t, s.count(s.conns, "/silent"), 2)

	// The pinging server keeps the connection alive for 20 pings (1 s,
	// more than three heartbeat timeouts), each answered with a pong.
	tb.do("connect to /ping", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.track('ping', %s, {heartbeatTimeout: 300, pingMessage: '{"type":"ping"}', pongMessage: '{"type":"pong"}'})`, js(wsBase+"/ping"))))
	tb.waitFor("20 pings", `window.R.ping.pings >= 20`)
	require.GreaterOrEqual(t, s.count(s.pongs, "/ping"), 15, "pongs")
	require.Equal(t, 1, s.count(s.conns, "/ping"), "one connection all along")
	require.Zero(t, eval[int](tb, `window.R.ping.closes.length + window.R.ping.messages.length`), "pings are not messages")
	tb.do("stop", chromedp.Evaluate[chromedp.Void](`window.C.ping.close()`))

	// The queue: two sends wait, the third does not fit.
	tb.do("queue", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const c = window.track('echo', %s, {maxQueue: 2}, false);
		window.R.echo.onOpen = (c) => c.send('login first');
		window.R.echo.sent = [c.send('queued text'), c.send(new Uint8Array([0x82, 0xa1, 0x00, 0xff])), c.send('one too many')];
		window.R.echo.queued = c.queued;
		c.connect();
	})()`, js(wsBase+"/echo"))))
	require.Equal(t, []any{true, true, false}, eval[[]any](tb, `window.R.echo.sent`))
	require.Equal(t, 2, eval[int](tb, `window.R.echo.queued`))
	tb.waitFor("3 echoes", `window.R.echo.messages.length === 3`)
	require.Equal(t, []string{"text:login first", "text:queued text", "binary:82a100ff"}, s.received("/echo"), "the order and frame types the server saw")
	require.Equal(t, []any{
		[]any{"text", "login first"}, []any{"text", "queued text"}, []any{"binary", []any{float64(0x82), float64(0xa1), float64(0), float64(0xff)}},
	}, eval[[]any](tb, `window.R.echo.messages`), "what the page got back, by frame type")
	require.Zero(t, eval[int](tb, `window.C.echo.queued`))
	tb.do("stop", chromedp.Evaluate[chromedp.Void](`window.C.echo.close()`))
	require.False(t, eval[bool](tb, `window.C.echo.send('after close')`), "a closed client takes nothing")
	require.Empty(t, tb.problemsSeen())
}
