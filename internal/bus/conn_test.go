package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

func TestTokenAuth(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "s3cret"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := bus.Connect(ctx, bus.Config{URLs: []string{e.URL()}, Token: "wrong", MaxReconnects: 1})
	require.ErrorContains(t, err, "Authorization Violation")
	_, err = bus.Connect(ctx, bus.Config{URLs: []string{e.URL()}, MaxReconnects: 1})
	require.ErrorContains(t, err, "Authorization Violation")

	c := bustest.Connect(t, e, bus.Config{Token: "s3cret"})
	require.True(t, c.Connected())
}

func TestUserPasswordAuthAndRedactedURL(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{User: "gw", Password: "pw"})
	bustest.Connect(t, e, bus.Config{User: "gw", Password: "pw"})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "nats://gw:nope@" + e.URL()[len("nats://"):]
	_, err := bus.Connect(ctx, bus.Config{URLs: []string{url}, MaxReconnects: 1})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "nope", "the password must not appear in errors")
}

func TestEmbeddedRejectsBadConfig(t *testing.T) {
	_, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -5})
	require.ErrorContains(t, err, "negative")
	_, err = bus.StartEmbedded(bus.EmbeddedConfig{Token: "a", User: "b"})
	require.ErrorContains(t, err, "not both")
	_, err = bus.Connect(context.Background(), bus.Config{})
	require.ErrorContains(t, err, "no NATS URL")
}

func TestEmbeddedPortTaken(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	port := e.URL()[len(e.URL())-5:]
	var p int
	for _, ch := range port {
		if ch >= '0' && ch <= '9' {
			p = p*10 + int(ch-'0')
		} else {
			p = 0
		}
	}
	_, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: p})
	require.ErrorContains(t, err, "cannot listen")
}

func TestGather(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	c := bustest.Connect(t, e, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	require.ErrorIs(t, c.Gather(ctx, "nobody", nil, func(bus.Msg) bool { return true }), bus.ErrNoResponders)

	for _, name := range []string{"a", "b", "c"} {
		_, err := c.Subscribe("q", func(m bus.Msg) { _ = c.Publish(m.Reply, []byte(name)) })
		require.NoError(t, err)
	}
	got := map[string]bool{}
	require.NoError(t, c.Gather(ctx, "q", nil, func(m bus.Msg) bool {
		got[string(m.Data)] = true
		return len(got) == 3
	}))
	require.Len(t, got, 3)

	// Long enough for the three answers on a loaded machine (50 ms was
	// not, under the race detector): the gather then waits for more.
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	var n atomic.Int32
	err := c.Gather(short, "q", nil, func(bus.Msg) bool { n.Add(1); return false })
	require.ErrorIs(t, err, bus.ErrTimeout)
	require.EqualValues(t, 3, n.Load())
}

func TestRequestErrors(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	c := bustest.Connect(t, e, bus.Config{})
	_, err := c.Request(context.Background(), "nobody", nil)
	require.ErrorIs(t, err, bus.ErrNoResponders)

	_, err = c.Subscribe("slow", func(bus.Msg) {})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Request(ctx, "slow", nil)
	require.ErrorIs(t, err, bus.ErrTimeout)
}

func TestTLSToNATS(t *testing.T) {
	certFile, keyFile, _ := bustest.SelfSignedCert(t) // its own CA
	e := bustest.RunServer(t, bus.EmbeddedConfig{CertFile: certFile, KeyFile: keyFile, Token: "t"})
	c := bustest.Connect(t, e, bus.Config{Token: "t", TLS: &bus.TLSConfig{CAFile: certFile}})
	require.True(t, c.Connected())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	otherCA, _, _ := bustest.SelfSignedCert(t)
	_, err := bus.Connect(ctx, bus.Config{URLs: []string{e.URL()}, Token: "t", MaxReconnects: 1,
		TLS: &bus.TLSConfig{CAFile: otherCA}})
	require.Error(t, err, "a server whose certificate the CA did not sign is refused")
}

func TestMaxPayloadIsASentinel(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 1024})
	c := bustest.Connect(t, e, bus.Config{})
	err := c.Publish("big", make([]byte, 2048))
	require.ErrorIs(t, err, bus.ErrMaxPayload)
}

// TestFloodEndsInACountedDrop: a handler that stops keeping up (here it
// blocks) lets at most PendingMsgs messages wait in nats.go; the rest of a
// flood is dropped, and SlowConsumers counts it, instead of the queue
// growing with the flood (it had no limit).
func TestFloodEndsInACountedDrop(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	c := bustest.Connect(t, e, bus.Config{})
	release := make(chan struct{})
	var handled atomic.Int64
	_, err := c.Subscribe("flood", func(bus.Msg) {
		<-release
		handled.Add(1)
	})
	require.NoError(t, err)
	// The flood and then a marker come over one socket, in order: once the
	// marker's handler ran, nats.go has queued or dropped the whole flood.
	marked := make(chan struct{})
	_, err = c.Subscribe("marker", func(bus.Msg) { close(marked) })
	require.NoError(t, err)
	require.NoError(t, c.Flush(t.Context()))
	require.Zero(t, c.SlowConsumers(), "the counter exists before the first report")

	const flood = bus.PendingMsgs + 20_000
	pub := bustest.Connect(t, e, bus.Config{})
	for range flood {
		require.NoError(t, pub.Publish("flood", []byte("x")))
	}
	require.NoError(t, pub.Publish("marker", nil))
	require.NoError(t, pub.Flush(t.Context()))
	select {
	case <-marked:
	case <-time.After(10 * time.Second):
		t.Fatal("the marker did not arrive")
	}
	require.Eventually(t, func() bool { return c.SlowConsumers() == 1 }, 10*time.Second, 5*time.Millisecond,
		"the flood is reported once as a slow consumer")
	close(release)
	// A message published after the handler catches up is the last one it sees.
	require.NoError(t, pub.Publish("flood", []byte("end")))
	require.NoError(t, pub.Flush(t.Context()))
	var last int64
	require.Eventually(t, func() bool {
		n := handled.Load()
		done := n == last && n > 0
		last = n
		return done
	}, 10*time.Second, 100*time.Millisecond)
	require.LessOrEqual(t, handled.Load(), int64(bus.PendingMsgs+2), "at most PendingMsgs waited (plus the one in the handler and the last)")
	require.Less(t, handled.Load(), int64(flood), "the rest was dropped")
}

// TestSiblingSharesCredentialsAndEndsWithItsParent: a sibling connection
// authenticates as its parent did, carries messages on its own, and is
// closed when the parent is, so a process whose connection is gone does
// not seem alive on its sibling (gateways beat on one).
func TestSiblingSharesCredentialsAndEndsWithItsParent(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "s3cret"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	parent, err := bus.Connect(ctx, bus.Config{URLs: []string{e.URL()}, Token: "s3cret", Name: "gw"})
	require.NoError(t, err)
	defer parent.Close()
	sib, err := parent.Sibling(ctx, " control")
	require.NoError(t, err)
	defer sib.Close()
	_, err = sib.Sibling(ctx, " again")
	require.Error(t, err, "a sibling dials no siblings")

	got := make(chan string, 1)
	_, err = sib.Subscribe("beat", func(m bus.Msg) { got <- string(m.Data) })
	require.NoError(t, err)
	require.NoError(t, sib.Flush(ctx))
	require.NoError(t, parent.Publish("beat", []byte("b1")))
	require.Equal(t, "b1", <-got)

	parent.Close()
	require.Eventually(t, func() bool { return !sib.Connected() }, 5*time.Second, 10*time.Millisecond, "the sibling ends with its parent")
	_, err = parent.Sibling(ctx, " late")
	require.Error(t, err)
}

func TestEmbeddedJetStreamStoreDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: dir})
	require.True(t, e.JetStream())
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	_, err = bus.StartEmbedded(bus.EmbeddedConfig{JetStream: true})
	require.ErrorContains(t, err, "StoreDir")
	require.False(t, bustest.RunServer(t, bus.EmbeddedConfig{}).JetStream())
}
