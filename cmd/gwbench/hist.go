package main

import (
	"encoding/json"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, like HdrHistogram with 2-3 significant
// digits: values below 2*histSub are exact, and every power of two above
// is cut into histSub buckets, so a bucket's width is at most 1/histSub
// (0.4%) of its values. It covers every non-negative int64.
const (
	histSubBits = 8
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

// hist records latencies in nanoseconds. record is lock-free and safe for
// any number of goroutines; merge sums counts, so shards in several
// processes merge without loss of precision.
type hist struct {
	counts [histBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64
	max    atomic.Int64
}

func newHist() *hist {
	h := &hist{}
	h.min.Store(math.MaxInt64)
	return h
}

func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (histSubBits + 1)
	return shift<<histSubBits + int(v>>shift)
}

// histHigh is the highest value that falls into bucket idx.
func histHigh(idx int) int64 {
	if idx < 2*histSub {
		return int64(idx)
	}
	shift := idx>>histSubBits - 1
	m := int64(idx - shift<<histSubBits)
	return (m+1)<<shift - 1
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
}

func (h *hist) count() int64 { return h.n.Load() }

// merge adds o's counts to h. o must not be recorded into meanwhile.
func (h *hist) merge(o *hist) {
	if o == nil || o.n.Load() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if v := o.max.Load(); v > h.max.Load() {
		h.max.Store(v)
	}
	if v := o.min.Load(); v < h.min.Load() {
		h.min.Store(v)
	}
}

// percentile returns the value below or at which q percent of the
// recorded values fall (the upper edge of its bucket, at most the maximum).
func (h *hist) percentile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q / 100 * float64(n)))
	rank = max(1, min(rank, n))
	var cum int64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			v := min(histHigh(i), h.max.Load())
			return time.Duration(max(v, h.min.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// histJSON is the wire form of a hist: the non-empty buckets only.
type histJSON struct {
	N       int64      `json:"n"`
	Sum     int64      `json:"sum"`
	Min     int64      `json:"min"`
	Max     int64      `json:"max"`
	Buckets [][2]int64 `json:"b,omitempty"`
}

func (h *hist) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n.Load(), Sum: h.sum.Load(), Min: h.min.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			j.Buckets = append(j.Buckets, [2]int64{int64(i), c})
		}
	}
	return json.Marshal(j)
}

func (h *hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = hist{}
	h.n.Store(j.N)
	h.sum.Store(j.Sum)
	h.min.Store(j.Min)
	h.max.Store(j.Max)
	for _, bc := range j.Buckets {
		if bc[0] >= 0 && bc[0] < histBuckets {
			h.counts[bc[0]].Store(bc[1])
		}
	}
	return nil
}

// latency is a histogram summary for reports, in milliseconds.
type latency struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func (h *hist) summary() latency {
	n := h.n.Load()
	if n == 0 {
		return latency{}
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return latency{
		Count:  n,
		MinMs:  ms(time.Duration(h.min.Load())),
		MeanMs: ms(time.Duration(h.sum.Load() / n)),
		P50Ms:  ms(h.percentile(50)),
		P90Ms:  ms(h.percentile(90)),
		P99Ms:  ms(h.percentile(99)),
		P999Ms: ms(h.percentile(99.9)),
		MaxMs:  ms(time.Duration(h.max.Load())),
	}
}
