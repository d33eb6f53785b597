package main

import (
	"context"
	"fmt"
	"io"
)

// runNATS runs the embedded NATS server of `run` alone, with the same
// credentials and token file, for a one-box set-up of separate processes:
// `nats`, then `gateway`, your workers and `api` beside it.
func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		n natsFlags
		l logFlags
	)
	c := newCLI("nats", "gatewayworker nats: the embedded NATS server of run, alone, on 127.0.0.1 (for gateway, worker, api and status beside it).")
	c.group("NATS")
	n.registerEmbedded(c, true)
	l.register(c)
	log, err := parseWithLogger(c, &l, args, stdout, stderr)
	if err != nil {
		return err
	}
	_, tokenFile, stop, err := startEmbedded(&n, log)
	if err != nil {
		return err
	}
	defer stop()
	kind := "credentials from the flags"
	if tokenFile != "" {
		kind = "token in " + tokenFile
	}
	l.announce(stderr, log, fmt.Sprintf("\ngatewayworker nats\n  nats        %s (%s)\nPress Ctrl-C to stop.\n\n", n.urls, kind),
		"gatewayworker nats ready", "nats", n.urls, "nats_kind", kind)
	<-ctx.Done()
	return nil
}
