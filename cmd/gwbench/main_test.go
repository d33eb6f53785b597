package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain runs main instead of the tests when this binary is started as
// a child process of a split run (the parent re-executes os.Executable).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// startRef starts the reference server in-process on a random loopback
// port and returns its ws:// URL; it stops at the end of the test.
func startRef(t *testing.T, cfg refConfig) (string, *refServer) {
	t.Helper()
	ln := listenLoopback(t)
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	s := newRefServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "ws://" + ln.Addr().String() + "/", s
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// bench parses args for mode like the command line does and runs it.
func bench(t *testing.T, mode string, args ...string) *report {
	t.Helper()
	cfg, child, err := parseMode(mode, args, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Nil(t, child)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	rep, err := execute(ctx, cfg, os.Stderr)
	require.NoError(t, err)
	if !rep.OK {
		var b bytes.Buffer
		rep.writeHuman(&b)
		t.Logf("report:\n%s", b.String())
	}
	return rep
}

func TestEcho(t *testing.T) {
	url, _ := startRef(t, refConfig{})
	rep := bench(t, modeEcho, "--url", url, "-c", "10", "--duration", "300ms", "--size", "100")
	require.True(t, rep.OK, rep.Failures)
	require.Equal(t, int64(10), rep.Connections.Opened)
	require.Zero(t, rep.Connections.Failed)
	require.Equal(t, 1, rep.Processes)
	require.Len(t, rep.Sources, 8)
	e := rep.Echo
	require.NotNil(t, e)
	require.Positive(t, e.RoundTrips)
	require.Positive(t, e.PerSec)
	require.Zero(t, e.Mismatches)
	require.Equal(t, e.RoundTrips, e.Latency.Count)
	require.Positive(t, e.Latency.P50Ms)
	require.LessOrEqual(t, e.Latency.P50Ms, e.Latency.P99Ms)
	require.LessOrEqual(t, e.Latency.P99Ms, e.Latency.MaxMs)
}

func TestFanout(t *testing.T) {
	url, _ := startRef(t, refConfig{})
	rep := bench(t, modeFanout, "--url", url, "-n", "50", "--rate", "20", "--duration", "500ms", "--drain", "5s")
	require.True(t, rep.OK, rep.Failures)
	d := rep.Delivery
	require.NotNil(t, d)
	require.Equal(t, int64(50), d.Receivers)
	require.Equal(t, int64(10), d.Sent) // 20/s for 0.5 s, the first at 0
	require.Equal(t, 50*d.Sent, d.Expected)
	require.Equal(t, d.Expected, d.Delivered)
	require.Zero(t, d.Loss)
	require.Zero(t, d.Duplicates)
	require.Zero(t, d.Reorders)
	require.Zero(t, d.Unexpected)
	require.Equal(t, d.Delivered, d.Latency.Count)
	require.Zero(t, rep.Connections.Lost)
}

func TestGroup(t *testing.T) {
	url, srv := startRef(t, refConfig{})
	rep := bench(t, modeGroup, "--url", url, "--groups", "5", "--members", "4", "--rate", "100", "--duration", "500ms", "--drain", "5s")
	require.True(t, rep.OK, rep.Failures)
	d := rep.Delivery
	require.NotNil(t, d)
	require.Equal(t, int64(20), d.Receivers)
	require.Equal(t, 5, d.Senders)
	require.Equal(t, int64(50), d.Sent) // 100/s for 0.5 s, 10 per group
	require.Equal(t, 4*d.Sent, d.Expected)
	require.Equal(t, d.Expected, d.Delivered)
	require.Zero(t, d.Loss)
	require.Zero(t, d.Wrong)
	require.Zero(t, d.Duplicates)
	require.Zero(t, d.Reorders)
	require.Zero(t, rep.Connections.Lost)
	// Every member has left: the hub forgot the groups.
	waitFor(t, 5*time.Second, func() bool {
		srv.mu.RLock()
		defer srv.mu.RUnlock()
		return len(srv.grps) == 0 && len(srv.all) == 0
	})
}

func TestConns(t *testing.T) {
	url, _ := startRef(t, refConfig{})
	pid := strconv.Itoa(os.Getpid())
	rep := bench(t, modeConns, "--url", url, "-n", "200", "--hold", "100ms", "--server-pid", pid)
	require.True(t, rep.OK, rep.Failures)
	require.Equal(t, int64(200), rep.Connections.Opened)
	rs := rep.RSS
	require.NotNil(t, rs)
	require.Equal(t, []int{os.Getpid()}, rs.PIDs)
	require.Positive(t, rs.BeforeKB[0])
	require.Positive(t, rs.AfterKB[0])
	require.Equal(t, rs.AfterKB[0]-rs.BeforeKB[0], rs.DeltaKB)
	require.InDelta(t, float64(rs.DeltaKB)*1024/200, rs.PerConnBytes, 1)
	s := rep.Sample
	require.Equal(t, sampleReport{Wanted: 100, Sampled: 100, OK: 100}, *s)
	require.NotNil(t, rep.Client)
	require.Positive(t, rep.Client.RSSKB)
	require.Nil(t, rep.Delivery, "no --broadcast")
}

// TestConnsBroadcast spreads connections over a URL list, sends one
// broadcast and checks every connection got it once, then echoes on all of
// them; connections on a second server (the reference server's a: reaches
// its own clients only) count as missing.
func TestConnsBroadcast(t *testing.T) {
	url1, _ := startRef(t, refConfig{})
	rep := bench(t, modeConns, "--url", url1+","+url1, "-n", "300", "--hold", "50ms", "--broadcast", "--drain", "10s", "--sample", "-1")
	require.True(t, rep.OK, rep.Failures)
	require.Equal(t, int64(300), rep.Connections.Opened)
	d := rep.Delivery
	require.NotNil(t, d)
	require.Equal(t, int64(1), d.Sent)
	require.Equal(t, int64(300), d.Expected)
	require.Equal(t, int64(300), d.Delivered)
	require.Equal(t, int64(300), d.Latency.Count)
	require.Zero(t, d.Loss+d.Duplicates+d.Unexpected)
	require.Equal(t, sampleReport{Wanted: 300, Sampled: 300, OK: 300}, *rep.Sample)

	t.Run("clients of another server miss it", func(t *testing.T) {
		url2, _ := startRef(t, refConfig{})
		rep := bench(t, modeConns, "--url", url2+","+url1, "-n", "40", "--hold", "50ms", "--broadcast", "--drain", "300ms")
		require.False(t, rep.OK)
		require.Equal(t, int64(20), rep.Delivery.Loss, "the second server's clients get nothing")
	})
}

// TestSplit forces three child processes (this test binary, re-executed)
// with a budget of 50 connections per process, and checks the merge.
func TestSplit(t *testing.T) {
	url, srv := startRef(t, refConfig{})
	t.Run("conns", func(t *testing.T) {
		rep := bench(t, modeConns, "--url", url, "-n", "120", "--hold", "50ms", "--max-per-proc", "50", "--sample", "-1")
		require.True(t, rep.OK, rep.Failures)
		require.Equal(t, 3, rep.Processes)
		require.Equal(t, int64(120), rep.Connections.Opened)
		require.Equal(t, int64(120), rep.Connections.Connect.Count)
		require.Equal(t, sampleReport{Wanted: 120, Sampled: 120, OK: 120}, *rep.Sample)
	})
	t.Run("fanout", func(t *testing.T) {
		rep := bench(t, modeFanout, "--url", url, "-n", "120", "--rate", "20", "--duration", "300ms", "--drain", "5s", "--max-per-proc", "50")
		require.True(t, rep.OK, rep.Failures)
		require.Equal(t, 3, rep.Processes)
		d := rep.Delivery
		require.Equal(t, int64(120), d.Receivers)
		require.Equal(t, int64(6), d.Sent)
		require.Equal(t, 120*d.Sent, d.Delivered)
		require.Equal(t, d.Delivered, d.Latency.Count)
		require.Zero(t, d.Loss+d.Duplicates+d.Reorders+d.Unexpected)
	})
	t.Run("group", func(t *testing.T) {
		rep := bench(t, modeGroup, "--url", url, "--groups", "6", "--members", "20", "--rate", "60", "--duration", "300ms", "--drain", "5s", "--max-per-proc", "50")
		require.True(t, rep.OK, rep.Failures)
		require.Equal(t, 3, rep.Processes)
		d := rep.Delivery
		require.Equal(t, int64(120), d.Receivers)
		require.Equal(t, int64(18), d.Sent)
		require.Equal(t, 20*d.Sent, d.Delivered)
		require.Zero(t, d.Loss+d.Duplicates+d.Reorders+d.Wrong+d.Unexpected)
	})
	waitFor(t, 5*time.Second, func() bool {
		srv.mu.RLock()
		defer srv.mu.RUnlock()
		return len(srv.all) == 0
	})
}

// TestJSONOutput runs the command line with --json: one JSON object on
// stdout, exit status 0.
func TestJSONOutput(t *testing.T) {
	url, _ := startRef(t, refConfig{})
	var stdout, stderr bytes.Buffer
	err := dispatch(context.Background(), []string{"echo", "--url", url, "-c", "3", "--duration", "200ms", "--json"}, &stdout, &stderr)
	require.NoError(t, err)
	var rep report
	dec := json.NewDecoder(&stdout)
	require.NoError(t, dec.Decode(&rep))
	require.False(t, dec.More())
	require.True(t, rep.OK)
	require.Equal(t, modeEcho, rep.Mode)
	require.Positive(t, rep.Echo.RoundTrips)
	require.Contains(t, stderr.String(), "result: OK")
}

// TestFailures checks that what goes wrong is reported, not hidden: a
// refused port fails every dial, with one error line for all of them.
func TestFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	rep := bench(t, modeEcho, "--url", "ws://"+addr+"/", "-c", "20", "--duration", "100ms")
	require.False(t, rep.OK)
	require.Equal(t, int64(20), rep.Connections.Failed)
	require.Equal(t, int64(20), rep.Errors.Total)
	require.Len(t, rep.Errors.Top, 1)
	require.Contains(t, rep.Errors.Top[0].Error, "connection refused")

	_, _, err = parseMode(modeEcho, []string{"--url", "ws://192.0.2.1:7272/"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "loopback")
	var out bytes.Buffer
	require.ErrorIs(t, dispatch(context.Background(), []string{"nope"}, &out, io.Discard), errUnknownMode)
}

// waitFor polls f until it is true or d has passed.
func waitFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
