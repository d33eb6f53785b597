// Command gatewayworker runs the tiers of gatewayworker: `run` (the default)
// starts everything in one process on an embedded NATS server with the chat
// demo; `gateway` and `worker` run one tier against an external NATS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `gatewayworker: long-lived client connections on gateways, business logic on workers, NATS between.

Usage:
  gatewayworker [run] [flags]      everything in one process on embedded NATS (chat demo at http://127.0.0.1:8080)
  gatewayworker nats [flags]       the embedded NATS server of run, alone (for the tiers below on one box)
  gatewayworker gateway [flags]    a gateway against an external NATS
  gatewayworker worker [flags]     a worker (--app chat|bench) against an external NATS
  gatewayworker reaper [flags]     no events: the close events of a dead gateway's clients, for PHP workers
  gatewayworker status [--json]    the live gateways and workers, with their counters
  gatewayworker api [flags]        the HTTP API for pushes and queries from any language
  gatewayworker health --addr A    exit 0 when A accepts TCP connections (container healthchecks)
  gatewayworker <command> --help   the flags of a command, grouped by tier
  gatewayworker version            the module version and commit (also --version)

Every flag --some-name can also be set as the environment variable GW_SOME_NAME
(status and health: GW_STATUS_JSON, GW_HEALTH_ADDR, ...; --help shows each flag's).
Exit codes: 0 done, 1 failed, 2 usage error, 69 NATS unavailable (after --nats-wait).`

// Exit codes: what a script or a supervisor can tell apart.
const (
	exitFailure     = 1  // the command failed while running
	exitUsage       = 2  // the command line or environment is wrong: fix it
	exitUnavailable = 69 // EX_UNAVAILABLE: a dependency (NATS) is not there: start it, or retry
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	if log := jsonLog.Load(); log != nil {
		log.Error("gatewayworker stopped", "err", err)
	} else {
		fmt.Fprintf(os.Stderr, "gatewayworker: %v\n", err)
	}
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode is err's exit code; for a usage error it prints the command's
// flags to w first.
func exitCode(err error, w io.Writer) int {
	var ue *usageError
	var ne *natsUnavailableError
	switch {
	case errors.As(err, &ue):
		if ue.usage != "" {
			fmt.Fprintf(w, "\n%s", ue.usage)
		}
		return exitUsage
	case errors.As(err, &ne):
		return exitUnavailable
	}
	return exitFailure
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "--help", "-help", "help":
			// The commands, then the flags of the default command, run.
			fmt.Fprintf(stdout, "%s\n\nFlags of run, the default command:\n\n", usage)
			err := dispatch(ctx, []string{"run", "--help"}, stdout, stdout)
			if errors.Is(err, flag.ErrHelp) {
				err = nil
			}
			return err
		case "--version", "-version", "version":
			fmt.Fprintln(stdout, versionLine())
			return nil
		}
	}
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runAll(ctx, args, stdout, stderr)
	case "nats":
		return runNATS(ctx, args, stdout, stderr)
	case "gateway":
		return runGateway(ctx, args, stdout, stderr)
	case "worker":
		return runWorker(ctx, args, stdout, stderr)
	case "reaper":
		return runReaper(ctx, args, stdout, stderr)
	case "status":
		return runStatus(ctx, args, stdout, stderr)
	case "api":
		return runAPI(ctx, args, stdout, stderr)
	case "health":
		return runHealth(ctx, args, stdout)
	}
	return &usageError{err: fmt.Errorf("unknown command %q", cmd), usage: usage + "\n"}
}

// parseWithLogger parses args (printing the grouped flags on --help to
// stdout) and builds the logger the logging flags ask for, on stderr.
func parseWithLogger(c *cli, l *logFlags, args []string, stdout, stderr io.Writer) (*slog.Logger, error) {
	if err := parseOrHelp(c, args, stdout); err != nil {
		return nil, err
	}
	return l.logger(stderr)
}

// parseOrHelp parses args; on --help it prints the grouped flags and
// returns flag.ErrHelp.
func parseOrHelp(c *cli, args []string, stdout io.Writer) error {
	err := c.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.usage(stdout)
	}
	return err
}
