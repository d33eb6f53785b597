// Command lobby is the worker of the README's "Write your own worker": a
// lobby where every message goes to everyone else, with a per-client
// counter in the session. Run it beside `gatewayworker run --app none` (or
// `gatewayworker nats` and `gatewayworker gateway`):
//
//	NATS_TOKEN="$(cat ${XDG_RUNTIME_DIR:-$HOME/.config}/gatewayworker/nats-4222.token)" go run ./examples/lobby
//
// NATS_URL (default nats://127.0.0.1:4222) and NATS_TOKEN say where NATS is
// and how to authenticate. The part between the README markers is the
// README's snippet, verbatim (a test checks).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/worker"
)

func main() {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	// README begin
	// SIGTERM or Ctrl-C ends ctx: the worker stops taking events, finishes and
	// acknowledges the ones it has, and Run returns nil.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := bus.Connect(ctx, bus.Config{URLs: []string{url}, Token: os.Getenv("NATS_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	w, err := worker.New(worker.Config{Bus: conn, Handlers: worker.Handlers{
		OnConnect: func(ctx context.Context, c *worker.Client) error {
			if err := c.JoinGroup(ctx, c.ID(), "lobby"); err != nil {
				return err
			}
			return c.SendToCurrentClient(ctx, []byte("welcome to the lobby"))
		},
		OnMessage: func(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
			n, _ := c.Session()["sent"].(int64)
			c.Session()["sent"] = n + 1 // stored by the gateway after the handler
			reply := fmt.Sprintf("%s (your message #%d)", e.Data, n+1)
			return c.SendToGroup(ctx, "lobby", []byte(reply), c.ID())
		},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil { // nil after a clean drain
		log.Fatal(err)
	}
	// README end
}
