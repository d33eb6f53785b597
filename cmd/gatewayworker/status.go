package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// statusReport is what `status --json` prints; its fields are documented
// in docs/operations.md ("gatewayworker status").
type statusReport struct {
	Gateways []gatewayStatus `json:"gateways"`
	Workers  []workerStatus  `json:"workers"`
	// Missing lists gateways that are alive by their heartbeats but did not answer.
	// Every list is present, empty rather than null, as docs/operations.md shows.
	Missing []string `json:"missing"`
}

type gatewayStatus struct {
	api.GatewayInfo
	UptimeSeconds float64 `json:"uptime_seconds"`
}

type workerStatus struct {
	api.WorkerInfo
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// runStatus prints the live gateways and workers, like `php start.php status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		s       singleTier
		asJSON  bool
		timeout time.Duration
	)
	log, b, err := s.start(ctx, "status", bus.RoleAPI, "gatewayworker status: the live gateways and workers of a deployment.", args, stdout, stderr, func(c *cli) {
		c.group("Output")
		c.commandScoped()
		c.boolean(&asJSON, "json", false, "print one JSON object instead of tables")
		c.dur(&timeout, "timeout", time.Second, "how long to wait for answers")
	}, false, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	a, err := api.New(api.Config{Bus: b, Prefix: s.nats.prefix, QueryTimeout: timeout, Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()

	report := statusReport{Gateways: []gatewayStatus{}, Workers: []workerStatus{}, Missing: []string{}}
	now := time.Now()
	infos, err := a.GetGatewayInfos(ctx)
	var qe *api.QueryError
	if errors.As(err, &qe) {
		report.Missing = qe.Missing
	} else if err != nil {
		return err
	}
	for _, g := range infos {
		report.Gateways = append(report.Gateways, gatewayStatus{g, uptime(now, g.Boot)})
	}
	workers, err := a.GetWorkerInfos(ctx, timeout/2)
	if err != nil {
		return err
	}
	for _, w := range workers {
		report.Workers = append(report.Workers, workerStatus{w, uptime(now, w.Boot)})
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	printStatus(stdout, report)
	return nil
}

func uptime(now time.Time, bootMillis int64) float64 {
	return now.Sub(time.UnixMilli(bootMillis)).Round(time.Second).Seconds()
}

func printStatus(w io.Writer, r statusReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "GATEWAYS (%d)\n", len(r.Gateways))
	fmt.Fprintln(tw, "ID\tUPTIME\tCONNECTIONS\tGROUPS\tUIDS\tMESSAGES IN\tBYTES IN\tPUSHES OUT\tBYTES OUT\tLISTENS")
	var conns int64
	for _, g := range r.Gateways {
		conns += g.Connections
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", g.ID, time.Duration(g.UptimeSeconds)*time.Second,
			g.Connections, g.Groups, g.UIDs, g.MessagesIn, g.BytesIn, g.PushesOut, g.BytesOut, strings.Join(g.Addrs, " "))
	}
	for _, id := range r.Missing {
		fmt.Fprintf(tw, "%s\tNOT ANSWERING\n", id)
	}
	fmt.Fprintf(tw, "total\t\t%d\n\n", conns)
	fmt.Fprintf(tw, "WORKERS (%d)\n", len(r.Workers))
	fmt.Fprintln(tw, "ID\tUPTIME\tEVENTS HANDLED\tIN FLIGHT\tREAPER CLIENTS")
	for _, wk := range r.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", wk.ID, time.Duration(wk.UptimeSeconds)*time.Second, wk.Handled, wk.InFlight, wk.ReaperClients)
	}
	_ = tw.Flush()
}
