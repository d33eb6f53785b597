package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/examples/chat"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// Time limits of the browser test. A loaded 2-core CI machine needs a few
// seconds to start a browser; the scenario itself takes a few more.
const (
	browserBudget = 90 * time.Second // the whole test, browsers included
	stepTimeout   = 30 * time.Second // one action or one wait
	startTimeout  = 30 * time.Second // one browser, from exec to first tab
	closeTimeout  = 10 * time.Second // a graceful browser close, a failure screenshot
)

// screenshotEnv names the file where TestBrowserChat saves a full-page PNG
// of Ann's tab after the chat (docs/chat.png is made this way).
const screenshotEnv = "GW_SCREENSHOT"

// chromiumPath finds the browser: $GW_CHROMIUM, then chromium or
// chromium-browser on $PATH. Without one it skips the test (fails it under CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GW_CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("GW_CHROMIUM=%s: %v", p, err)
		}
		return path
	}
	return bustest.Tool(t, "apt-get install -y chromium (or set GW_CHROMIUM to a Chrome binary)", "chromium", "chromium-browser")
}

// startChatServer starts what `gatewayworker run` starts, on free loopback
// ports: an embedded NATS, the chat worker, a gateway that heartbeats with
// {"type":"ping"} every second and accepts only the page's origin, and the
// page itself. It returns the page's URL.
func startChatServer(t *testing.T) string {
	t.Helper()
	return startChatServerWith(t, func(e *bus.Embedded) {
		workertest.Start(t, e, worker.Config{Handlers: chat.Handlers()})
	})
}

// startChatServerWith is startChatServer with the worker that startWorker
// starts on e: the Go chat worker, or the PHP one (browser_php_test.go).
func startChatServerWith(t *testing.T, startWorker func(e *bus.Embedded)) string {
	t.Helper()
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	// The worker starts first, so it is still there when the gateway's
	// cleanup drains its clients' close events.
	startWorker(e)

	_, _, pageURL := servePage(t, e, gateway.Config{PingData: []byte(`{"type":"ping"}`), PingInterval: time.Second})
	return pageURL + "/"
}

// servePage starts a gateway on e with cfg, allowing only the page's
// origin, and serves the chat page beside it. The page's port must be
// known before the gateway starts (its allowed origin), and the gateway's
// before the page is served (config.json). It returns the gateway, the
// page's API client and the page's URL.
func servePage(t *testing.T, e *bus.Embedded, cfg gateway.Config) (*gateway.Gateway, *api.Client, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.AllowedOrigins = []string{"http://" + l.Addr().String()}
	gw := gatewaytest.Start(t, e, cfg)
	a, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{Name: "api"}), Logger: bustest.Logger(t)})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	h, err := chat.NewWebHandler(chat.WebConfig{WebSocketURL: "ws://" + gw.WebSocketAddr() + "/", API: a})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	require.NoError(t, srv.Listener.Close())
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return gw, a, srv.URL
}

// tab is one headless Chromium, with its own profile, showing one page.
type tab struct {
	t        *testing.T
	name     string
	ctx      context.Context // the browser's first tab; has no deadline
	deadline time.Time       // of the whole test

	mu       sync.Mutex
	log      []string // console messages, exceptions, chromedp errors
	problems []string // exceptions and console errors: there should be none
	dialogs  []string // alert/confirm/prompt messages: there should be none
}

// newTab starts a browser for name, with a fresh profile and a 1280x800
// viewport. It closes when the test ends.
func newTab(t *testing.T, exe, name string, deadline time.Time) *tab {
	t.Helper()
	tb := &tab{t: t, name: name, deadline: deadline}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(tb.logf), chromedp.WithLogf(tb.logf))
	tb.ctx = ctx
	var watchers sync.WaitGroup
	// Runs before t.TempDir's cleanup: the profile is unused when it is removed.
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, closeTimeout)
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("%s: closing the browser: %v", name, err)
		}
		cancel()
		cancelCtx()   // kills the browser if it did not close in time
		cancelAlloc() // waits for the process
		watchers.Wait()
	})

	// The first Run starts the browser and binds it to ctx, which has no
	// deadline; the start is bounded here instead.
	start := time.Now()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		require.NoError(t, err, "%s: starting %s", name, exe)
		t.Logf("%s: browser started in %v", name, time.Since(start).Round(time.Millisecond))
	case <-time.After(startTimeout):
		cancelCtx()
		<-started
		t.Fatalf("%s: %s did not start within %v", name, exe, startTimeout)
	}

	// Keep the console for the failure report, and answer dialogs (an XSS
	// would open one) so that they never block the page.
	console := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	watchers.Add(2)
	go func() {
		defer watchers.Done()
		for m, err := range console {
			if err != nil {
				return
			}
			tb.logf("console %s (%s:%d)", m, m.URL, m.Line+1)
			if m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError {
				tb.mu.Lock()
				tb.problems = append(tb.problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
				tb.mu.Unlock()
			}
		}
	}()
	go func() {
		defer watchers.Done()
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, string(ev.Type)+": "+ev.Message)
			tb.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	tb.do("set the viewport", chromedp.EmulateViewport(1280, 800))
	return tb
}

// logf keeps a line for the failure report. chromedp calls it too, maybe
// after the test ended, so it never calls t.Log.
func (tb *tab) logf(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.log = append(tb.log, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

// dialogsSeen returns the dialogs the page opened.
func (tb *tab) dialogsSeen() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// problemsSeen returns the page's uncaught exceptions and console errors.
func (tb *tab) problemsSeen() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...)
}

// stepCtx bounds one action by stepTimeout and by the test's deadline.
func (tb *tab) stepCtx() (context.Context, context.CancelFunc) {
	d := time.Now().Add(stepTimeout)
	if tb.deadline.Before(d) {
		d = tb.deadline
	}
	return context.WithDeadline(tb.ctx, d)
}

// do runs actions in the tab, failing the test with what if they fail.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := tb.stepCtx()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := tb.stepCtx()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: evaluating %s: %v", tb.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is true. what says what
// is awaited; on timeout the page's messages and users are in the error.
func (tb *tab) waitFor(what, predicate string) {
	tb.t.Helper()
	ctx, cancel := tb.stepCtx()
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(0))) // ctx bounds it
	if err != nil {
		tb.t.Fatalf("%s: waiting for %s: %v\nstate: %s\nusers: %v\nmessages:\n%s",
			tb.name, what, err, tb.state(), tb.users(), strings.Join(tb.lines(), "\n"))
	}
}

// state is the connection badge's data-state, or an error text.
func (tb *tab) state() string {
	ctx, cancel := context.WithTimeout(tb.ctx, closeTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('state').dataset.state`))
	if err != nil {
		return err.Error()
	}
	return s
}

// users returns the names in the user list, in the page's order.
func (tb *tab) users() []string {
	ctx, cancel := context.WithTimeout(tb.ctx, closeTimeout)
	defer cancel()
	u, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#users li')].map(li => li.title)`))
	return u
}

// lines returns the chat lines as "class | from | body", oldest first.
func (tb *tab) lines() []string {
	ctx, cancel := context.WithTimeout(tb.ctx, closeTimeout)
	defer cancel()
	l, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages .msg')].map(m =>
		[m.className, m.querySelector('.from')?.textContent ?? '', m.querySelector('.body')?.textContent ?? ''].join(' | '))`))
	return l
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	return string(b)
}

// bothJoinRoom1 opens the page in both tabs and logs ann, then bob, in
// to room 1; it returns once each sees both in the user list.
func bothJoinRoom1(ann, bob *tab, pageURL string) {
	ann.do("open the page", chromedp.Navigate(pageURL))
	bob.do("open the page", chromedp.Navigate(pageURL))
	ann.login("1")
	ann.waitFor("Ann's own join notice", hasLine("msg notice", "", "You joined Room 1 as Ann"))
	bob.login("1")
	bob.waitFor("both users at Bob", hasUsers("Bob", "Ann"))
	ann.waitFor("both users at Ann", hasUsers("Ann", "Bob"))
	ann.waitFor("Bob's join notice", hasLine("msg notice", "", "Bob joined"))
}

// hasLine is a predicate: #messages holds a line with exactly these
// classes (e.g. "msg private"), sender label and body text.
func hasLine(class, from, body string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].some(m => m.className === %s &&
		(m.querySelector('.from')?.textContent ?? '') === %s && m.querySelector('.body')?.textContent === %s)`,
		js(class), js(from), js(body))
}

// hasUsers is a predicate: the user list shows exactly these names, in
// this order (the page lists "you" first, then by name).
func hasUsers(names ...string) string {
	b, err := json.Marshal(names)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`JSON.stringify([...document.querySelectorAll('#users li')].map(li => li.title)) === %s &&
		document.getElementById('user-count').textContent === %s`, js(string(b)), js(fmt.Sprint(len(names))))
}

// login fills in the login form (unless the name is prefilled already)
// and waits until the page is online.
func (tb *tab) login(room string) {
	tb.t.Helper()
	tb.do("show the login form", chromedp.WaitVisible(chromedp.ID("join")))
	if eval[string](tb, `document.getElementById('name').value`) != tb.name {
		tb.do("type the name", chromedp.Clear(chromedp.ID("name")), chromedp.SendKeys(chromedp.ID("name"), tb.name))
	}
	tb.do("log in",
		chromedp.SetValue(chromedp.ID("room"), room),
		chromedp.Click(chromedp.ID("join")),
		chromedp.WaitVisible(chromedp.ID("chat-view")),
		chromedp.WaitVisible(chromedp.CSS(`#state[data-state="online"]`)))
}

// say sends text to whoever the page's "to:" line names.
func (tb *tab) say(text string) {
	tb.t.Helper()
	tb.do("say "+text,
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")))
	tb.waitFor("the input to clear after sending", `document.getElementById('text').value === ''`)
}

// choose makes the next messages private to the user called name.
func (tb *tab) choose(name string) {
	tb.t.Helper()
	tb.do("choose "+name, chromedp.Click(chromedp.CSS(`#users li[title=`+js(name)+`]:not(.self)`)))
	tb.waitFor(name+" as the target", `document.getElementById('to').textContent === `+js(name)+
		` && document.getElementById('to').dataset.target !== 'all'`)
}

// everyone makes the next messages public again.
func (tb *tab) everyone() {
	tb.t.Helper()
	tb.do("send to everyone", chromedp.Click(chromedp.ID("to-all")))
	tb.waitFor("everyone as the target", `document.getElementById('to').dataset.target === 'all'`)
}

// saveOnFailure saves a screenshot, the page's HTML and the console of
// each tab when the test has failed, and logs where.
func saveOnFailure(t *testing.T, tabs ...*tab) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "chat-browser-failure-")
		if err != nil {
			t.Logf("no failure report: %v", err)
			return
		}
		for _, tb := range tabs {
			ctx, cancel := context.WithTimeout(tb.ctx, closeTimeout)
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
				t.Logf("%s: no screenshot: %v", tb.name, err)
			} else if err := os.WriteFile(filepath.Join(dir, tb.name+".png"), png, 0o644); err != nil {
				t.Logf("%s: %v", tb.name, err)
			}
			if html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body"))); err == nil {
				_ = os.WriteFile(filepath.Join(dir, tb.name+".html"), []byte(html), 0o644)
			}
			cancel()
			tb.mu.Lock()
			log := strings.Join(tb.log, "\n")
			tb.mu.Unlock()
			_ = os.WriteFile(filepath.Join(dir, tb.name+"-console.log"), []byte(log+"\n"), 0o644)
			t.Logf("%s's console:\n%s", tb.name, log)
		}
		t.Logf("browser failure report (screenshots, HTML, console): %s", dir)
	})
}

// TestBrowserChat drives the chat page in two real headless Chromiums,
// Ann and Bob, against a real embedded NATS, gateway and worker.
func TestBrowserChat(t *testing.T) {
	exe := chromiumPath(t)
	deadline := time.Now().Add(browserBudget)
	pageURL := startChatServer(t)

	// Separate browsers, so separate localStorage: the page remembers the
	// name there, and Ann's must survive her reload.
	ann := newTab(t, exe, "Ann", deadline)
	bob := newTab(t, exe, "Bob", deadline)
	saveOnFailure(t, ann, bob) // a cleanup: it runs before the browsers close

	// Both log in to room 1, and each sees both in the user list.
	bothJoinRoom1(ann, bob, pageURL)
	require.Equal(t, "Room 1", eval[string](ann, `document.getElementById('room-name').textContent`))

	// A public message reaches both, not marked private.
	ann.say("Hi Bob!")
	bob.waitFor("Ann's public message", hasLine("msg", "Ann", "Hi Bob!"))
	ann.waitFor("Ann's own copy", hasLine("msg self", "Ann", "Hi Bob!"))

	// Bob picks Ann in the list: a private message, marked private on both sides.
	bob.choose("Ann")
	bob.say("psst, Ann")
	ann.waitFor("Bob's private message", hasLine("msg private", "Bob → you", "psst, Ann"))
	bob.waitFor("Bob's private copy", hasLine("msg self private", "you → Ann", "psst, Ann"))
	require.Equal(t, 1, eval[int](ann, `document.querySelectorAll('#messages .msg.private').length`))

	// Markup is text: the gateway sends entities, the page shows the literal
	// string and never parses it as HTML.
	const evil = `<img src=x onerror=alert(1)>`
	bob.everyone()
	bob.say(evil)
	for _, tb := range []*tab{ann, bob} {
		// Wait for the line, whatever its body, so that markup that became
		// HTML fails here at once, not after a timeout.
		tb.waitFor("Bob's HTML message", `(m => m !== null && (m.querySelector('.from')?.textContent ?? '') === 'Bob')(
			document.querySelector('#messages .msg:last-child'))`)
		require.Equal(t, evil, eval[string](tb, `document.querySelector('#messages .msg:last-child .body').textContent`),
			"%s: the message shows as text", tb.name)
		require.True(t, eval[bool](tb, `document.querySelectorAll('#messages img').length === 0`), "%s: an <img> in #messages", tb.name)
		require.Equal(t, 0, eval[int](tb, `document.images.length`), "%s: an image in the page", tb.name)
		require.Empty(t, tb.dialogsSeen(), "%s: the page opened a dialog", tb.name)
	}
	require.True(t, eval[bool](ann, hasLine("msg", "Bob", evil)), "not marked private or self at Ann")
	require.True(t, eval[bool](bob, hasLine("msg self", "Bob", evil)), "marked self at Bob")

	// Ann reloads: Bob sees her leave; the page remembers her name, and
	// she is back after one click.
	ann.do("reload", chromedp.Reload())
	require.Equal(t, "Ann", eval[string](ann, `document.getElementById('name').value`), "the name comes back from localStorage")
	bob.waitFor("Ann's leave notice", hasLine("msg notice", "", "Ann left"))
	bob.waitFor("Bob alone", hasUsers("Bob"))
	ann.login("1")
	bob.waitFor("Ann's join notice", hasLine("msg notice", "", "Ann joined"))
	bob.waitFor("Ann back in the list", hasUsers("Bob", "Ann"))
	ann.waitFor("both users at Ann after the reload", hasUsers("Ann", "Bob"))
	require.Equal(t, []string{"Ann left", "Ann joined"}, notices(bob, "Ann "), "Bob's notices about Ann, in order")

	// The chat works after the reload, public and private, both ways.
	// Ann's tab then is docs/chat.png (see screenshotEnv).
	for _, m := range []struct {
		from, to *tab
		private  bool
		text     string
	}{
		{bob, ann, false, "Welcome back, Ann!"},
		{ann, bob, false, "Thanks! I reloaded the page and came straight back."},
		{bob, ann, false, "Each line goes browser → gateway → NATS → worker and back."},
		{ann, bob, false, "And the worker keeps no state, so we can run as many as we like."},
		{bob, ann, true, "Psst: click a name in the list to send a private message like this one."},
		{ann, bob, false, "Got it. See you at the stand-up!"},
	} {
		if m.private {
			m.from.choose(m.to.name)
		}
		m.from.say(m.text)
		if m.private {
			m.to.waitFor("a private message", hasLine("msg private", m.from.name+" → you", m.text))
			m.from.everyone()
		} else {
			m.to.waitFor("a message", hasLine("msg", m.from.name, m.text))
		}
	}

	for _, tb := range []*tab{ann, bob} {
		require.Empty(t, tb.dialogsSeen(), "%s: the page opened a dialog", tb.name)
		require.Empty(t, tb.problemsSeen(), "%s: exceptions or errors in the console", tb.name)
		require.Equal(t, "online", tb.state(), tb.name)
	}
	if path := os.Getenv(screenshotEnv); path != "" {
		saveScreenshot(t, ann, path)
	}
}

// notices returns the notices of tb that start with prefix, oldest first.
func notices(tb *tab, prefix string) []string {
	tb.t.Helper()
	return eval[[]string](tb, `[...document.querySelectorAll('#messages .msg.notice .body')].map(b => b.textContent).filter(s => s.startsWith(`+js(prefix)+`))`)
}

// saveScreenshot writes a full-page PNG of tb to path, once the stats
// panel shows both connections.
func saveScreenshot(t *testing.T, tb *tab, path string) {
	t.Helper()
	tb.waitFor("the stats panel", `!document.getElementById('stats').hidden &&
		document.getElementById('stat-connections').textContent === '2'`)
	tb.do("blur the input", chromedp.Blur(chromedp.ID("text")))
	ctx, cancel := tb.stepCtx()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot of %s's tab: %s", tb.name, path)
}
