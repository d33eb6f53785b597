package chat

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestPageConnectsOnlyToItsGateways: the page's CSP lets it connect only to
// its own origin and the configured gateways (a crafted ?ws= link once sent
// a user's name and messages to any host), and forbids framing.
func TestPageConnectsOnlyToItsGateways(t *testing.T) {
	h, err := NewWebHandler(WebConfig{WebSocketURL: "ws://127.0.0.1:7272/", WebSocketOrigins: []string{"wss://chat2.example.com/"}})
	require.NoError(t, err)
	for _, path := range []string{"/", "/config.json"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.Equal(t, "DENY", rec.Header().Get("X-Frame-Options"), path)
		if path == "/config.json" {
			var c struct {
				WSOrigins []string `json:"ws_origins"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &c))
			require.Equal(t, []string{"ws://127.0.0.1:7272", "wss://chat2.example.com"}, c.WSOrigins)
			continue
		}
		csp := rec.Header().Get("Content-Security-Policy")
		require.Contains(t, csp, "frame-ancestors 'none'")
		connect := regexp.MustCompile(`connect-src ([^;]*)`).FindStringSubmatch(csp)
		require.NotNil(t, connect, csp)
		require.Equal(t, []string{"'self'", "ws://127.0.0.1:7272", "wss://chat2.example.com"}, strings.Fields(connect[1]),
			"any ws: or wss: host would let a link send the chat elsewhere")
	}
	_, err = NewWebHandler(WebConfig{WebSocketURL: "ws://127.0.0.1:7272/", WebSocketOrigins: []string{"https://x.example"}})
	require.Error(t, err)
}

// TestPageIgnoresForeignWSParameter runs the page's own ?ws= check (its
// allowedWs function, taken from index.html) in Node.
func TestPageIgnoresForeignWSParameter(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	page, err := webFiles.ReadFile("web/index.html")
	require.NoError(t, err)
	fn := regexp.MustCompile(`(?s)\n  function allowedWs\(.*?\n  }\n`).Find(page)
	require.NotNil(t, fn, "no allowedWs in index.html")
	script := "var location = {host: '127.0.0.1:8080'};\n" + string(fn) + `
var origins = ['ws://127.0.0.1:7272', 'wss://chat2.example.com'];
console.log(JSON.stringify([
  'ws://127.0.0.1:7272/', 'wss://chat2.example.com/ws', 'ws://127.0.0.1:8080/ws',
  'ws://evil.example:7272/', 'wss://127.0.0.1:7272/', 'ws://127.0.0.1:7273/', 'http://127.0.0.1:7272/', 'javascript:alert(1)', 'nonsense'
].map(function (q) { return allowedWs(q, origins); })));`
	out, err := exec.Command(node, "-e", script).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.JSONEq(t, `[true, true, true, false, false, false, false, false, false]`, string(out))
}
