package phptest

import (
	"context"
	"net"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// runJetStream starts a nats-server with JetStream, its store in a
// temporary directory.
func runJetStream(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	return s
}

// createHistoryStream creates the history stream of prefix gw with the
// configuration of the recovery contract (docs/protocol.md), as gateways
// with --history do, and returns it with its epoch (creation time in Unix
// ms, base 36).
func createHistoryStream(t *testing.T, url string) (jetstream.Stream, string) {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "HISTORY_gw", Subjects: []string{"gw.h.>"}, MaxAge: 10 * time.Minute, MaxBytes: 256 << 20,
		Storage: jetstream.FileStorage, Replicas: 1, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
		AllowDirect: true, RePublish: &jetstream.RePublish{Source: "gw.h.>", Destination: "gw.hr.>"},
	})
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	return st, strconv.FormatInt(info.Created.UnixMilli(), 36)
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
	st, epoch := createHistoryStream(t, s.ClientURL())
	nc, err := nats.Connect(s.ClientURL())
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

	sc := runScript(t, map[string]string{"NATS_URL": s.ClientURL(), "EPOCH": epoch}, "history.php")
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
	runScript(t, map[string]string{"NATS_URL": js.ClientURL(),
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
	st, _ := createHistoryStream(t, s.ClientURL())
	p := startHoldingProxy(t, s.Addr().String(), regexp.MustCompile(`HPUB gw\.h\.u\.ann [^\r]*\r\nNATS/1\.0\r\nNats-Msg-Id: (\w+)`), 2)
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
