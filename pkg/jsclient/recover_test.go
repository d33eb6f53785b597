package jsclient_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/jsclient"
)

// contractFixture is a contract fixture, not a gateway: a small WebSocket
// server that speaks the recovery frames of docs/protocol.md ("Recovery")
// from a fixed script per connection, so that the client's handling of them
// is tested frame by frame, including orders a real gateway makes rare (a
// connection lost between a pos frame and its push). The tests against real
// gateways are in recover_e2e_test.go.
type contractFixture struct {
	url string // ws://127.0.0.1:port

	mu      sync.Mutex
	queries map[string][]string // path -> the ?recover= of each connection ("-" when absent)
	raw     map[string][]string // path -> the raw query of each connection
}

func (f *contractFixture) seen(path string) ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries[path]...), append([]string(nil), f.raw[path]...)
}

// startContractFixture serves:
//
//	/script  connection 1: pos u:ann e1:1 + "m1"; pos g:room e1:2, a ping, a binary push;
//	         {"gw":"hello"} (not a recovery frame); pos u:ann e1:3 and the connection breaks
//	         before its push.
//	         connection 2: the replay of u:ann (pos e1:3 + "m3"), recovered u:ann complete;
//	         recovered g:room incomplete at e2:7; close 4000.
//	         connection 3: recovered g:room incomplete with no position; close 4000.
//	         later connections: stay open.
//	/plain   pos u:ann e1:1 + "m1", then stays open (a client without recover sees both).
//	/bounds  records the query and closes with 1000.
func startContractFixture(t *testing.T) *contractFixture {
	t.Helper()
	f := &contractFixture{queries: map[string][]string{}, raw: map[string][]string{}}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	text := func(c *websocket.Conn, s string) {
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(s)))
	}
	closeWith := func(c *websocket.Conn, code int) {
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		_, _, _ = c.ReadMessage()
	}
	hold := func(c *websocket.Conn) {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		q := "-"
		if r.URL.Query().Has("recover") {
			q = r.URL.Query().Get("recover")
		}
		f.mu.Lock()
		f.queries[r.URL.Path] = append(f.queries[r.URL.Path], q)
		f.raw[r.URL.Path] = append(f.raw[r.URL.Path], r.URL.RawQuery)
		n := len(f.queries[r.URL.Path])
		f.mu.Unlock()
		switch {
		case r.URL.Path == "/plain":
			text(c, `{"gw":"pos","ch":"u:ann","pos":"e1:1"}`)
			text(c, "m1")
			hold(c)
		case r.URL.Path == "/bounds":
			closeWith(c, websocket.CloseNormalClosure)
		case n == 1:
			text(c, `{"gw":"pos","ch":"u:ann","pos":"e1:1"}`)
			text(c, "m1")
			text(c, `{"gw":"pos","ch":"g:room","pos":"e1:2"}`)
			text(c, `{"type":"ping"}`)
			require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}))
			text(c, `{"gw":"hello"}`)
			text(c, `{"gw":"pos","ch":"u:ann","pos":"e1:3"}`)
			// The deferred Close breaks the connection before the push of e1:3.
		case n == 2:
			text(c, `{"gw":"pos","ch":"u:ann","pos":"e1:3"}`)
			text(c, "m3")
			text(c, `{"gw":"recovered","ch":"u:ann","complete":true,"pos":"e1:3"}`)
			text(c, `{"gw":"recovered","ch":"g:room","complete":false,"pos":"e2:7"}`)
			closeWith(c, 4000)
		case n == 3:
			text(c, `{"gw":"recovered","ch":"g:room","complete":false}`)
			closeWith(c, 4000)
		default:
			hold(c)
		}
	}))
	t.Cleanup(srv.Close)
	f.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return f
}

// TestRecoverAgainstContractFixture runs the module in Node against the
// contract fixture: pos frames are hidden and their positions committed
// only once their push arrived (the one whose push was lost is not), a ping
// between a pos frame and its push is not taken for the push, recovered
// frames become recovered events and set or drop positions, every
// (re)connection carries ?recover= with the positions of the moment (beside
// the token and the URL's own parameters, percent-encoded), at most 256
// channels and maxRecoverBytes (8 KiB, URL-encoded; 16 KiB at most) of the newest; a client without recover sees the
// frames as messages and sends no ?recover=.
func TestRecoverAgainstContractFixture(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	f := startContractFixture(t)
	script := `
import { GatewayClient, MAX_RECOVER_CHANNELS, MAX_RECOVER_BYTES } from ` + "'" + writeModule(t) + "'" + `;
const out = { limits: [MAX_RECOVER_CHANNELS, MAX_RECOVER_BYTES] };
// track connects a client and resolves once done(r) holds after an event,
// or once the client stops reconnecting.
const track = (name, url, opts, done) => new Promise((resolve) => {
  const r = out[name] = { messages: [], recovered: [], closes: [], opens: 0 };
  const c = new GatewayClient(url, opts);
  const check = () => { if (done(r)) { r.positions = c.positions; c.close(); resolve(); } };
  c.on('message', (e) => { r.messages.push([e.binary ? Array.from(new Uint8Array(e.data)) : e.data, e.channel ?? null, e.pos ?? null]); check(); });
  c.on('recovered', (e) => { r.recovered.push(e); check(); });
  c.on('open', () => { r.opens++; check(); });
  c.on('close', (e) => {
    if (e.byClient) return;
    r.closes.push(e.code);
    if (!e.willReconnect) { r.positions = c.positions; resolve(); }
  });
  c.connect();
});
const fast = { initialDelay: 10, maxDelay: 20 };
await track('script', process.env.URL + '/script?keep=1', { ...fast, recover: true, token: 't1', pingMessage: '{"type":"ping"}' },
  (r) => r.opens === 4);
await track('plain', process.env.URL + '/plain', fast, (r) => r.messages.length === 2);
const many = {};
for (let i = 0; i < 300; i++) many['g:c' + i] = 'e:' + i;
await track('many', process.env.URL + '/bounds', { recover: many, maxRecoverBytes: 16384 }, () => false);
const big = { 'g:a+b &c=d': 'e:x' };
for (let i = 0; i < 100; i++) big['g:' + 'é'.repeat(100) + i] = 'e:' + i;
await track('big', process.env.URL + '/bounds', { recover: big }, () => false);
await track('bigger', process.env.URL + '/bounds', { recover: big, maxRecoverBytes: 16384 }, () => false);
await track('too big', process.env.URL + '/bounds', { recover: big, maxRecoverBytes: 100000 }, () => false);
try { new GatewayClient(process.env.URL, { recover: { 'u:a': 1 } }); } catch (e) { out.badPos = e.message; }
out.skipped = new GatewayClient(process.env.URL, { recover: { 'x:a': 'e:1', 'u:': 'e:1', ['u:' + 'a'.repeat(257)]: 'e:1', 'u:b': 'E:1', 'u:c': 'e:01', 'u:d': 'e:', 'u:ok': 'e:0', 'g:ok': 'zz:12' } }).positions;
try { new GatewayClient(process.env.URL, { recover: 'yes' }); } catch (e) { out.badRecover = e.message; }
console.log(JSON.stringify(out));
`
	out := runNode(t, node, script, "URL="+f.url)
	require.Equal(t, []any{256.0, 16384.0}, out["limits"])

	sc := out["script"].(map[string]any)
	require.Equal(t, []any{
		[]any{"m1", "u:ann", "e1:1"},
		[]any{[]any{1.0, 2.0, 3.0}, "g:room", "e1:2"},
		[]any{`{"gw":"hello"}`, nil, nil},
		[]any{"m3", "u:ann", "e1:3"},
	}, sc["messages"], "pos and recovered frames hidden, pushes with their channel and position, the ping skipped")
	require.Equal(t, []any{
		map[string]any{"channel": "u:ann", "complete": true, "pos": "e1:3"},
		map[string]any{"channel": "g:room", "complete": false, "pos": "e2:7"},
		map[string]any{"channel": "g:room", "complete": false, "pos": ""},
	}, sc["recovered"])
	require.Equal(t, []any{1006.0, 4000.0, 4000.0}, sc["closes"])
	require.Equal(t, map[string]any{"u:ann": "e1:3"}, sc["positions"])
	queries, raw := f.seen("/script")
	require.Equal(t, []string{
		`{}`,
		`{"u:ann":"e1:1","g:room":"e1:2"}`, // not e1:3: its push never came
		`{"u:ann":"e1:3","g:room":"e2:7"}`, // oldest update first
		`{"u:ann":"e1:3"}`,                 // g:room dropped: recovered without a position
	}, queries)
	for _, q := range raw {
		require.Contains(t, q, "keep=1&token=t1&recover=", "the URL's own parameters and the token stay")
	}

	pl := out["plain"].(map[string]any)
	require.Equal(t, []any{[]any{`{"gw":"pos","ch":"u:ann","pos":"e1:1"}`, nil, nil}, []any{"m1", nil, nil}}, pl["messages"], "without recover, nothing is hidden")
	queries, _ = f.seen("/plain")
	require.Equal(t, []string{"-"}, queries)

	queries, raw = f.seen("/bounds")
	require.Len(t, queries, 4)
	var many map[string]string
	require.NoError(t, json.Unmarshal([]byte(queries[0]), &many))
	require.Len(t, many, 256, "at most 256 channels")
	require.Equal(t, "e:44", many["g:c44"], "the newest 256 kept")
	require.NotContains(t, many, "g:c43")

	entry := len(url.QueryEscape(`,"g:` + strings.Repeat("é", 100) + `00":"e:00"`)) // one two-digit channel more
	for i, limit := range []int{8192, 16384, 16384} {
		var big map[string]string
		require.NoError(t, json.Unmarshal([]byte(queries[i+1]), &big))
		encoded := raw[i+1][strings.Index(raw[i+1], "recover=")+len("recover="):]
		require.LessOrEqual(t, len(encoded), limit, "URL-encoded")
		require.Greater(t, len(encoded)+entry, limit, "as many as fit")
		require.Contains(t, big, "g:"+strings.Repeat("é", 100)+"99", "the newest kept")
		require.NotContains(t, big, "g:a+b &c=d", "the oldest dropped")
		require.NotContains(t, raw[i+1], "+", "percent-encoded: a + in the query would read as a space")
	}

	require.Equal(t, "gatewayworker: recover: the position of u:a is not a string", out["badPos"])
	require.Equal(t, map[string]any{"u:ok": "e:0", "g:ok": "zz:12"}, out["skipped"], "initial positions the gateway would refuse are skipped")
	require.Equal(t, "gatewayworker: recover must be true, false or an object of positions", out["badRecover"])
}

// TestRecoverQueryEncoding: a channel name with +, space, & and = survives
// the query as the gateway's Go HTTP server decodes it.
func TestRecoverQueryEncoding(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	f := startContractFixture(t)
	script := `
import { GatewayClient } from ` + "'" + writeModule(t) + "'" + `;
const c = new GatewayClient(process.env.URL + '/bounds?recover=stale', { recover: { 'g:a+b &c=d/é': 'e:1' } });
c.on('close', () => { console.log('{}'); });
c.connect();
`
	runNode(t, node, script, "URL="+f.url)
	queries, _ := f.seen("/bounds")
	require.Equal(t, []string{`{"g:a+b &c=d/é":"e:1"}`}, queries, "the URL's own recover is replaced")
}

// writeModule writes the module where Node can import it.
func writeModule(t *testing.T) string {
	t.Helper()
	mod := filepath.Join(t.TempDir(), "gatewayworker.mjs")
	require.NoError(t, os.WriteFile(mod, jsclient.Source, 0o644))
	return mod
}

// runNode runs script as an ES module in Node with its WebSocket, env
// added, and returns its stdout decoded as JSON.
func runNode(t *testing.T, node, script string, env ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(node, "--experimental-websocket", "--no-warnings", "--input-type=module", "-e", script)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "node: %s", stderr.String())
	var out map[string]any
	require.NoError(t, json.Unmarshal(stdout, &out), "node said %s", stdout)
	return out
}
