package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/worker"
)

// Example is the "write your own worker" example of the README: a lobby
// where every message goes to everyone else, with a per-client counter in
// the session. It runs against a real embedded NATS and a real gateway.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.DiscardHandler)
	nats, _ := bus.StartEmbedded(bus.EmbeddedConfig{})
	defer nats.Shutdown()
	var conns []*bus.Conn
	connect := func() *bus.Conn {
		c, _ := bus.Connect(ctx, bus.Config{URLs: []string{nats.URL()}, Logger: quiet})
		conns = append(conns, c)
		return c
	}
	var running sync.WaitGroup
	defer func() { // stop everything before the server
		cancel()
		running.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()
	gw, _ := gateway.New(gateway.Config{Bus: connect(), WebSocketAddr: "127.0.0.1:0", Logger: quiet})
	gwCtx, stopGateway := context.WithCancel(ctx)
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); _ = gw.Run(gwCtx) }()
	// Stopped first, while the worker runs: it acknowledges the close
	// events of the gateway's clients, which the gateway waits for.
	defer func() { stopGateway(); <-gwDone }()
	<-gw.Ready()

	// The worker: this is all the code an application writes.
	w, err := worker.New(worker.Config{Bus: connect(), Logger: quiet, Handlers: worker.Handlers{
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
		panic(err)
	}
	running.Go(func() { _ = w.Run(ctx) })
	<-w.Ready()

	// Two WebSocket clients.
	ann, _, _ := websocket.DefaultDialer.Dial("ws://"+gw.WebSocketAddr()+"/", nil)
	bob, _, _ := websocket.DefaultDialer.Dial("ws://"+gw.WebSocketAddr()+"/", nil)
	defer ann.Close()
	defer bob.Close()
	read := func(c *websocket.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, _ := c.ReadMessage()
		return string(b)
	}
	fmt.Println(read(ann))
	fmt.Println(read(bob))
	_ = ann.WriteMessage(websocket.TextMessage, []byte("hi Bob"))
	_ = ann.WriteMessage(websocket.TextMessage, []byte("still there?"))
	fmt.Println(read(bob))
	fmt.Println(read(bob))
	// Output:
	// welcome to the lobby
	// welcome to the lobby
	// hi Bob (your message #1)
	// still there? (your message #2)
}
