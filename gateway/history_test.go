package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// historyStack is a JetStream server, a worker that greets clients with
// their ids, and a pusher that stores recoverable pushes.
type historyStack struct {
	t    testing.TB
	e    *bus.Embedded
	pub  *bus.Conn
	web  *api.Client
	subj bus.Subjects
}

func newHistoryStack(t testing.TB, cfg bus.HistoryConfig) (*historyStack, func() *gateway.Gateway) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	pub := bustest.Connect(t, e, bus.Config{})
	web, err := api.New(api.Config{Bus: pub})
	require.NoError(t, err)
	t.Cleanup(web.Close)
	s := &historyStack{t: t, e: e, pub: pub, web: web}
	if cfg.Storage == "" {
		cfg.Storage = bus.StorageMemory
	}
	return s, func() *gateway.Gateway { return gatewaytest.Start(t, e, gateway.Config{History: &cfg}) }
}

// push stores one recoverable push of body to ch and returns its sequence.
func (s *historyStack) push(ch bus.Channel, body string) uint64 {
	s.t.Helper()
	seq, err := s.pub.PublishRecoverable(context.Background(), s.subj, ch.Stored(s.subj), bus.MarshalCommand(&bus.Command{Op: bus.OpSend, Body: []byte(body)}))
	require.NoError(s.t, err)
	return seq
}

// dial connects with recover (nil: no parameter) and returns the client and its id.
func dialRecover(t testing.TB, g *gateway.Gateway, recover map[string]string) (*gatewaytest.WS, string) {
	t.Helper()
	path := "/"
	if recover != nil {
		b, _ := json.Marshal(recover)
		path += "?recover=" + url.QueryEscape(string(b))
	}
	c := gatewaytest.DialWS(t, g, path, nil)
	return c, c.Read(5 * time.Second)
}

type frameMsg struct {
	GW       string `json:"gw"`
	Ch       string `json:"ch"`
	Pos      string `json:"pos"`
	Complete *bool  `json:"complete"`
}

// reader reads a client's frames as pushes with their positions.
type reader struct {
	t   *testing.T
	c   *gatewaytest.WS
	pos string // the last pos frame's
}

// next returns the next push and its position (after a pos frame), or a
// recovered frame (push empty).
func (r *reader) next() (push string, pos string, rec *frameMsg) {
	r.t.Helper()
	for {
		m := r.c.Read(10 * time.Second)
		var f frameMsg
		if strings.HasPrefix(m, `{"gw":`) && json.Unmarshal([]byte(m), &f) == nil {
			switch f.GW {
			case "pos":
				require.Empty(r.t, r.pos, "two pos frames in a row")
				r.pos = f.Pos
				continue
			case "recovered":
				return "", "", &f
			}
		}
		p := r.pos
		r.pos = ""
		return m, p, nil
	}
}

func seqOf(t *testing.T, pos string) uint64 {
	p, err := bus.ParsePosition(pos)
	require.NoError(t, err)
	return p.Seq
}

// TestRecoveryReplaysThenLive: a client that missed pushes to its group
// and uid gets them on reconnect, each once, in order, with positions,
// pushes made during its recovery included, then recovered frames, then
// live pushes; a client without the parameter sees pushes only.
func TestRecoveryReplaysThenLive(t *testing.T) {
	s, start := newHistoryStack(t, bus.HistoryConfig{})
	g := start()
	ctx := context.Background()
	room, alice := bus.Channel{Name: "room"}, bus.Channel{UID: true, Name: "alice"}

	c, id := dialRecover(t, g, map[string]string{})
	plain, plainID := dialRecover(t, g, nil)
	require.NoError(t, s.web.JoinGroup(ctx, id, "room"))
	require.NoError(t, s.web.BindUID(ctx, id, "alice"))
	require.NoError(t, s.web.JoinGroup(ctx, plainID, "room"))
	r := &reader{t: t, c: c}
	for i := range 5 {
		s.push(room, fmt.Sprintf("r%d", i))
		push, pos, _ := r.next()
		require.Equal(t, fmt.Sprintf("r%d", i), push)
		require.NotEmpty(t, pos)
		require.Equal(t, fmt.Sprintf("r%d", i), plain.Read(5*time.Second), "no pos frames without the parameter")
	}
	s.push(alice, "a0")
	push, alicePos, _ := r.next()
	require.Equal(t, "a0", push)
	require.NoError(t, s.web.SendToGroup(ctx, "room", []byte("plain")))
	require.Equal(t, "plain", r.c.Read(5*time.Second))
	require.Empty(t, r.pos)
	c.Conn.Close()

	// Missed while away.
	var lastRoom string
	{
		seq := s.push(room, "m0")
		lastRoom = fmt.Sprintf("%s:%d", strings.Split(alicePos, ":")[0], seq-1)
	}
	for i := 1; i < 300; i++ {
		s.push(room, fmt.Sprintf("m%d", i))
	}
	for i := range 20 {
		s.push(alice, fmt.Sprintf("am%d", i))
	}

	c2, id2 := dialRecover(t, g, map[string]string{"g:room": lastRoom, "u:alice": alicePos})
	// Pushes during the recovery.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			s.push(room, fmt.Sprintf("l%d", i))
		}
	}()
	require.NoError(t, s.web.JoinGroup(ctx, id2, "room"))
	require.NoError(t, s.web.BindUID(ctx, id2, "alice"))
	<-done
	r2 := &reader{t: t, c: c2}
	var roomGot, aliceGot []string
	recovered := map[string]*frameMsg{}
	var last = map[string]uint64{}
	for len(roomGot) < 400 || len(aliceGot) < 20 || len(recovered) < 2 {
		push, pos, rec := r2.next()
		if rec != nil {
			require.True(t, *rec.Complete, rec.Ch)
			recovered[rec.Ch] = rec
			require.Equal(t, last[rec.Ch], seqOf(t, rec.Pos), "the last position replayed")
			continue
		}
		require.NotEmpty(t, pos, push)
		seq := seqOf(t, pos)
		ch := "g:room"
		if strings.HasPrefix(push, "am") {
			ch = "u:alice"
			aliceGot = append(aliceGot, push)
		} else {
			roomGot = append(roomGot, push)
		}
		require.Greater(t, seq, last[ch], "in order, once")
		last[ch] = seq
	}
	for i := range 300 {
		require.Equal(t, fmt.Sprintf("m%d", i), roomGot[i])
	}
	for i := range 100 {
		require.Equal(t, fmt.Sprintf("l%d", i), roomGot[300+i])
	}
	for i := range 20 {
		require.Equal(t, fmt.Sprintf("am%d", i), aliceGot[i])
	}
	s.push(room, "after")
	push, pos, _ := r2.next()
	require.Equal(t, "after", push)
	require.Greater(t, seqOf(t, pos), last["g:room"])
	c2.ExpectSilence(200 * time.Millisecond)
	st := g.Stats()
	require.EqualValues(t, 2, st.Recoveries)
	require.GreaterOrEqual(t, st.HistoryReplayed, uint64(320))
}

// TestRecoveryIncomplete: a position of another epoch, or one the stream
// no longer reaches back to, replays nothing and says complete:false with
// the stream's last position; live pushes follow.
func TestRecoveryIncomplete(t *testing.T) {
	s, start := newHistoryStack(t, bus.HistoryConfig{MaxBytes: 1 << 20})
	g := start()
	ctx := context.Background()
	room := bus.Channel{Name: "room"}
	big := strings.Repeat("x", 100<<10)
	first := s.push(room, "first")
	for range 15 { // 1.5 MiB: the first ones are dropped
		s.push(room, big)
	}
	info, err := s.pub.HistoryInfo(ctx, s.subj)
	require.NoError(t, err)
	require.Greater(t, info.FirstSeq, first+1)

	for _, pos := range []string{
		fmt.Sprintf("%s:%d", info.Epoch, first),  // past the bound
		fmt.Sprintf("%s:%d", "zz", info.LastSeq), // another epoch
		fmt.Sprintf("%s:%d", info.Epoch, info.LastSeq+5),
	} {
		c, id := dialRecover(t, g, map[string]string{"g:room": pos})
		require.NoError(t, s.web.JoinGroup(ctx, id, "room"))
		r := &reader{t: t, c: c}
		push, _, rec := r.next()
		require.Empty(t, push, "nothing replayed for %s", pos)
		require.False(t, *rec.Complete)
		require.Equal(t, info.Last().String(), rec.Pos)
		s.push(room, "live")
		push, p, _ := r.next()
		require.Equal(t, "live", push)
		require.Greater(t, seqOf(t, p), info.LastSeq)
		info.LastSeq = seqOf(t, p)
		c.Conn.Close()
	}
	require.EqualValues(t, 3, g.Stats().RecoveriesIncomplete)
}

// TestRecoverParameterRefused: a malformed recover parameter is refused
// with 400 and the reason, before the upgrade.
func TestRecoverParameterRefused(t *testing.T) {
	_, start := newHistoryStack(t, bus.HistoryConfig{})
	g := start()
	var many strings.Builder
	many.WriteString("{")
	for i := range gateway.MaxRecoverChannels + 1 {
		fmt.Fprintf(&many, `"g:%d":"e:1",`, i)
	}
	tooMany := strings.TrimSuffix(many.String(), ",") + "}"
	for _, bad := range []string{"[]", "null", `{"x:a":"e:1"}`, `{"g:a":"e:01"}`, `{"g:a":1}`, tooMany} {
		// A raw request per case, as a browser's upgrade is: no "Connection: close".
		conn, err := net.Dial("tcp", g.WebSocketAddr())
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "GET /?recover=%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", url.QueryEscape(bad))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body := make([]byte, 512)
		n, _ := io.ReadFull(resp.Body, body)
		resp.Body.Close()
		conn.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%.40s", bad)
		require.Contains(t, string(body[:n]), "recover", "%.40s", bad)
	}
}

// TestHistoryOffWithoutJetStream: a gateway asked for history on a server
// without JetStream runs without; a client's positions get complete:false.
func TestHistoryOffWithoutJetStream(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	var logs bustest.LogBuffer
	g := gatewaytest.Start(t, e, gateway.Config{History: &bus.HistoryConfig{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.Contains(t, logs.String(), "history off")
	web, err := api.New(api.Config{Bus: bustest.Connect(t, e, bus.Config{})})
	require.NoError(t, err)
	defer web.Close()
	c, id := dialRecover(t, g, map[string]string{"g:room": "abc:5"})
	require.NoError(t, web.JoinGroup(context.Background(), id, "room"))
	require.Equal(t, `{"gw":"recovered","ch":"g:room","complete":false}`, c.Read(5*time.Second))
}
