package phptest

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// runJetStream starts an embedded NATS server with JetStream.
func runJetStream(t *testing.T) *bus.Embedded {
	t.Helper()
	return bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
}

// createHistoryStream creates the history stream of prefix gw as gateways
// with history do, and returns it with its epoch.
func createHistoryStream(t *testing.T, e *bus.Embedded) (jetstream.Stream, string) {
	t.Helper()
	ctx := context.Background()
	info, err := bustest.Connect(t, e, bus.Config{}).EnsureHistory(ctx, bus.Subjects{}, bus.HistoryConfig{})
	require.NoError(t, err)
	nc, err := nats.Connect(e.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(ctx, bus.Subjects{}.HistoryStream())
	require.NoError(t, err)
	return st, info.Epoch
}

// TestRecoverableFromPHP: Gateway::sendToUid/sendToGroup store recoverable
// pushes (recoverable: true, or a name matching Gateway::$recoverable) in
// the history stream with a Nats-Msg-Id each, and the stream republishes
// them where gateways listen; other sends stay plain. getHistory reads them
// back with positions, since, limit, another epoch and a trimmed stream
// (complete: false), and refuses bad arguments.
func TestRecoverableFromPHP(t *testing.T) {
	phpBin(t)
	s := runJetStream(t)
	st, epoch := createHistoryStream(t, s)
	nc, err := nats.Connect(s.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var got []string // subject body [exclude]
	for _, subj := range []string{"gw.hr.>", "gw.uid.>", "gw.grp.>"} {
		_, err := nc.Subscribe(subj, func(m *nats.Msg) {
			var c bus.Command
			require.NoError(t, bus.UnmarshalCommand(m.Data, &c))
			line := m.Subject + " " + string(c.Body)
			if len(c.Exclude) > 0 {
				line += " " + c.Exclude[0]
			}
			if seq := m.Header.Get("Nats-Sequence"); seq != "" {
				line += " seq=" + seq
			}
			mu.Lock()
			got = append(got, line)
			mu.Unlock()
		})
		require.NoError(t, err)
	}
	require.NoError(t, nc.Flush())

	sc := runScript(t, map[string]string{"NATS_URL": s.URL(), "EPOCH": epoch}, "history.php")
	sc.waitFor("sent")
	mu.Lock()
	slices.Sort(got)
	require.Equal(t, []string{
		"gw.grp.lobby p2",
		"gw.hr.g.room-1 r3 g1-aa-1 seq=3",
		"gw.hr.g.room-1 r4\xff seq=4",
		"gw.hr.u.ann r1 seq=1",
		"gw.hr.u.chat-7 r2 seq=2",
		"gw.uid.bob r2",
		"gw.uid.~Y2hhdC94 p3",
	}, got)
	mu.Unlock()
	ctx := context.Background()
	ids := map[string]bool{}
	for seq := uint64(1); seq <= 4; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(t, err)
		id := m.Header.Get("Nats-Msg-Id")
		require.NotEmpty(t, id, "seq %d", seq)
		ids[id] = true
	}
	require.Len(t, ids, 4, "one id per push")
	require.NoError(t, st.Purge(ctx, jetstream.WithPurgeSequence(4)))
	sc.resume()
	sc.pass()
}

// TestRecoverablePHPToGateway: recoverable pushes from PHP reach an
// opted-in client of a real gateway with history, each after its pos
// frame; those sent while it was away are replayed on its reconnection,
// followed by a complete recovered frame per channel.
func TestRecoverablePHPToGateway(t *testing.T) {
	phpBin(t)
	e := runJetStream(t)
	secret := []byte(strings.Repeat("k", 32))
	g := gatewaytest.Start(t, e, gateway.Config{ID: "g1", History: &bus.HistoryConfig{Storage: bus.StorageMemory},
		Auth: &gateway.AuthConfig{HMACSecret: secret}})
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ann", "groups": []string{"room-1"}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	require.NoError(t, err)
	info, err := bustest.Connect(t, e, bus.Config{}).HistoryInfo(context.Background(), bus.Subjects{})
	require.NoError(t, err)
	pos := func(seq int) string { return info.Epoch + ":" + strconv.Itoa(seq) }
	// read returns the next n frames, the uid's and the
	// group's apart (their order between them is not fixed).
	read := func(c *gatewaytest.WS, n int) map[string][]string {
		t.Helper()
		var frames []string
		for len(frames) < n {
			msg, _, err := c.TryReadMessage(5 * time.Second)
			require.NoError(t, err, "after %q", frames)
			frames = append(frames, msg)
		}
		got := map[string][]string{}
		ch := ""
		for _, msg := range frames {
			var f struct{ GW, Ch string }
			if json.Unmarshal([]byte(msg), &f) == nil && f.GW != "" {
				ch = f.Ch
			}
			got[ch] = append(got[ch], msg)
		}
		return got
	}

	// PHP starts first: a child started while a WebSocket connection is open
	// inherits its socket (nbio dup()s accepted fds without close-on-exec),
	// and after that connection closes, its stale epoll registration closes
	// the next connection that gets the same fd (2026-12-03, reported).
	s := runScript(t, map[string]string{"NATS_URL": e.URL()}, "history.php", "gateway")
	// Positions before the first message: what is pushed before the token's
	// memberships are in place is replayed, not missed; the recovered frame
	// comes before or after the push, as the push came before or after the read.
	q := url.QueryEscape(`{"u:ann":"` + pos(0) + `","g:room-1":"` + pos(0) + `"}`)
	c := gatewaytest.DialWS(t, g, "/?recover="+q+"&token="+token, nil)
	s.waitFor("away")
	first := read(c, 6)
	for ch, push := range map[string]string{"u:ann": "r1", "g:room-1": "r2"} {
		var rest []string
		recovered := 0
		for _, f := range first[ch] {
			if strings.HasPrefix(f, `{"gw":"recovered","ch":"`+ch+`","complete":true,`) {
				recovered++
			} else {
				rest = append(rest, f)
			}
		}
		seq := map[string]int{"r1": 1, "r2": 2}[push]
		require.Equal(t, 1, recovered, "%s: %q", ch, first[ch])
		require.Equal(t, []string{`{"gw":"pos","ch":"` + ch + `","pos":"` + pos(seq) + `"}`, push}, rest, ch)
	}
	require.NoError(t, c.Conn.Close())
	s.resume()
	s.pass()

	q = url.QueryEscape(`{"u:ann":"` + pos(1) + `","g:room-1":"` + pos(2) + `"}`)
	c = gatewaytest.DialWS(t, g, "/?recover="+q+"&token="+token, nil)
	require.Equal(t, map[string][]string{
		"u:ann": {`{"gw":"pos","ch":"u:ann","pos":"` + pos(3) + `"}`, "r3",
			`{"gw":"recovered","ch":"u:ann","complete":true,"pos":"` + pos(3) + `"}`},
		"g:room-1": {`{"gw":"pos","ch":"g:room-1","pos":"` + pos(4) + `"}`, "r4",
			`{"gw":"recovered","ch":"g:room-1","complete":true,"pos":"` + pos(4) + `"}`},
	}, read(c, 6))
}

// TestRecoverableUnderRolePermissions: the api role's NATS permissions
// (docs/security.md) let the PHP facade store recoverable pushes and read
// history, with its answers under the role's inbox.
func TestRecoverableUnderRolePermissions(t *testing.T) {
	phpBin(t)
	var subj bus.Subjects
	var users []bus.EmbeddedUser
	for _, r := range []bus.Role{bus.RoleGateway, bus.RoleAPI} {
		pub, sub := subj.Permissions(r)
		users = append(users, bus.EmbeddedUser{Name: string(r), Password: string(r) + "-pw", Publish: pub, Subscribe: sub})
	}
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir(), Users: users})
	gw := bustest.Connect(t, e, bus.Config{User: "gateway", Password: "gateway-pw", InboxPrefix: subj.Inbox(bus.RoleGateway)})
	info, err := gw.EnsureHistory(context.Background(), subj, bus.HistoryConfig{Storage: bus.StorageMemory})
	require.NoError(t, err)
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_USER": "api", "NATS_PASS": "api-pw", "EPOCH": info.Epoch},
		"history.php", "roles").pass()
}

// TestHistoryUnavailableFromPHP: without JetStream, or without the history
// stream, recoverable sends and getHistory throw
// HistoryUnavailableException; plain sends work.
func TestHistoryUnavailableFromPHP(t *testing.T) {
	phpBin(t)
	plain := bustest.RunServer(t, bus.EmbeddedConfig{})
	runScript(t, map[string]string{"NATS_URL": plain.URL(),
		"WANT_HISTORY_ERROR": "GatewayWorker\\Nats\\HistoryUnavailableException: gatewayworker: the NATS server has no JetStream: history is unavailable"},
		"history.php", "unavailable").pass()
	js := runJetStream(t)
	runScript(t, map[string]string{"NATS_URL": js.URL(),
		"WANT_HISTORY_ERROR": "GatewayWorker\\Nats\\HistoryUnavailableException: gatewayworker: no stream HISTORY_gw: history is off (gateways with --history create it)"},
		"history.php", "unavailable").pass()
}

// TestRecoverableRetryFromPHP: a recoverable send whose acknowledgement
// does not come in time is sent again with the same Nats-Msg-Id, and the
// stream stores it once. The PHP process reaches NATS through a proxy that
// holds what NATS sends until the second attempt went out.
func TestRecoverableRetryFromPHP(t *testing.T) {
	phpBin(t)
	s := runJetStream(t)
	st, _ := createHistoryStream(t, s)
	p := startHoldingProxy(t, strings.TrimPrefix(s.URL(), "nats://"), regexp.MustCompile(`HPUB gw\.h\.u\.ann [^\r]*\r\nNATS/1\.0\r\nNats-Msg-Id: (\w+)`), 2)
	runScript(t, map[string]string{"NATS_URL": "nats://" + p.addr}, "history.php", "retry").pass()
	ids := p.matched()
	require.Len(t, ids, 2, "two attempts")
	require.Equal(t, ids[0], ids[1], "with the same id")
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "stored once")
}

// holdingProxy is a TCP proxy in front of a NATS server that, once the
// client sent something matching its pattern, holds what the server sends
// back until the client sent it n times in all.
type holdingProxy struct {
	addr    string
	release chan struct{} // closed at the n-th match

	mu   sync.Mutex
	ids  []string // the pattern's first group, per match
	held bool     // matched once, not yet n times
}

func (p *holdingProxy) matched() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids)
}

func startHoldingProxy(t *testing.T, target string, pattern *regexp.Regexp, n int) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	p := &holdingProxy{addr: ln.Addr().String(), release: make(chan struct{})}
	var releaseOnce sync.Once
	pipe := func(from, to net.Conn, inspect bool) {
		defer to.Close()
		var seen []byte
		buf := make([]byte, 32<<10)
		for {
			k, err := from.Read(buf)
			if k > 0 && inspect {
				seen = append(seen, buf[:k]...)
				p.mu.Lock()
				p.ids = p.ids[:0]
				for _, m := range pattern.FindAllSubmatch(seen, -1) {
					p.ids = append(p.ids, string(m[1]))
				}
				p.held = len(p.ids) >= 1 && len(p.ids) < n
				if len(p.ids) >= n {
					releaseOnce.Do(func() { close(p.release) })
				}
				p.mu.Unlock()
			}
			if k > 0 && !inspect {
				p.mu.Lock()
				held := p.held
				p.mu.Unlock()
				if held {
					<-p.release
				}
			}
			if k > 0 {
				if _, err := to.Write(buf[:k]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); u.Close() })
			go pipe(c, u, true)
			go pipe(u, c, false)
		}
	}()
	return p
}
