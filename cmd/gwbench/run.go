package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// runBench runs one load mode and prints its report: the human summary on
// stdout, or with --json the JSON object on stdout and the summary on
// stderr. It returns errCheckFailed when a check failed.
func runBench(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	rep, err := execute(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.JSON {
		rep.writeHuman(stderr)
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.writeHuman(stdout)
	}
	if !rep.OK {
		return errCheckFailed
	}
	return nil
}

// plan cuts cfg.N connections into shards: one in this process when the
// open-file limit allows, else as many child processes as needed.
func plan(cfg config, stderr io.Writer) ([]shard, error) {
	limit := int(min(raiseNoFile(), 1<<30))
	drivers := 0
	switch {
	case cfg.Mode == modeFanout || cfg.Mode == modeConns && cfg.Broadcast:
		drivers = 1
	case cfg.Mode == modeGroup:
		drivers = cfg.Senders
	}
	perProc := limit - fdReserve - drivers
	if cfg.MaxPerProc > 0 {
		perProc = min(perProc, cfg.MaxPerProc)
	}
	if perProc < 1 {
		return nil, fmt.Errorf("open-file limit %d leaves no room for connections", limit)
	}
	k := (cfg.N + perProc - 1) / perProc
	deadline := time.Now().Add(cfg.Timeout)
	shards := make([]shard, k)
	for i := range k {
		spec := shardSpec{
			Cfg: cfg, Index: i,
			Lo: i * cfg.N / k, Hi: (i + 1) * cfg.N / k,
			DialParallel: max(1, cfg.DialParallel/k),
			DialRate:     cfg.DialRate / float64(k),
			Deadline:     deadline,
		}
		if k == 1 {
			shards[i] = newShard(spec)
		} else {
			shards[i] = newChildShard(spec, stderr)
		}
	}
	return shards, nil
}

// execute runs the phases: plan, RSS before, prepare the shards, the
// driver, begin, the mode's body, end, and builds the report. It returns
// an error only when the run could not be set up; what goes wrong during
// the run is in the report.
func execute(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	shards, err := plan(cfg, stderr)
	if err != nil {
		return nil, err
	}
	rep := newReport(cfg, len(shards))
	if len(shards) > 1 {
		fmt.Fprintf(stderr, "gwbench: %d connections over %d child processes (open-file limit)\n", cfg.N, len(shards))
	}
	var rssBefore []int64
	if cfg.Mode == modeConns && len(cfg.ServerPIDs) > 0 {
		if _, rssBefore, err = readRSSAll(cfg.ServerPIDs); err != nil {
			return nil, fmt.Errorf("--server-pid: %w", err)
		}
	}

	ready, err := eachShard(shards, func(sh shard) (*shardStats, error) { return sh.prepare(ctx) })
	if err != nil {
		for _, sh := range shards {
			sh.kill()
		}
		return nil, err
	}
	var opened int64
	for _, r := range ready {
		opened += r.Opened
	}
	if opened == 0 {
		rep.fail("no connection opened")
	}
	var dr *driver
	if (cfg.Mode == modeFanout || cfg.Mode == modeGroup || cfg.Broadcast) && ctx.Err() == nil && opened > 0 {
		dr = newDriver(cfg)
		if err := dr.prepare(ctx); err != nil {
			rep.fail("the driver could not connect: %v", err)
		}
	}

	var active time.Duration
	var rssAfter []int64
	if ctx.Err() == nil && !rep.failed() {
		for _, sh := range shards {
			if err := sh.begin(); err != nil {
				rep.fail("begin: %v", err)
			}
		}
		start := time.Now()
		switch cfg.Mode {
		case modeConns:
			sleepCtx(ctx, cfg.Hold)
			active = time.Since(start)
		case modeEcho:
			sleepCtx(ctx, cfg.Duration)
			active = time.Since(start)
		case modeFanout, modeGroup:
			active = dr.run(ctx, cfg.Duration)
		}
	}
	if cfg.Mode == modeConns && len(cfg.ServerPIDs) > 0 {
		if _, rssAfter, err = readRSSAll(cfg.ServerPIDs); err != nil {
			rep.fail("--server-pid: %v", err)
		}
	}
	if cfg.Mode == modeConns && dr != nil && ctx.Err() == nil && !rep.failed() {
		dr.broadcastOnce()
	}
	rep.interrupted(ctx)

	e := endInfo{Interrupted: ctx.Err() != nil}
	if dr != nil {
		e.Sent = dr.sent
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout(cfg))
	defer fcancel()
	results, err := eachShard(shards, func(sh shard) (*shardStats, error) { return sh.end(fctx, e) })
	if err != nil {
		rep.fail("end: %v", err)
	}
	if dr != nil {
		dr.close()
	}
	// Only now, with every shard ended, do connections close: a shard that
	// closed its own as soon as its echoes were in sent a storm of close
	// events through the servers while other shards still waited for
	// theirs (a million's echoes: NATS connections went stale, echoes were
	// lost).
	_, _ = eachShard(shards, func(sh shard) (*shardStats, error) { sh.kill(); return nil, nil })

	var rd, res shardStats
	for i := range shards {
		r := ready[i]
		if r == nil {
			r = &shardStats{}
		}
		res.merge(results[i])
		if results[i] == nil {
			// The shard's end failed: keep at least its dial errors.
			res.merge(&shardStats{Errors: r.Errors})
		}
		r.Errors = nil
		rd.merge(r)
	}
	rep.fill(cfg, &rd, &res, dr, active, rssBefore, rssAfter)
	rep.Seconds = round3(time.Since(t0).Seconds())
	return rep, nil
}

// eachShard calls fn on every shard at once and returns their stats in
// shard order, and the errors joined.
func eachShard(shards []shard, fn func(shard) (*shardStats, error)) ([]*shardStats, error) {
	out := make([]*shardStats, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = fn(sh)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
