package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// natsFlags say how every tier reaches NATS.
type natsFlags struct {
	urls, token, user, password, nkey, creds, ca, cert, key, prefix string
	embeddedPort, embeddedMaxPayload                                int
	wait                                                            time.Duration
	// storeDir and noJetStream: the embedded server's JetStream.
	storeDir    string
	noJetStream bool
}

func (n *natsFlags) register(c *cli, embedded bool) {
	c.group("NATS (every tier)")
	if embedded {
		c.str(&n.urls, "nats", "", "NATS URLs, comma-separated; empty starts an embedded server")
	} else {
		c.str(&n.urls, "nats", "nats://127.0.0.1:4222", "NATS URLs, comma-separated")
	}
	c.dur(&n.wait, "nats-wait", 30*time.Second, "how long to wait at start for a NATS server that is not reachable yet, retrying every second; then exit 69")
	c.str(&n.prefix, "prefix", bus.DefaultPrefix, "subject prefix shared by gateways, workers and API clients")
	n.registerEmbedded(c, embedded)
	c.str(&n.nkey, "nats-nkey", "", "file holding an nkey seed")
	c.str(&n.creds, "nats-creds", "", "JWT user credentials file")
	c.str(&n.ca, "nats-ca", "", "CA file to verify NATS with TLS")
	c.str(&n.cert, "nats-cert", "", "client certificate file for TLS to NATS")
	c.str(&n.key, "nats-key", "", "client key file for TLS to NATS")
}

// registerEmbedded declares the credentials, and with port the port, of
// the embedded NATS server (`run` and `nats`), which other tiers use to
// authenticate.
func (n *natsFlags) registerEmbedded(c *cli, port bool) {
	if port {
		c.int(&n.embeddedPort, "nats-port", 4222, "port of the embedded NATS server on 127.0.0.1 (0 picks a free one)")
		c.int(&n.embeddedMaxPayload, "nats-max-payload", bus.DefaultMaxPayload, "largest NATS message of the embedded server in bytes (its max_payload, at most 64 MiB): at least --max-message-size plus 512 bytes and the largest session")
		c.str(&n.storeDir, "nats-store-dir", "", "JetStream directory of the embedded server (history of recoverable pushes), created 0700; empty: $XDG_STATE_HOME/gatewayworker/nats-<port> (~/.local/state when unset), or a temporary one removed at exit with --nats-port 0")
		c.boolean(&n.noJetStream, "nats-no-jetstream", false, "run the embedded server without JetStream: no history, pushes are at most once")
	}
	c.str(&n.token, "nats-token", "", "token to authenticate with (required of clients by the embedded server too; run and nats generate one when no credential is given, and other tiers on this host read it)")
	c.str(&n.user, "nats-user", "", "user name to authenticate with")
	c.str(&n.password, "nats-password", "", "password to authenticate with")
}

// noCredentials reports whether no NATS credential flag is set.
func (n *natsFlags) noCredentials() bool {
	return n.token == "" && n.user == "" && n.password == "" && n.nkey == "" && n.creds == ""
}

func (n *natsFlags) config(name string, log *slog.Logger) bus.Config {
	cfg := bus.Config{
		Name: name, Token: n.token, User: n.user, Password: n.password,
		NKeySeedFile: n.nkey, CredsFile: n.creds, Logger: log,
	}
	cfg.URLs = splitList(n.urls)
	if n.ca != "" || n.cert != "" || n.key != "" {
		cfg.TLS = &bus.TLSConfig{CAFile: n.ca, CertFile: n.cert, KeyFile: n.key}
	}
	return cfg
}

// gatewayFlags configure the gateway tier.
type gatewayFlags struct {
	id, ws, wsPath, origins, tcp, tcpProtocol, pingData  string
	wsCert, wsKey, tcpCert, tcpKey, proxies, advertise   string
	wsType                                               string
	wsCompression                                        bool
	pingInterval, tcpKeepAlive, beatInterval, writeDelay time.Duration
	pingLimit, maxMessage, sendQueue, maxConns           int
	maxHeader, maxInFlight                               int
	rateLimit, gogc                                      int
	auth                                                 authFlags
	history                                              historyFlags
}

// historyFlags configure gateway.Config.History (docs/protocol.md, "History").
type historyFlags struct {
	on                 bool
	maxAge             time.Duration
	maxBytes, replicas int
	storage            string
}

func (h *historyFlags) register(c *cli) {
	c.group("History and recovery (docs/protocol.md)")
	c.boolean(&h.on, "history", true, "keep recoverable pushes in the JetStream stream HISTORY_<prefix> and replay what reconnecting clients missed (without JetStream: one warning, no history)")
	c.dur(&h.maxAge, "history-max-age", bus.DefaultHistoryMaxAge, "how long the stream keeps a recoverable push")
	c.int(&h.maxBytes, "history-max-bytes", bus.DefaultHistoryMaxBytes, "the stream's size in bytes; past it the oldest pushes are dropped")
	c.str(&h.storage, "history-storage", string(bus.StorageFile), "where the stream keeps pushes: file or memory")
	c.int(&h.replicas, "history-replicas", 1, "the stream's replicas in a JetStream cluster (1 to 5; 3 to survive a node's loss)")
}

// config is the gateway's History, nil with --history=false.
func (h *historyFlags) config() (*bus.HistoryConfig, error) {
	if !h.on {
		return nil, nil
	}
	cfg := &bus.HistoryConfig{MaxAge: h.maxAge, MaxBytes: int64(h.maxBytes), Storage: bus.Storage(h.storage), Replicas: h.replicas}
	if err := cfg.Check(); err != nil {
		return nil, usagef("--history-*: %v", err)
	}
	return cfg, nil
}

// authFlags configure gateway.AuthConfig (docs/clients.md, "Tokens").
type authFlags struct {
	secretFile, publicKeys, jwks, algs, issuer, audience, groupsClaim string
	leeway, timeout                                                   time.Duration
	pending                                                           bool
}

func (a *authFlags) register(c *cli) {
	c.group("Client authentication (docs/clients.md)")
	c.str(&a.secretFile, "jwt-secret-file", "", "file holding the HS256 secret of connection tokens (at least 32 bytes); any --jwt-* key makes tokens required")
	c.str(&a.publicKeys, "jwt-public-key", "", "PEM public key or certificate files of connection tokens, comma-separated: RSA (RS256), EC P-256 (ES256), Ed25519 (EdDSA)")
	c.str(&a.jwks, "jwt-jwks", "", "JSON Web Key Set file of the public keys of connection tokens")
	c.str(&a.algs, "jwt-alg", "", "token algorithms accepted, comma-separated (HS256, RS256, ES256, EdDSA); empty: those of the keys given")
	c.str(&a.issuer, "jwt-issuer", "", "required iss of connection tokens; empty: not checked")
	c.str(&a.audience, "jwt-audience", "", "required aud of connection tokens; empty: not checked")
	c.str(&a.groupsClaim, "jwt-groups-claim", gateway.DefaultGroupsClaim, "token claim listing the groups a client joins")
	c.dur(&a.leeway, "jwt-leeway", 0, "clock skew allowed on a token's exp and nbf")
	c.boolean(&a.pending, "auth-pending", false, "new connections are pending until a worker accepts or rejects them (excludes --jwt-* keys)")
	c.dur(&a.timeout, "auth-timeout", gateway.DefaultAuthTimeout, "how long a connection may wait for its first-message token, or stay pending, before it is closed (4502)")
}

// config returns the AuthConfig of the flags; nil when none asks for
// authentication (the default: every connection is trusted).
func (a *authFlags) config() (*gateway.AuthConfig, error) {
	if a.secretFile == "" && a.publicKeys == "" && a.jwks == "" && !a.pending {
		if a.algs != "" || a.issuer != "" || a.audience != "" {
			return nil, usagef("--jwt-alg, --jwt-issuer and --jwt-audience need a key: --jwt-secret-file, --jwt-public-key or --jwt-jwks")
		}
		return nil, nil
	}
	cfg := &gateway.AuthConfig{
		Algorithms: splitList(a.algs), HMACSecretFile: a.secretFile, PublicKeyFiles: splitList(a.publicKeys),
		JWKSFile: a.jwks, Issuer: a.issuer, Audience: a.audience, GroupsClaim: a.groupsClaim,
		Leeway: a.leeway, Pending: a.pending, Timeout: a.timeout,
	}
	if err := cfg.Check(); err != nil {
		return nil, usagef("client authentication (--jwt-*, --auth-*): %v", err)
	}
	return cfg, nil
}

// register declares the gateway flags; gogc is --gogc's default, which
// differs between `gateway` and `run` (see defaultGOGC).
func (g *gatewayFlags) register(c *cli, gogc int) {
	c.group("Gateway tier")
	c.str(&g.id, "id", "", "gateway id, unique among live gateways; empty picks a random one")
	c.str(&g.ws, "ws", "127.0.0.1:7272", "WebSocket listen address; empty disables")
	c.str(&g.wsPath, "ws-path", gateway.DefaultWebSocketPath, "WebSocket URL path")
	c.str(&g.origins, "origins", "", "allowed browser Origins, comma-separated; * allows any; empty: any (run: the chat page's)")
	c.str(&g.tcp, "tcp", "127.0.0.1:7273", "raw TCP listeners, comma-separated, each ADDR or PROTOCOL://ADDR (text://, frame://, text+tls://, frame+tls://); empty disables")
	c.str(&g.tcpCert, "tcp-cert", "", "PEM certificate file of the +tls TCP listeners (with --tcp-key)")
	c.str(&g.tcpKey, "tcp-key", "", "PEM private key file of --tcp-cert")
	c.str(&g.tcpProtocol, "tcp-protocol", "text", "protocol of --tcp addresses without one: text (newline) or frame (4-byte length)")
	c.str(&g.wsCert, "ws-cert", "", "PEM certificate file: serve wss:// (with --ws-key)")
	c.str(&g.wsKey, "ws-key", "", "PEM private key file of --ws-cert")
	c.boolean(&g.wsCompression, "ws-compression", false, "negotiate permessage-deflate with clients that ask")
	c.str(&g.wsType, "websocket-type", "default", "frame type of pushes whose sender and connection chose none (GatewayWorker's websocketType): text, binary, or default (UTF-8 bytes as text, others as binary)")
	c.str(&g.advertise, "advertise", "", "URLs clients connect to, comma-separated, shown by status instead of the listeners (ws://chat.example.com/); empty: the listeners, a wildcard one as the host's addresses")
	c.str(&g.proxies, "trusted-proxies", "", "CIDRs of reverse proxies whose X-Forwarded-For is believed, comma-separated")
	c.int(&g.rateLimit, "rate-limit", 0, "close clients sending more messages per second than this; 0 no limit")
	c.dur(&g.pingInterval, "ping-interval", gateway.DefaultPingInterval, "heartbeat interval; negative disables")
	c.dur(&g.tcpKeepAlive, "tcp-keepalive", 0, "idle time before the kernel probes a client socket, and between probes; 0: off while the heartbeat runs, else 15s; negative off")
	c.dur(&g.writeDelay, "write-delay", 0, "how long the writers of group, uid and broadcast pushes wait for more before writing, to send a client several in one system call: less CPU for up to this much latency; 0 no wait")
	c.dur(&g.beatInterval, "beat-interval", gateway.DefaultBeatInterval, "how often the gateway announces itself on NATS; it closes its clients when its beats stop coming back for 2.5 intervals, and workers take it for dead after 3.5: raise it where the gateway may be starved of CPU for seconds")
	c.int(&g.pingLimit, "ping-limit", 0, "close clients silent for this many intervals; 0 never")
	c.str(&g.pingData, "ping-data", "", "data sent to every client at each heartbeat; empty sends WebSocket pings")
	c.int(&g.maxMessage, "max-message-size", gateway.DefaultMaxMessageSize, "largest client message in bytes")
	c.int(&g.maxHeader, "max-header-bytes", gateway.DefaultMaxHeaderBytes, "largest WebSocket upgrade request head (request line and headers) in bytes; larger ones get 431")
	c.int(&g.sendQueue, "send-queue-limit", 0, "unsent bytes per client before it is closed as slow; 0: 1 MiB, or NATS's max_payload if larger, so that the largest push fits")
	c.int(&g.maxConns, "max-conns", gateway.DefaultMaxConnections, "most clients on this gateway")
	c.int(&g.maxInFlight, "max-batches-in-flight", gateway.DefaultMaxBatchesInFlight, "event batches sent and not yet acknowledged by workers; more wait in their clients' queues; negative no limit")
	c.int(&g.gogc, "gogc", gogc, "Go's GC target for this process (as GOGC, which wins when set): lower keeps less memory per connection for a little CPU; 0 leaves Go's 100")
	g.auth.register(c)
	g.history.register(c)
}

// GC targets (--gogc). Go lets the heap reach (1 + GOGC/100) times what
// survived the last collection. A gateway's heap is mostly its connections:
// at 50 instead of Go's 100 an idle connection measured ~20 % less RSS and
// the echo rate ~2 % less. `run` also holds NATS and the workers, whose heap
// is per-message garbage: there 50 cost 10 % of the echo rate for 1 KB less
// per connection, so it keeps Go's 100 (BENCHMARKS.md).
const (
	defaultGOGC = 50
	runGOGC     = 100
)

// applyGC sets the process's GC target from --gogc, unless GOGC is set.
func (g *gatewayFlags) applyGC() {
	if _, set := os.LookupEnv("GOGC"); !set && g.gogc > 0 {
		debug.SetGCPercent(g.gogc)
	}
}

// check refuses values the gateway would refuse, naming the flags (the
// gateway names its Config fields), before anything connects.
func (g *gatewayFlags) check() error {
	if _, err := g.config(nil, "", nil); err != nil {
		return err
	}
	if g.id != "" {
		if err := clientid.ValidateGatewayID(g.id); err != nil {
			return usagef("--id: %v", err)
		}
	}
	if g.ws == "" && len(splitList(g.tcp)) == 0 {
		return usagef("no listener: set --ws or --tcp")
	}
	if g.wsPath == "" || g.wsPath[0] != '/' {
		return usagef("--ws-path %q: must start with /", g.wsPath)
	}
	for _, f := range []struct {
		name      string
		v, lo, hi int
	}{
		{"rate-limit", g.rateLimit, 0, gateway.MaxMessagesPerSecondLimit},
		{"max-message-size", g.maxMessage, 0, gateway.MaxMessageSizeLimit},
		{"max-header-bytes", g.maxHeader, 0, math.MaxInt},
		{"send-queue-limit", g.sendQueue, 0, math.MaxInt},
		{"max-conns", g.maxConns, 0, math.MaxInt},
		{"ping-limit", g.pingLimit, 0, math.MaxInt},
	} {
		if f.v < f.lo || f.v > f.hi {
			if f.hi == math.MaxInt {
				return usagef("--%s %d: must not be negative", f.name, f.v)
			}
			return usagef("--%s %d: want %d to %d", f.name, f.v, f.lo, f.hi)
		}
	}
	return nil
}

func (g *gatewayFlags) config(b *bus.Conn, prefix string, log *slog.Logger) (gateway.Config, error) {
	cfg := gateway.Config{
		Bus: b, ID: g.id, Prefix: prefix,
		WebSocketAddr: g.ws, WebSocketPath: g.wsPath, WebSocketCompression: g.wsCompression,
		AllowedOrigins: splitList(g.origins),
		PingInterval:   g.pingInterval, PingNotResponseLimit: g.pingLimit, PingData: []byte(g.pingData),
		TCPKeepAlive: g.tcpKeepAlive, BeatInterval: g.beatInterval, WriteDelay: g.writeDelay,
		MaxMessageSize: g.maxMessage, SendQueueLimit: g.sendQueue, MaxConnections: g.maxConns,
		MaxMessagesPerSecond: g.rateLimit, MaxHeaderBytes: g.maxHeader, MaxBatchesInFlight: g.maxInFlight,
		Logger: log,
	}
	ft, err := bus.ParseFrame(g.wsType)
	if err != nil {
		return cfg, usagef("--websocket-type %q: want text, binary or default", g.wsType)
	}
	cfg.WebSocketType = ft
	auth, err := g.auth.config()
	if err != nil {
		return cfg, err
	}
	cfg.Auth = auth
	if cfg.History, err = g.history.config(); err != nil {
		return cfg, err
	}
	if g.wsCert != "" || g.wsKey != "" {
		if g.wsCert == "" || g.wsKey == "" {
			return cfg, usagef("--ws-cert and --ws-key go together")
		}
		cfg.WebSocketTLS = &gateway.TLSFiles{CertFile: g.wsCert, KeyFile: g.wsKey}
	}
	for _, a := range splitList(g.advertise) {
		if err := gateway.CheckAdvertiseAddr(a); err != nil {
			return cfg, usagef("--advertise: %v", err)
		}
		cfg.AdvertiseAddrs = append(cfg.AdvertiseAddrs, a)
	}
	for _, p := range splitList(g.proxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return cfg, usagef("--trusted-proxies %q: %v", p, err)
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, prefix)
	}
	for _, l := range splitList(g.tcp) {
		name, addr, ok := strings.Cut(l, "://")
		blame := "--tcp " + strconv.Quote(l)
		if !ok {
			name, addr = g.tcpProtocol, l
			blame = "--tcp-protocol " + strconv.Quote(g.tcpProtocol)
		}
		name, secure := strings.CutSuffix(name, "+tls")
		codec, err := protocol.ByName(name)
		if err != nil {
			return cfg, usagef("%s: %v", blame, err)
		}
		listener := gateway.TCPListener{Addr: addr, Codec: codec}
		if secure {
			if g.tcpCert == "" || g.tcpKey == "" {
				return cfg, usagef("--tcp %q needs --tcp-cert and --tcp-key", l)
			}
			listener.TLS = &gateway.TLSFiles{CertFile: g.tcpCert, KeyFile: g.tcpKey}
		}
		cfg.TCP = append(cfg.TCP, listener)
	}
	return cfg, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// logFlags configure logging.
type logFlags struct{ level, format string }

func (l *logFlags) register(c *cli) {
	c.group("Logging")
	c.str(&l.level, "log-level", "info", "debug, info, warn or error")
	c.str(&l.format, "log-format", "text", "text or json")
}

// logger builds the logger the flags ask for, writing to w (the stderr
// dispatch was given: os.Stderr in main, a buffer in tests).
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch l.format {
	case "text":
		log = slog.New(slog.NewTextHandler(w, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(w, opts))
	default:
		return nil, usagef("--log-format %q: want text or json", l.format)
	}
	// The default logger too: what libraries log there (nbio, through the
	// gateway; the log package) follows --log-format and --log-level.
	slog.SetDefault(log)
	if l.format == "json" {
		jsonLog.Store(log)
	}
	return log, nil
}

// jsonLog is the logger of a command that runs with --log-format json,
// for main to log the error the command ended with as a record too.
var jsonLog atomic.Pointer[slog.Logger]

// announce tells where the process serves: with --log-format text the
// human lines of human, with json one record msg with attrs, so a log
// collector reads every line of the process.
func (l *logFlags) announce(w io.Writer, log *slog.Logger, human, msg string, attrs ...any) {
	if l.format == "json" {
		log.Info(msg, attrs...)
		return
	}
	fmt.Fprint(w, human)
}
