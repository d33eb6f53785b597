package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatewayworker/gatewayworker/examples/bench"
	"github.com/gatewayworker/gatewayworker/examples/chat"
	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
)

// apps are the worker applications this binary carries.
var apps = map[string]func() worker.Handlers{
	"chat":  chat.Handlers,
	"bench": bench.Handlers,
	"probe": probeHandlers,
}

// appNone runs `run` without a built-in worker, for your own workers to
// take every event (a built-in one would share them).
const appNone = "none"

func appHandlers(name string) (worker.Handlers, error) {
	h, ok := apps[name]
	if !ok {
		return worker.Handlers{}, usagef("--app %q: want chat, bench or probe (run also takes none)", name)
	}
	return h(), nil
}

type workerFlags struct {
	app            string
	maxConcurrency int
	drainTimeout   time.Duration
	sticky         bool
	recoverable    string
}

func (w *workerFlags) register(c *cli) {
	c.group("Worker tier")
	c.str(&w.app, "app", "chat", "worker application: chat (the demo), bench (the bench protocol), probe (fault tests: see probe.go); run also takes none (no built-in worker: yours take every event)")
	c.int(&w.maxConcurrency, "max-concurrency", worker.DefaultMaxConcurrency, "clients whose handlers may run at once")
	c.dur(&w.drainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "how long a stopping worker waits for running handlers")
	c.boolean(&w.sticky, "sticky", false, "keep each client's events on the worker process that took them, while it runs (GatewayWorker's routerBind)")
	recoverableFlag(c, &w.recoverable)
}

// recoverableFlag declares --recoverable (api.Config.Recoverable), of
// workers and of the HTTP API.
func recoverableFlag(c *cli, p *string) {
	c.str(p, "recoverable", "", "uid and group name patterns whose pushes are recoverable (stored in the history stream, replayed to reconnecting clients), comma-separated path.Match globs: u:chat-*,g:room-*")
}

func (w *workerFlags) config(b *bus.Conn, prefix string, log *slog.Logger) (worker.Config, error) {
	h, err := appHandlers(w.app)
	if err != nil {
		return worker.Config{}, err
	}
	return worker.Config{Bus: b, Prefix: prefix, Handlers: h, MaxConcurrency: w.maxConcurrency,
		DrainTimeout: w.drainTimeout, Sticky: w.sticky, Logger: log,
		API: api.Config{Recoverable: splitList(w.recoverable)}}, nil
}

// chatHeartbeat is workerman-chat's: the page answers {"type":"ping"} with
// a pong, and a page silent for two intervals is gone.
func applyChatHeartbeat(c *cli, g *gatewayFlags) {
	if !c.set("ping-interval") {
		g.pingInterval = 10 * time.Second
	}
	if !c.set("ping-limit") {
		g.pingLimit = 2
	}
	if !c.set("ping-data") {
		g.pingData = `{"type":"ping"}`
	}
}

// listenError names the flag to change when an address is taken.
func listenError(err error, flagName, addr string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is already in use: stop what listens there or pick another address with --%s", addr, flagName)
	}
	return err
}

// connectBus connects to --nats, or through memory to embedded when set,
// with role's inbox prefix (bus.Subjects.Inbox). Without credentials, it
// uses the token of a `run` or `nats` on this host when --nats is that
// one's server. A server that is not there yet (started at the same time,
// or a moment later) is waited for up to --nats-wait, with a log line
// saying what to start; then a *natsUnavailableError.
func connectBus(ctx context.Context, n *natsFlags, embedded *bus.Embedded, role bus.Role, log *slog.Logger) (*bus.Conn, error) {
	subj, err := bus.NewSubjects(n.prefix)
	if err != nil {
		return nil, usagef("--prefix: %v", err)
	}
	cfg := n.config(string(role), log)
	cfg.InboxPrefix = subj.Inbox(role)
	if embedded != nil {
		cfg.InProcess = embedded
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if embedded == nil && n.noCredentials() {
			// Read at each attempt: the file appears when that server starts.
			token, path, err := readLocalToken(n.urls)
			if err != nil {
				return nil, err
			}
			if token != "" && token != cfg.Token {
				log.Info("nats: using the token of the local run or nats", "file", path)
			}
			cfg.Token = token
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := bus.Connect(cctx, cfg)
		cancel()
		switch {
		case err == nil:
			if attempt > 0 {
				log.Info("nats: connected", "nats", n.urls, "waited", time.Since(start).Round(time.Millisecond))
			}
			return b, nil
		case embedded != nil || ctx.Err() != nil:
			return nil, err
		case time.Since(start) >= n.wait:
			return nil, &natsUnavailableError{err: err, urls: n.urls, waited: n.wait}
		case attempt%10 == 0: // every ~10 s
			log.Warn("nats: not reachable yet; retrying", "nats", n.urls, "until", n.wait, "err", err, "hint", natsHint)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// natsHint says what to start when NATS is not there.
const natsHint = "start NATS first: `gatewayworker nats` (this host), `gatewayworker run`, or a nats-server; or point --nats at yours"

// natsUnavailableError is NATS still unreachable after --nats-wait: exit
// code 69 (EX_UNAVAILABLE), not a usage error.
type natsUnavailableError struct {
	err    error
	urls   string
	waited time.Duration
}

func (e *natsUnavailableError) Error() string {
	return fmt.Sprintf("NATS at %s not reachable after --nats-wait %v (%v): %s", e.urls, e.waited, e.err, natsHint)
}

func (e *natsUnavailableError) Unwrap() error { return e.err }

// startEmbedded starts run's NATS server. Without --nats-token or
// --nats-user it requires a generated token, which the tiers in this
// process use and others on this host read from a file only this user
// can read (removed by stop).
func startEmbedded(n *natsFlags, log *slog.Logger) (e *bus.Embedded, tokenFile string, stop func(), err error) {
	if n.nkey != "" || n.creds != "" {
		return nil, "", nil, errors.New("--nats-nkey and --nats-creds need --nats: the embedded server takes --nats-token or --nats-user/--nats-password")
	}
	generate := n.token == "" && n.user == "" && n.password == ""
	if generate {
		var b [32]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		n.token = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if n.embeddedMaxPayload < 1 || n.embeddedMaxPayload > bus.MaxMaxPayload {
		return nil, "", nil, usagef("--nats-max-payload %d: want 1 to %d", n.embeddedMaxPayload, bus.MaxMaxPayload)
	}
	store, removeStore, err := n.jetStreamDir()
	if err != nil {
		return nil, "", nil, err
	}
	e, err = bus.StartEmbedded(bus.EmbeddedConfig{Port: n.embeddedPort, Token: n.token, User: n.user, Password: n.password,
		MaxPayload: int32(n.embeddedMaxPayload), JetStream: store != "", StoreDir: store})
	if err != nil {
		removeStore()
		return nil, "", nil, listenError(err, "nats-port", "127.0.0.1:"+strconv.Itoa(n.embeddedPort))
	}
	if store != "" {
		log.Info("embedded NATS runs JetStream (history of recoverable pushes)", "store_dir", store)
	}
	n.urls = e.URL()
	shutdown := func() { e.Shutdown(); removeStore() }
	if !generate {
		return e, "", shutdown, nil
	}
	port, _ := loopbackPort(n.urls)
	path, remove, err := writeLocalToken(port, n.token)
	if err != nil {
		shutdown()
		return nil, "", nil, err
	}
	log.Info("embedded NATS requires a token; tiers started beside run on this host read it from this file", "file", path)
	return e, path, func() { shutdown(); remove() }, nil
}

// jetStreamDir is the embedded server's JetStream directory ("" with
// --nats-no-jetstream) and what removes it at exit: the temporary one of
// --nats-port 0 (two such servers must never share a directory), nothing
// otherwise.
func (n *natsFlags) jetStreamDir() (dir string, remove func(), err error) {
	remove = func() {}
	switch {
	case n.noJetStream:
		return "", remove, nil
	case n.storeDir != "":
		return n.storeDir, remove, nil
	case n.embeddedPort == 0:
		dir, err := os.MkdirTemp("", "gatewayworker-nats-")
		if err != nil {
			return "", nil, fmt.Errorf("--nats-store-dir: %w", err)
		}
		return dir, func() { _ = os.RemoveAll(dir) }, nil
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", nil, fmt.Errorf("--nats-store-dir: no $XDG_STATE_HOME nor home directory (%w): set --nats-store-dir or --nats-no-jetstream", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "gatewayworker", "nats-"+strconv.Itoa(n.embeddedPort)), remove, nil
}

func runAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		n    natsFlags
		g    gatewayFlags
		w    workerFlags
		l    logFlags
		http string
	)
	c := newCLI("run", "gatewayworker run: gateway, workers and (unless --nats is set) NATS in one process.")
	n.register(c, true)
	g.register(c, runGOGC)
	w.register(c)
	c.group("Chat page")
	c.str(&http, "http", "127.0.0.1:8080", "address of the chat page (app chat) and /metrics; empty disables")
	var metricsAddr string
	metricsFlag(c, &metricsAddr)
	l.register(c)
	log, err := parseWithLogger(c, &l, args, stdout, stderr)
	if err != nil {
		return err
	}
	if w.app == "chat" {
		applyChatHeartbeat(c, &g)
		if !c.set("origins") && http != "" {
			g.origins = pageOrigins(http)
		}
	}
	withWorker := w.app != appNone
	if _, err := appHandlers(w.app); withWorker && err != nil {
		return err
	}
	if err := g.check(); err != nil {
		return err
	}

	var embedded *bus.Embedded
	var tokenFile string
	if n.urls == "" {
		var stopEmbedded func()
		if embedded, tokenFile, stopEmbedded, err = startEmbedded(&n, log); err != nil {
			return err
		}
		defer stopEmbedded()
	}
	gwBus, err := connectBus(ctx, &n, embedded, bus.RoleGateway, log)
	if err != nil {
		return err
	}
	defer gwBus.Close()
	g.applyGC()
	gcfg, err := g.config(gwBus, n.prefix, log)
	if err != nil {
		return err
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	m := newMetrics()
	m.addGateway(gw)
	m.addBus("gateway", gwBus)
	if embedded != nil {
		m.counter("gatewayworker_nats_handed_over_total", "Messages between this process's tiers handed over in memory, without the embedded NATS server.",
			func() float64 { return float64(embedded.HandedOver()) })
	}
	var wkBus *bus.Conn
	// Without a built-in worker, workerRun stands for one that never stops
	// by itself, so that shutdown and the select below stay one path.
	workerRun := func(ctx context.Context) error { <-ctx.Done(); return nil }
	if withWorker {
		if wkBus, err = connectBus(ctx, &n, embedded, bus.RoleWorker, log); err != nil {
			return err
		}
		defer wkBus.Close()
		wcfg, err := w.config(wkBus, n.prefix, log)
		if err != nil {
			return err
		}
		wcfg.ObserveHandler = m.observe
		wk, err := worker.New(wcfg)
		if err != nil {
			return err
		}
		m.addWorker(wk)
		m.addBus("worker", wkBus)
		workerRun = wk.Run
	}

	// Workers stop after the gateway, so they handle the close events of the
	// clients the gateway closes on its way out.
	gwCtx, stopGateway := context.WithCancel(ctx)
	defer stopGateway()
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	workerErr := make(chan error, 1)
	go func() { workerErr <- workerRun(workerCtx) }()
	gatewayErr := make(chan error, 1)
	go func() { gatewayErr <- gw.Run(gwCtx) }()
	// shutdown stops the gateway, then the worker, and waits for both.
	shutdown := func() error {
		stopGateway()
		if err := <-gatewayErr; err != nil {
			log.Error("gateway stopped with an error", "err", err)
		}
		stopWorker()
		return <-workerErr
	}

	select {
	case <-gw.Ready():
	case err := <-gatewayErr:
		stopWorker()
		<-workerErr
		return gatewayListenError(err)
	}

	var page *httpServer
	if w.app == "chat" && http != "" && gw.WebSocketAddr() == "" {
		_ = shutdown()
		return fmt.Errorf("the chat page needs a WebSocket listener: set --ws, or --http \"\" to run without the page")
	}
	if w.app == "chat" && http != "" {
		a, err := api.New(api.Config{Bus: wkBus, Prefix: n.prefix, Logger: log, Recoverable: splitList(w.recoverable)})
		if err != nil {
			_ = shutdown()
			return err
		}
		defer a.Close()
		wc := chat.WebConfig{WebSocketURL: gw.Addrs()[0], API: a}
		if gcfg.PingInterval > 0 && len(gcfg.PingData) > 0 {
			// The page hears PingData every interval: two and a half
			// missed ones mean a dead connection.
			wc.HeartbeatTimeout = gcfg.PingInterval * 5 / 2
		}
		h, err := chat.NewWebHandler(wc)
		if err == nil {
			mux := newMux(m)
			mux.Handle("/", h)
			page, err = serveHTTP(http, mux, log)
			err = listenError(err, "http", http)
		}
		if err != nil {
			_ = shutdown()
			return err
		}
		defer page.stop()
	}
	stopMetrics, err := serveMetrics(metricsAddr, m, log)
	if err != nil {
		_ = shutdown()
		return err
	}
	defer stopMetrics()
	natsKind := "external"
	switch {
	case tokenFile != "":
		natsKind = "embedded, token in " + tokenFile
	case embedded != nil:
		natsKind = "embedded"
	}
	banner(stderr, &l, log, n.urls, natsKind, gw, page, w.app)

	select {
	case <-ctx.Done():
		return shutdown()
	case err := <-workerErr:
		stopGateway()
		<-gatewayErr
		return fmt.Errorf("worker stopped: %w", err)
	}
}

// gatewayListenError names the flag of a listener that could not start.
func gatewayListenError(err error) error {
	var le *gateway.ListenError
	if errors.As(err, &le) {
		flagName := "tcp"
		if le.Listener == "websocket" {
			flagName = "ws"
		}
		return listenError(err, flagName, le.Addr)
	}
	return err
}

// pageOrigins allows the chat page's own origin (also as localhost).
func pageOrigins(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	out := "http://" + net.JoinHostPort(host, port)
	if host == "127.0.0.1" {
		out += ",http://" + net.JoinHostPort("localhost", port)
	}
	return out
}

type httpServer struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func serveHTTP(addr string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &httpServer{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		addr: l.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "err", err)
		}
	}()
	return s, nil
}

func (s *httpServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// banner says where `run` serves (logFlags.announce).
func banner(w io.Writer, l *logFlags, log *slog.Logger, natsURL, natsKind string, gw *gateway.Gateway, page *httpServer, app string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\ngatewayworker run: app %q, gateway %s\n", app, gw.ID())
	attrs := []any{"app", app, "gateway_id", gw.ID()}
	if page != nil {
		fmt.Fprintf(&b, "  chat page   http://%s/\n", page.addr)
		attrs = append(attrs, "chat_page", "http://"+page.addr+"/")
	}
	for _, addr := range gw.Addrs() {
		scheme, hostport, _ := strings.Cut(addr, "://")
		switch scheme {
		case "ws", "wss":
			fmt.Fprintf(&b, "  websocket   %s\n", addr)
		default:
			fmt.Fprintf(&b, "  tcp %-7s %s\n", scheme, hostport)
		}
	}
	fmt.Fprintf(&b, "  nats        %s (%s)\n", natsURL, natsKind)
	fmt.Fprintf(&b, "Press Ctrl-C to stop.\n\n")
	attrs = append(attrs, "addrs", gw.Addrs(), "nats", natsURL, "nats_kind", natsKind)
	l.announce(w, log, b.String(), "gatewayworker run ready", attrs...)
}
