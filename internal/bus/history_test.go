package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

func TestParsePosition(t *testing.T) {
	for in, want := range map[string]bus.Position{
		"mjx3k2:1457":                        {Epoch: "mjx3k2", Seq: 1457},
		"0:0":                                {Epoch: "0", Seq: 0},
		"zzzzzzzzzzzzz:18446744073709551615": {Epoch: "zzzzzzzzzzzzz", Seq: 1<<64 - 1},
	} {
		p, err := bus.ParsePosition(in)
		require.NoError(t, err, in)
		require.Equal(t, want, p)
		require.Equal(t, in, p.String())
		require.Equal(t, `"`+in+`"`, string(p.AppendJSON(nil)))
	}
	for _, in := range []string{"", ":", "a:", ":1", "A:1", "a:01", "a:-1", "a:+1", "a:1.0", "a:18446744073709551616",
		"zzzzzzzzzzzzzz:1", "a:1:2", "a b:1", "é:1"} {
		_, err := bus.ParsePosition(in)
		require.ErrorIs(t, err, bus.ErrBadPosition, in)
	}
}

func TestParseChannel(t *testing.T) {
	c, err := bus.ParseChannel("g:room:1")
	require.NoError(t, err)
	require.Equal(t, bus.Channel{Name: "room:1"}, c)
	c, err = bus.ParseChannel("u:房间")
	require.NoError(t, err)
	require.Equal(t, bus.Channel{UID: true, Name: "房间"}, c)
	require.Equal(t, "u:房间", c.String())
	s, _ := bus.NewSubjects("t.gw")
	require.Equal(t, "t.gw.h.u.~5oi_6Ze0", c.Stored(s))
	require.Equal(t, "t.gw.hr.u.~5oi_6Ze0", c.Live(s))
	require.Equal(t, "HISTORY_t_gw", s.HistoryStream())
	for _, in := range []string{"", "u:", "x:a", "u", "g" + string(make([]byte, 300))} {
		_, err := bus.ParseChannel(in)
		require.ErrorIs(t, err, bus.ErrBadChannel, in)
	}
}

// TestResume pins the position rules: replay only when the epoch is the
// stream's and the stream still holds everything after the position.
func TestResume(t *testing.T) {
	h := bus.HistoryInfo{Epoch: "e1", FirstSeq: 10, LastSeq: 20}
	for _, tc := range []struct {
		p    bus.Position
		from uint64
		ok   bool
	}{
		{bus.Position{Epoch: "e1", Seq: 9}, 10, true},  // the next one is the first held
		{bus.Position{Epoch: "e1", Seq: 15}, 16, true}, // in the middle
		{bus.Position{Epoch: "e1", Seq: 20}, 21, true}, // up to date: nothing to replay
		{bus.Position{Epoch: "e1", Seq: 8}, 0, false},  // 9 is gone
		{bus.Position{Epoch: "e1", Seq: 21}, 0, false}, // from the future
		{bus.Position{Epoch: "e0", Seq: 15}, 0, false}, // the stream was recreated
	} {
		from, ok := h.Resume(tc.p)
		require.Equal(t, tc.ok, ok, tc.p)
		require.Equal(t, tc.from, from, tc.p)
	}
	// A stream that never held anything, and one whose messages all expired.
	_, ok := bus.HistoryInfo{Epoch: "e", FirstSeq: 0, LastSeq: 0}.Resume(bus.Position{Epoch: "e"})
	require.True(t, ok)
	_, ok = bus.HistoryInfo{Epoch: "e", FirstSeq: 6, LastSeq: 5}.Resume(bus.Position{Epoch: "e", Seq: 5})
	require.True(t, ok)
	_, ok = bus.HistoryInfo{Epoch: "e", FirstSeq: 6, LastSeq: 5}.Resume(bus.Position{Epoch: "e", Seq: 4})
	require.False(t, ok)
}

func TestHistoryConfigCheck(t *testing.T) {
	require.NoError(t, bus.HistoryConfig{}.Check())
	require.Error(t, bus.HistoryConfig{Replicas: 6}.Check())
	require.Error(t, bus.HistoryConfig{Storage: "disk"}.Check())
	require.Error(t, bus.HistoryConfig{MaxAge: time.Millisecond}.Check())
	require.Error(t, bus.HistoryConfig{MaxBytes: 10}.Check())
}

// TestHistoryStoreReadLive stores pushes on two subjects, reads one back in
// batches, and sees the republished copies with their sequences and the
// previous sequence of their subject.
func TestHistoryStoreReadLive(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{JetStream: true, StoreDir: t.TempDir()})
	c := bustest.Connect(t, e, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := bus.Subjects{}
	info, err := c.EnsureHistory(ctx, s, bus.HistoryConfig{Storage: bus.StorageMemory})
	require.NoError(t, err)
	require.NotEmpty(t, info.Epoch)
	require.Zero(t, info.LastSeq)
	again, err := c.EnsureHistory(ctx, s, bus.HistoryConfig{Storage: bus.StorageMemory, MaxAge: time.Hour})
	require.NoError(t, err, "an update of the limits")
	require.Equal(t, info.Epoch, again.Epoch)

	live := make(chan bus.HistoryMsg, 1000)
	sub, err := c.SubscribeLive(s.LiveGroup("a"), func(m bus.HistoryMsg) { live <- m })
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, c.Flush(ctx))

	const n = 600 // more than two read batches
	for i := range n {
		subject := s.HistoryGroup("a")
		if i%3 == 2 {
			subject = s.HistoryGroup("b")
		}
		seq, err := c.PublishRecoverable(ctx, s, subject, fmt.Appendf(nil, "m%d", i))
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), seq)
	}
	var prev uint64
	for i := range n {
		if i%3 == 2 {
			continue
		}
		m := <-live
		require.Equal(t, uint64(i+1), m.Seq)
		require.Equal(t, prev, m.Prev, "the previous sequence of the subject")
		require.Equal(t, fmt.Sprintf("m%d", i), string(m.Data))
		prev = m.Seq
	}

	var got []uint64
	require.NoError(t, c.ReadHistory(ctx, s, s.HistoryGroup("a"), 5, 0, func(m bus.HistoryMsg) bool {
		require.Equal(t, fmt.Sprintf("m%d", m.Seq-1), string(m.Data))
		got = append(got, m.Seq)
		return true
	}))
	require.Len(t, got, n*2/3-3) // from 5 on: 5, 7, 8, 10...: seqs 1, 2, 4 are before it
	require.Equal(t, uint64(5), got[0])
	for _, seq := range got {
		require.NotZero(t, seq%3, "only subject a")
	}
	got = got[:0]
	require.NoError(t, c.ReadHistory(ctx, s, s.HistoryGroup("a"), 5, 10, func(m bus.HistoryMsg) bool {
		got = append(got, m.Seq)
		return true
	}))
	require.Equal(t, []uint64{5, 7, 8, 10}, got, "up to a sequence")
	got = got[:0]
	require.NoError(t, c.ReadHistory(ctx, s, s.HistoryGroup("none"), 1, 0, func(m bus.HistoryMsg) bool {
		got = append(got, m.Seq)
		return true
	}))
	require.Empty(t, got)

	info, err = c.HistoryInfo(ctx, s)
	require.NoError(t, err)
	require.Equal(t, bus.HistoryInfo{Epoch: again.Epoch, FirstSeq: 1, LastSeq: n}, info)
}

func TestNoHistoryWithoutJetStream(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	c := bustest.Connect(t, e, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := bus.Subjects{}
	_, err := c.EnsureHistory(ctx, s, bus.HistoryConfig{})
	require.ErrorIs(t, err, bus.ErrNoHistory)
	_, err = c.HistoryInfo(ctx, s)
	require.ErrorIs(t, err, bus.ErrNoHistory)
	_, err = c.PublishRecoverable(ctx, s, s.HistoryUID("x"), []byte("x"))
	require.ErrorIs(t, err, bus.ErrNoHistory)
}
