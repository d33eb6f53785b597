package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// report is the result of one run, printed for humans or as JSON.
type report struct {
	Mode      string   `json:"mode"`
	URL       string   `json:"url"`
	Processes int      `json:"processes"`
	Sources   []string `json:"sources"`
	// Interrupted is "signal" or "deadline" when the run was cut short.
	Interrupted string `json:"interrupted,omitempty"`
	// OK is true when every check passed; Failures says which did not.
	OK          bool            `json:"ok"`
	Failures    []string        `json:"failures,omitempty"`
	Seconds     float64         `json:"seconds"`
	Connections connReport      `json:"connections"`
	Errors      errReport       `json:"errors"`
	RSS         *rssReport      `json:"rss,omitempty"`
	Sample      *sampleReport   `json:"sample,omitempty"`
	Echo        *echoReport     `json:"echo,omitempty"`
	Delivery    *deliveryReport `json:"delivery,omitempty"`
	// Client is gwbench's own memory (conns mode).
	Client *clientReport `json:"client,omitempty"`
}

// clientReport is the load tool's own VmRSS, summed over its processes at
// the end of the hold.
type clientReport struct {
	RSSKB        int64   `json:"rss_kb"`
	PerConnBytes float64 `json:"per_conn_bytes"`
}

type connReport struct {
	Wanted     int64   `json:"wanted"`
	Opened     int64   `json:"opened"`
	Failed     int64   `json:"failed"`
	JoinFailed int64   `json:"join_failed,omitempty"`
	Lost       int64   `json:"lost"`
	DialSecs   float64 `json:"dial_seconds"`
	DialPerSec float64 `json:"dial_per_second"`
	Connect    latency `json:"connect"`
}

type errReport struct {
	Total int64      `json:"total"`
	Top   []errCount `json:"top,omitempty"`
}

type rssReport struct {
	PIDs     []int   `json:"pids"`
	BeforeKB []int64 `json:"before_kb"`
	AfterKB  []int64 `json:"after_kb"`
	// DeltaKB is the sum over the pids of after - before.
	DeltaKB      int64   `json:"delta_kb"`
	PerConnBytes float64 `json:"per_conn_bytes"`
	HoldSecs     float64 `json:"hold_seconds"`
}

type sampleReport struct {
	Wanted  int64 `json:"wanted"`
	Sampled int64 `json:"sampled"`
	OK      int64 `json:"ok"`
	// Twice: answered again after their answer, which at-least-once
	// handling allows (docs/guarantees.md); reported, not a failure.
	Twice int64 `json:"twice"`
}

type echoReport struct {
	Connections  int64   `json:"connections"`
	PayloadBytes int     `json:"payload_bytes"`
	Seconds      float64 `json:"seconds"`
	RoundTrips   int64   `json:"round_trips"`
	PerSec       float64 `json:"round_trips_per_second"`
	Mismatches   int64   `json:"mismatches"`
	InFlight     int64   `json:"in_flight_at_end"`
	Latency      latency `json:"latency"`
}

type deliveryReport struct {
	Receivers  int64   `json:"receivers"`
	Groups     int     `json:"groups,omitempty"`
	Members    int     `json:"members,omitempty"`
	Senders    int     `json:"senders"`
	Rate       float64 `json:"rate"`
	Seconds    float64 `json:"seconds"`
	Sent       int64   `json:"sent"`
	SentPerSec float64 `json:"sent_per_second"`
	Expected   int64   `json:"expected"`
	Delivered  int64   `json:"delivered"`
	PerSec     float64 `json:"deliveries_per_second"`
	Loss       int64   `json:"loss"`
	Duplicates int64   `json:"duplicates"`
	Reorders   int64   `json:"reorders"`
	Wrong      int64   `json:"wrong_group"`
	Unexpected int64   `json:"unexpected"`
	Untracked  int64   `json:"untracked,omitempty"`
	Latency    latency `json:"latency"`
}

func newReport(cfg config, procs int) *report {
	r := &report{Mode: cfg.Mode, URL: cfg.URL, Processes: procs, Sources: []string{}, OK: true}
	for _, s := range cfg.Sources {
		r.Sources = append(r.Sources, s.String())
	}
	return r
}

func (r *report) fail(format string, args ...any) {
	r.OK = false
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func (r *report) failed() bool { return !r.OK }

func (r *report) interrupted(ctx context.Context) {
	switch {
	case ctx.Err() == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.Interrupted = "deadline"
	default:
		r.Interrupted = "signal"
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// fill computes the report from the merged stats of prepare (rd) and end
// (res), and runs the checks.
func (r *report) fill(cfg config, rd, res *shardStats, dr *driver, active time.Duration, rssBefore, rssAfter []int64) {
	c := &r.Connections
	c.Wanted = int64(cfg.N)
	c.Opened, c.Failed, c.JoinFailed = rd.Opened, rd.Failed, rd.JoinFailed
	c.Lost = res.Lost
	c.DialSecs = round3(time.Duration(rd.DialNanos).Seconds())
	c.DialPerSec = perSec(rd.Opened, time.Duration(rd.DialNanos))
	if rd.Dial != nil {
		c.Connect = rd.Dial.summary()
	}
	errs := res.Errors
	if dr != nil {
		if errs == nil {
			errs = map[string]int64{}
		}
		for k, v := range dr.errs.snapshot() {
			errs[k] += v
		}
		c.Lost += dr.lost.Load()
	}
	r.Errors.Total, r.Errors.Top = topErrors(errs, 5)
	if c.Failed > 0 || c.JoinFailed > 0 {
		r.fail("%d of %d connections failed to open or join", c.Failed+c.JoinFailed, c.Wanted)
	}
	if c.Lost > 0 {
		r.fail("%d connections closed during the run", c.Lost)
	}
	lat := latency{}
	if res.Latency != nil {
		lat = res.Latency.summary()
	}

	switch cfg.Mode {
	case modeConns:
		if len(cfg.ServerPIDs) > 0 && len(rssAfter) == len(rssBefore) {
			rs := &rssReport{PIDs: cfg.ServerPIDs, BeforeKB: rssBefore, AfterKB: rssAfter, HoldSecs: round3(cfg.Hold.Seconds())}
			for i := range rssBefore {
				rs.DeltaKB += rssAfter[i] - rssBefore[i]
			}
			if c.Opened > 0 {
				rs.PerConnBytes = math.Round(float64(rs.DeltaKB) * 1024 / float64(c.Opened))
			}
			r.RSS = rs
		}
		want := int64(cfg.Sample)
		if want < 0 || want > int64(cfg.N) {
			want = int64(cfg.N)
		}
		r.Sample = &sampleReport{Wanted: want, Sampled: res.Sampled, OK: res.SampleOK, Twice: res.SampleTwice}
		if res.SampleOK != want {
			r.fail("sample echo: %d of %d answered", res.SampleOK, want)
		}
		if res.ClientRSSKB > 0 && c.Opened > 0 {
			r.Client = &clientReport{RSSKB: res.ClientRSSKB, PerConnBytes: math.Round(float64(res.ClientRSSKB) * 1024 / float64(c.Opened))}
		}
		if dr != nil {
			d := &deliveryReport{
				Receivers: res.Receivers, Senders: 1, Sent: dr.totalSent(),
				Expected: res.Expected, Delivered: res.Delivered, Loss: res.Expected - res.Delivered,
				Duplicates: res.Duplicates, Unexpected: res.Unexpected, Latency: lat,
			}
			r.Delivery = d
			switch {
			case d.Sent == 0:
				r.fail("the broadcast was not sent")
			case d.Loss != 0 || d.Duplicates != 0 || d.Unexpected != 0:
				r.fail("broadcast: %d missing, %d duplicates, %d unexpected", d.Loss, d.Duplicates, d.Unexpected)
			}
		}
	case modeEcho:
		r.Echo = &echoReport{
			Connections: c.Opened, PayloadBytes: cfg.Size, Seconds: round3(active.Seconds()),
			RoundTrips: res.RoundTrips, PerSec: perSec(res.RoundTrips, active),
			Mismatches: res.Mismatches, InFlight: res.InFlight, Latency: lat,
		}
		if res.RoundTrips == 0 {
			r.fail("no round trip completed")
		}
		if res.Mismatches > 0 {
			r.fail("%d frames were not the echo", res.Mismatches)
		}
	case modeFanout, modeGroup:
		d := &deliveryReport{
			Receivers: res.Receivers, Rate: cfg.Rate, Seconds: round3(active.Seconds()),
			Expected: res.Expected, Delivered: res.Delivered, PerSec: perSec(res.Delivered, active),
			Loss: res.Expected - res.Delivered, Duplicates: res.Duplicates, Reorders: res.Reorders,
			Wrong: res.Wrong, Unexpected: res.Unexpected, Untracked: res.Untracked, Latency: lat,
		}
		if dr != nil {
			d.Senders = len(dr.conns)
			d.Sent = dr.totalSent()
			d.SentPerSec = perSec(d.Sent, active)
		}
		if cfg.Mode == modeGroup {
			d.Groups, d.Members = cfg.Groups, cfg.Members
		}
		r.Delivery = d
		switch {
		case d.Sent == 0:
			r.fail("nothing was sent")
		case d.Loss != 0 || d.Duplicates != 0 || d.Reorders != 0 || d.Wrong != 0 || d.Unexpected != 0:
			r.fail("delivery: loss %d, duplicates %d, reorders %d, wrong group %d, unexpected %d",
				d.Loss, d.Duplicates, d.Reorders, d.Wrong, d.Unexpected)
		}
	}
	if r.Interrupted != "" {
		r.fail("interrupted by %s", r.Interrupted)
	}
}

func ms(v float64) string { return fmt.Sprintf("%.3fms", v) }

func (l latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, n=%d)",
		ms(l.P50Ms), ms(l.P90Ms), ms(l.P99Ms), ms(l.P999Ms), ms(l.MaxMs), ms(l.MeanMs), l.Count)
}

// writeHuman prints the summary.
func (r *report) writeHuman(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	src := "kernel default"
	if len(r.Sources) > 0 {
		src = fmt.Sprintf("%d sources %s", len(r.Sources), r.Sources[0])
		if len(r.Sources) > 1 {
			src += "..." + r.Sources[len(r.Sources)-1]
		}
	}
	p("gwbench %s %s  (%d process(es), %s, %.1fs)", r.Mode, r.URL, r.Processes, src, r.Seconds)
	c := r.Connections
	p("connections: %d of %d opened, %d failed, %d lost; dialled in %.3fs (%.0f/s); connect %s",
		c.Opened, c.Wanted, c.Failed+c.JoinFailed, c.Lost, c.DialSecs, c.DialPerSec, c.Connect)
	if rs := r.RSS; rs != nil {
		before, after := sum(rs.BeforeKB), sum(rs.AfterKB)
		p("server RSS (pids %v): %d KiB before, %d KiB after %.1fs hold: +%d KiB = %.0f bytes per connection",
			rs.PIDs, before, after, rs.HoldSecs, rs.DeltaKB, rs.PerConnBytes)
	} else if r.Mode == modeConns {
		p("server RSS: not measured (no --server-pid)")
	}
	if s := r.Sample; s != nil {
		p("sample echo: %d of %d ok (%d sampled), %d answered twice (events are handled at least once)", s.OK, s.Wanted, s.Sampled, s.Twice)
	}
	if e := r.Echo; e != nil {
		p("echo: %d connections x %d bytes for %.2fs: %d round trips = %.0f/s", e.Connections, e.PayloadBytes, e.Seconds, e.RoundTrips, e.PerSec)
		p("round trip: %s", e.Latency)
		p("mismatches %d, in flight at end %d", e.Mismatches, e.InFlight)
	}
	if cl := r.Client; cl != nil {
		p("gwbench RSS: %d KiB in all = %.0f bytes per connection", cl.RSSKB, cl.PerConnBytes)
	}
	if d := r.Delivery; d != nil && r.Mode == modeConns {
		p("broadcast: 1 sent, %d of %d connections got it, the last %s after the send (p50 %s, p99 %s)",
			d.Delivered, d.Expected, ms(d.Latency.MaxMs), ms(d.Latency.P50Ms), ms(d.Latency.P99Ms))
		p("missing %d, duplicates %d, unexpected %d", d.Loss, d.Duplicates, d.Unexpected)
	} else if d != nil {
		if r.Mode == modeGroup {
			p("groups: %d x %d members, %d senders; sent %d in %.2fs (%.1f/s, target %.1f/s)", d.Groups, d.Members, d.Senders, d.Sent, d.Seconds, d.SentPerSec, d.Rate)
		} else {
			p("fanout: %d receivers; sent %d broadcasts in %.2fs (%.1f/s, target %.1f/s)", d.Receivers, d.Sent, d.Seconds, d.SentPerSec, d.Rate)
		}
		p("deliveries: %d of %d expected = %.0f/s", d.Delivered, d.Expected, d.PerSec)
		p("send->receive: %s", d.Latency)
		p("loss %d, duplicates %d, reorders %d, wrong group %d, unexpected %d", d.Loss, d.Duplicates, d.Reorders, d.Wrong, d.Unexpected)
	}
	if r.Errors.Total == 0 {
		p("errors: none")
	} else {
		p("errors: %d, top %d:", r.Errors.Total, len(r.Errors.Top))
		for _, e := range r.Errors.Top {
			p("  %7d  %s", e.Count, e.Error)
		}
	}
	if r.Interrupted != "" {
		p("interrupted by %s: the numbers above cover what ran", r.Interrupted)
	}
	if r.OK {
		p("result: OK")
	} else {
		p("result: FAILED: %s", strings.Join(r.Failures, "; "))
	}
}

func sum(v []int64) int64 {
	var s int64
	for _, x := range v {
		s += x
	}
	return s
}
