package main

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistBuckets(t *testing.T) {
	// Every value falls into a bucket whose range holds it, buckets are
	// contiguous, and a bucket is at most 1/256 of its values wide.
	prevHigh := int64(-1)
	for idx := range histBuckets {
		high := histHigh(idx)
		require.Greater(t, high, prevHigh, "bucket %d", idx)
		low := prevHigh + 1
		require.Equal(t, idx, histIndex(low), "low of %d", idx)
		require.Equal(t, idx, histIndex(high), "high of %d", idx)
		if low >= 2*histSub {
			require.LessOrEqual(t, float64(high-low+1)/float64(low), 1.0/histSub)
		}
		prevHigh = high
		if high < 0 { // overflowed past int64: the last bucket
			break
		}
	}
	require.Equal(t, histBuckets-1, histIndex(1<<63-1))
}

func TestHistPercentiles(t *testing.T) {
	h := newHist()
	for v := 1; v <= 100; v++ {
		h.record(time.Duration(v)) // exact below 512 ns
	}
	require.Equal(t, time.Duration(50), h.percentile(50))
	require.Equal(t, time.Duration(99), h.percentile(99))
	require.Equal(t, time.Duration(100), h.percentile(99.9))
	require.Equal(t, time.Duration(100), h.percentile(100))
	require.Equal(t, time.Duration(1), h.percentile(0))

	// Against an exact sorted sample: within 0.4%.
	r := rand.New(rand.NewPCG(1, 2))
	h = newHist()
	vals := make([]int64, 20000)
	for i := range vals {
		vals[i] = int64(r.ExpFloat64() * 1e6)
		h.record(time.Duration(vals[i]))
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{50, 90, 99, 99.9} {
		exact := vals[int(math.Ceil(q/100*float64(len(vals))))-1] // the same rank as percentile
		got := int64(h.percentile(q))
		require.InEpsilon(t, float64(exact), float64(got), 0.005, "p%v", q)
	}
	require.Equal(t, time.Duration(vals[len(vals)-1]), h.percentile(100))
}

func TestHistMergeJSON(t *testing.T) {
	a, b := newHist(), newHist()
	for i := range 1000 {
		a.record(time.Duration(i) * time.Microsecond)
		b.record(time.Duration(i) * time.Millisecond)
	}
	both := newHist()
	for _, h := range []*hist{a, b} {
		raw, err := json.Marshal(h)
		require.NoError(t, err)
		var back hist
		require.NoError(t, json.Unmarshal(raw, &back))
		both.merge(&back)
	}
	require.Equal(t, int64(2000), both.count())
	require.Equal(t, time.Duration(0), both.percentile(0))
	require.Equal(t, 999*time.Millisecond, both.percentile(100))
	require.InEpsilon(t, float64(999*time.Microsecond), float64(both.percentile(50)), 0.005)
	s := both.summary()
	require.Equal(t, int64(2000), s.Count)
	require.Equal(t, 999.0, s.MaxMs)
	require.Equal(t, latency{}, newHist().summary())
}

func TestParseFields(t *testing.T) {
	var f [3]int64
	for _, tc := range []struct {
		in   string
		n    int
		ok   bool
		want []int64
	}{
		{"12:1700000000000000000", 2, true, []int64{12, 1700000000000000000}},
		{"3:12:9223372036854775807", 3, true, []int64{3, 12, 9223372036854775807}},
		{"3:12:9223372036854775808", 3, false, nil},
		{"12:34", 3, false, nil},
		{"1:2:3", 2, false, nil},
		{"12:", 2, false, nil},
		{":12", 2, false, nil},
		{"1a:2", 2, false, nil},
		{"", 2, false, nil},
		{"ok", 2, false, nil},
		{"-1:2", 2, false, nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ok := parseFields([]byte(tc.in), f[:tc.n])
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, f[:tc.n])
			}
		})
	}
}

func TestSeqTracker(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		seqs                        []int64
		unique, dups, reorders, bad int64
	}{
		{"in order", []int64{1, 2, 3, 4}, 4, 0, 0, 0},
		{"duplicate", []int64{1, 2, 2, 3, 1}, 3, 2, 0, 0},
		{"reorder", []int64{1, 3, 2, 4}, 4, 0, 1, 0},
		{"gap never filled", []int64{1, 4, 5}, 3, 0, 0, 0},
		{"late then duplicate", []int64{2, 1, 1}, 2, 1, 1, 0},
		{"zero is not a sequence number", []int64{0, 1}, 1, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range tc.seqs {
				tr.observe(s)
			}
			require.Equal(t, tc.unique, tr.unique.Load())
			require.Equal(t, tc.dups, tr.dups)
			require.Equal(t, tc.reorders, tr.reorders)
			require.Equal(t, tc.bad, tr.unexpect)
		})
	}
	var tr seqTracker
	tr.observe(maxMissing + 10)
	require.Equal(t, int64(9), tr.untracked)
	require.Len(t, tr.missing, maxMissing)
}

func TestSources(t *testing.T) {
	const url = "ws://127.0.0.1:7272/"
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		spec, base string
		want       []netip.Addr
		err        bool
	}{
		{"127.0.1.1-127.0.1.3", "", addrs("127.0.1.1", "127.0.1.2", "127.0.1.3"), false},
		{"127.0.1.7-8", "", addrs("127.0.1.7", "127.0.1.8"), false},
		{"127.0.1.1,127.0.2.1", "", addrs("127.0.1.1", "127.0.2.1"), false},
		{"3", "127.5.0.254", addrs("127.5.0.254", "127.5.0.255", "127.5.1.0"), false},
		{"none", "", nil, false},
		{"2", "127.255.255.255", nil, true},
		{"10.0.0.1", "", nil, true},
		{"127.0.1.5-127.0.1.1", "", nil, true},
		{"0", "", nil, true},
		{"2", "10.1.1.1", nil, true},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveSources(url, tc.spec, tc.base)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	// A count without a base starts at a random 127.x.y.1, never 127.0.0.x.
	seen := map[netip.Addr]bool{}
	for range 20 {
		got, err := resolveSources(url, "4", "")
		require.NoError(t, err)
		require.Len(t, got, 4)
		b := got[0].As4()
		require.Equal(t, byte(127), b[0])
		require.NotZero(t, b[1])
		require.Equal(t, byte(1), b[3])
		seen[got[0]] = true
	}
	require.Greater(t, len(seen), 1)
	got, err := resolveSources("ws://[::1]:7272/", "8", "")
	require.NoError(t, err)
	require.Empty(t, got)
	require.Equal(t, "127.0.1.1-127.0.1.3", sourceRange(addrs("127.0.1.2", "127.0.1.1", "127.0.1.3")))
}

func TestErrCounts(t *testing.T) {
	var e errCounts
	for port := range 50 {
		e.add("dial", errors.New("dial tcp 127.0.1."+strconv.Itoa(port%8)+":"+strconv.Itoa(40000+port)+"->127.0.0.1:7300: connect: connection refused"))
	}
	for range 3 {
		e.add("read", errors.New("websocket: close 1006 (abnormal closure): unexpected EOF"))
	}
	e.add("dial", errors.New("dial tcp [::1]:1234: i/o timeout"))
	total, top := topErrors(e.snapshot(), 2)
	require.Equal(t, int64(54), total)
	require.Equal(t, []errCount{
		{"dial: dial tcp ADDR->ADDR: connect: connection refused", 50},
		{"read: websocket: close 1006 (abnormal closure): unexpected EOF", 3},
	}, top)
}

func TestReadRSS(t *testing.T) {
	kb, err := readRSS(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, kb)
	_, err = readRSS(1 << 30)
	require.Error(t, err)
	sum, each, err := readRSSAll([]int{os.Getpid(), os.Getpid()})
	require.NoError(t, err)
	require.Len(t, each, 2)
	require.Equal(t, each[0]+each[1], sum)
	pids, err := parsePIDs("12, 34,")
	require.NoError(t, err)
	require.Equal(t, []int{12, 34}, pids)
	_, err = parsePIDs("12,x")
	require.Error(t, err)
}

func TestShardStatsMerge(t *testing.T) {
	a := &shardStats{Opened: 2, DialNanos: 5, Errors: map[string]int64{"x": 1}, Latency: newHist()}
	a.Latency.record(time.Millisecond)
	b := &shardStats{Opened: 3, DialNanos: 9, Errors: map[string]int64{"x": 2, "y": 1}, Delivered: 7}
	var m shardStats
	m.merge(a)
	m.merge(b)
	m.merge(nil)
	require.Equal(t, int64(5), m.Opened)
	require.Equal(t, int64(9), m.DialNanos)
	require.Equal(t, map[string]int64{"x": 3, "y": 1}, m.Errors)
	require.Equal(t, int64(7), m.Delivered)
	require.Equal(t, int64(1), m.Latency.count())
	// The wire form carries everything.
	raw, err := json.Marshal(wireMsg{Type: msgResult, Stats: &m})
	require.NoError(t, err)
	var back wireMsg
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, int64(1), back.Stats.Latency.count())
	require.Equal(t, m.Errors, back.Stats.Errors)
}

func TestPace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	require.True(t, pace(ctx, time.Now(), 1_000_000, 0), "no rate: at once")
	require.True(t, pace(ctx, time.Now().Add(-time.Hour), 10, 1), "late: at once")
	cancel()
	require.False(t, pace(ctx, time.Now(), 10, 1), "ended before its turn")
}

// TestSampleEchoAnsweredTwice: a connection's sample echo that comes back
// again after its answer (at-least-once handling ran its batch twice) is
// counted as such, not as an unexpected message; an echo of another
// connection's index, or one nobody waits for, still is unexpected.
func TestSampleEchoAnsweredTwice(t *testing.T) {
	s := &leanShard{echoDone: make(chan struct{}, 1), bcastPrefix: []byte("bcast-")}
	c := &leanConn{idx: 7}
	h := leanHandler{s: s, c: c}

	h.message(opText, []byte(samplePrefix+"7"))
	require.Equal(t, int64(1), s.unexpect.Load(), "an echo nobody waits for")
	c.echo.Store(echoWaiting)
	h.message(opText, []byte(samplePrefix+"8"))
	h.message(opText, []byte(samplePrefix+"7"))
	h.message(opText, []byte(samplePrefix+"7"))
	h.message(opText, []byte("other"))
	require.Equal(t, int64(1), s.sampleOK.Load())
	require.Equal(t, int64(1), s.sampleTwice.Load())
	require.Equal(t, int64(3), s.unexpect.Load(), "another index and an unknown message")
}
