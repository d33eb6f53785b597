package jsclient_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/jsclient"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(jsclient.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + jsclient.Path)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"), "browsers load modules only with a JavaScript type")
	require.True(t, bytes.Equal(jsclient.Source, body))
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+jsclient.Path, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	resp, err = http.Post(srv.URL+jsclient.Path, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// TestModuleInNode loads the module in Node (no WebSocket needed for
// this): its exports, its reconnect policy and its option checks. The
// browser tests are in examples/chat (jsclient_test.go, restart_test.go).
func TestModuleInNode(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	dir := t.TempDir()
	mod := filepath.Join(dir, "gatewayworker.mjs")
	require.NoError(t, os.WriteFile(mod, jsclient.Source, 0o644))
	script := `
import { GatewayClient, CloseCodes, reconnectable, defaults } from ` + "'" + mod + "'" + `;
const out = {};
for (const c of [1000, 1001, 1002, 1006, 1011, 3000, 4000, 4003, 4006, 4499, 4500, 4501, 4502, 4503, 4999]) out[c] = reconnectable(c);
out.normal = reconnectable(1000, true);
out.kicked = CloseCodes.KICKED;
out.maxQueue = defaults.maxQueue;
try { new GatewayClient('http://example.com/', { nope: 1 }); } catch (e) { out.unknown = e.message; }
try { new GatewayClient('ftp://example.com/'); } catch (e) { out.scheme = e.message; }
const c = new GatewayClient('http://example.com/ws', { maxQueue: 1 });
out.url = c.url;
out.state = c.state;
out.sends = [c.send('a'), c.send('b')];
try { c.send({}); } catch (e) { out.bad = e.message; }
console.log(JSON.stringify(out));
`
	cmd := exec.Command(node, "--input-type=module", "-e", script)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.JSONEq(t, `{
		"1000": false, "1001": true, "1002": true, "1006": true, "1011": true, "3000": true,
		"4000": true, "4003": true, "4006": true, "4499": true,
		"4500": false, "4501": false, "4502": false, "4503": false, "4999": false,
		"normal": true, "kicked": 4500, "maxQueue": 100,
		"unknown": "gatewayworker: unknown option nope",
		"scheme": "gatewayworker: not a ws:// or wss:// URL: ftp://example.com/",
		"url": "ws://example.com/ws", "state": "idle", "sends": [true, false],
		"bad": "gatewayworker: send takes a string or binary data"
	}`, string(out))
}
