package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// runHealth checks that every --addr accepts TCP connections: the
// healthcheck of containers built FROM scratch, which have no shell or curl.
func runHealth(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		addrs   string
		timeout time.Duration
	)
	c := newCLI("health", "gatewayworker health: exit 0 when every address accepts a TCP connection (container healthchecks).")
	c.group("Check")
	c.commandScoped()
	c.str(&addrs, "addr", "", "addresses to dial, comma-separated (required)")
	c.dur(&timeout, "timeout", time.Second, "how long each dial may take")
	if err := parseOrHelp(c, args, stdout); err != nil {
		return err
	}
	list := splitList(addrs)
	if len(list) == 0 {
		return usagef("--addr is required")
	}
	for _, a := range list {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", a)
		cancel()
		if err != nil {
			return fmt.Errorf("unhealthy: %w", err)
		}
		_ = conn.Close()
	}
	return nil
}
