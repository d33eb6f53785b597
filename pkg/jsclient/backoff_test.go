package jsclient_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/jsclient"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestBackoffAgainstRealGateways runs the module in Node, with Node's own
// WebSocket, against real gateways:
//   - a full one (MaxConnections 1, taken), which accepts each upgrade
//     and closes it at once with 4003: the waits must keep growing up to
//     maxDelay, although every attempt opened (a successful open reset
//     the backoff, so every client of a full gateway came back every
//     initialDelay, for ever);
//   - with jitter, no wait passes maxDelay (it reached 1.5 × maxDelay);
//   - one that wants tokens, given a bad one: 4502 and no reconnect.
func TestBackoffAgainstRealGateways(t *testing.T) {
	node := bustest.Tool(t, "apt-get install -y nodejs", "node")
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: worker.Handlers{
		OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error { return nil },
	}})
	full := gatewaytest.Start(t, e, gateway.Config{MaxConnections: 1})
	gatewaytest.DialWS(t, full, "/", nil)
	require.Eventually(t, func() bool { return full.Stats().Connections == 1 }, 5*time.Second, 10*time.Millisecond)
	auth := gatewaytest.Start(t, e, gateway.Config{Auth: &gateway.AuthConfig{HMACSecret: []byte(strings.Repeat("k", 32))}})

	dir := t.TempDir()
	mod := filepath.Join(dir, "gatewayworker.mjs")
	require.NoError(t, os.WriteFile(mod, jsclient.Source, 0o644))
	script := `
import { GatewayClient } from ` + "'" + mod + "'" + `;
const run = (url, opts, n) => new Promise((resolve) => {
  const c = new GatewayClient(url, opts);
  const seen = { delays: [], codes: [], opens: 0 };
  c.on('open', () => seen.opens++);
  c.on('close', (e) => {
    if (!e.byClient) seen.codes.push(e.code);
    if (!e.willReconnect && !e.byClient) setTimeout(() => { seen.state = c.state; resolve(seen); }, 300);
  });
  c.on('reconnecting', (e) => {
    seen.delays.push(e.delay);
    if (seen.delays.length >= n) { c.close(); resolve(seen); }
  });
  c.connect();
});
const out = {};
out.full = await run(process.env.FULL, { initialDelay: 20, maxDelay: 160, jitter: 0 }, 6);
const j = await run(process.env.FULL, { initialDelay: 40, maxDelay: 50, jitter: 0.9 }, 8);
out.jitterOver = j.delays.filter((d) => d > 50);
out.refused = await run(process.env.AUTH + '?token=garbage', { initialDelay: 20, maxDelay: 40 }, 3);
console.log(JSON.stringify(out));
`
	cmd := exec.Command(node, "--experimental-websocket", "--input-type=module", "-e", script)
	cmd.Env = append(os.Environ(), "FULL=ws://"+full.WebSocketAddr()+"/", "AUTH=ws://"+auth.WebSocketAddr()+"/")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.JSONEq(t, `{
		"full": {"delays": [20, 40, 80, 160, 160, 160], "codes": [4003, 4003, 4003, 4003, 4003, 4003], "opens": 6},
		"jitterOver": [],
		"refused": {"delays": [], "codes": [4502], "opens": 1, "state": "closed"}
	}`, string(out))
}
