package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gatewayworker/gatewayworker/worker"
)

// The probe app is for fault tests (integration/): it appends a line when
// each handler starts ("b") and ends ("e") to the file named by
// probeLogEnv, so that a test can count, across worker processes, events
// handled twice, handlers of one client that overlapped, and events after
// a client's close. OnMessage sleeps probeDelayEnv (a Go duration, default
// none) to overload workers, OnConnect probeConnectDelayEnv (a connect
// storm against slow workers). Lines are single O_APPEND writes, so the
// file's order is the order the handlers ran in.
const (
	probeLogEnv          = "GATEWAYWORKER_PROBE_LOG"
	probeDelayEnv        = "GATEWAYWORKER_PROBE_DELAY"
	probeConnectDelayEnv = "GATEWAYWORKER_PROBE_CONNECT_DELAY"
)

func probeHandlers() worker.Handlers {
	var delay, connectDelay time.Duration
	if d, err := time.ParseDuration(os.Getenv(probeDelayEnv)); err == nil {
		delay = d
	}
	if d, err := time.ParseDuration(os.Getenv(probeConnectDelayEnv)); err == nil {
		connectDelay = d
	}
	f, err := os.OpenFile(os.Getenv(probeLogEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		// No log to write: every handler fails, and the worker logs why.
		return worker.Handlers{OnMessage: func(context.Context, *worker.Client, worker.MessageEvent) error {
			return fmt.Errorf("probe: %s: %w", probeLogEnv, err)
		}}
	}
	record := func(c *worker.Client, kind, detail string, run func()) error {
		_, err := f.WriteString("b " + c.ID() + " " + kind + " " + strconv.Quote(detail) + "\n")
		if run != nil {
			run()
		}
		if _, err2 := f.WriteString("e " + c.ID() + " " + kind + " " + strconv.Quote(detail) + "\n"); err == nil {
			err = err2
		}
		return err
	}
	return worker.Handlers{
		OnConnect: func(_ context.Context, c *worker.Client) error {
			return record(c, "connect", "", func() { time.Sleep(connectDelay) })
		},
		OnMessage: func(_ context.Context, c *worker.Client, e worker.MessageEvent) error {
			return record(c, "message", string(e.Data), func() { time.Sleep(delay) })
		},
		OnClose: func(_ context.Context, c *worker.Client, e worker.CloseEvent) error {
			return record(c, "close", e.Reason.String(), nil)
		},
	}
}
