// Command gwbench is the load tool of the bench protocol (docs/architecture.md,
// "The bench protocol"). It drives any WebSocket server that speaks the protocol, so
// gatewayworker and its peers are measured with the same load:
//
//	gwbench conns  -n 5000 --server-pid 1234   idle connections, server RSS per connection
//	               [--broadcast]               then one a: broadcast that every connection must get once
//	gwbench echo   -c 100 --size 64            closed-loop echo: round trips/s, latency
//	gwbench fanout -n 1000 --rate 100          one broadcaster, every receiver checks every message
//	gwbench group  --groups 100 --members 10   group sends, members check their own group only
//	gwbench refserver --addr 127.0.0.1:7300    the reference server (gorilla/websocket, in-memory hub)
//
// Every load mode is bounded by --duration and its counts, connects from
// several 127.x.y.z source addresses to one server or a comma list of them, splits itself into child processes
// when the open-file limit is too small, prints a human summary, and with
// --json one JSON object on stdout. Ctrl-C stops a run early and still
// prints what was measured. Targets must be loopback addresses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `gwbench: load tool for WebSocket servers speaking the bench protocol.

Usage:
  gwbench conns  [flags]   open -n idle connections, hold them, report the server's RSS per connection
                           (and --broadcast: one a: to all, each must get it once); lean: ~1 KB each
  gwbench echo   [flags]   -c closed-loop connections echoing --size bytes: round trips/s and latency
  gwbench fanout [flags]   -n receivers, one broadcaster at --rate/s: loss, order, latency
  gwbench group  [flags]   --groups x --members, senders at --rate/s total: loss, order, wrong group
  gwbench refserver [flags]  the reference server (goroutine per connection, gorilla/websocket)
  gwbench <mode> --help    the flags of a mode

Bench protocol (text frames): a:<p> sends <p> to all; j:<g> joins group <g> and replies "ok";
g:<g>:<p> sends <p> to group <g>; anything else is echoed.

Exit status: 0 when every check passed, 1 when a check failed (loss, duplicates, reorders,
wrong-group deliveries, failed connections or sample echoes), 2 on usage or setup errors.`

// childEnv is set in the environment of child processes, so a test binary
// that is re-executed as a child runs main instead of its tests.
const childEnv = "GWBENCH_CHILD"

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

// errCheckFailed is returned when a run completed but one of its checks
// (loss, order, failed connections) did not pass.
var errCheckFailed = errors.New("gwbench: check failed")

// mainExit runs gwbench with args and returns the exit status.
func mainExit(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default handling so a second
		// Ctrl-C kills the process at once.
		<-ctx.Done()
		stop()
	}()
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errCheckFailed):
		return 1
	}
	fmt.Fprintf(stderr, "gwbench: %v\n", err)
	return 2
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprintln(stdout, usage)
		if len(args) == 0 {
			return errors.New("no mode given")
		}
		return nil
	}
	mode, args := args[0], args[1:]
	if mode == "refserver" {
		return runRefServer(ctx, args, stdout, stderr)
	}
	cfg, child, err := parseMode(mode, args, stdout, stderr)
	if err != nil {
		return err
	}
	if child != nil {
		return runChild(*child, os.Stdin, stdout, stderr)
	}
	return runBench(ctx, cfg, stdout, stderr)
}
