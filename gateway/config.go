package gateway

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// Defaults for [Config]; docs/configuration.md lists them for users.
const (
	DefaultWebSocketPath        = "/"
	DefaultPingInterval         = 25 * time.Second
	DefaultMaxMessageSize       = 64 << 10
	DefaultSendQueueLimit       = 1 << 20
	DefaultMaxPendingEventBytes = 1 << 20
	DefaultMaxBatchesInFlight   = 4096
	// MaxPendingEventBytesLimit and MaxMessagesPerSecondLimit are the
	// highest values Config accepts.
	MaxPendingEventBytesLimit = 1 << 30
	MaxMessagesPerSecondLimit = 1<<16 - 2
	DefaultMaxConnections     = 100_000
	DefaultMaxGroupsPerClient = 256
	DefaultAckTimeout         = time.Second
	DefaultNoWorkerRetry      = 250 * time.Millisecond
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultMaxHeaderBytes     = 16 << 10
	DefaultDrainTimeout       = 5 * time.Second
	DefaultBeatInterval       = time.Second
	DefaultNATSLossTimeout    = 2500 * time.Millisecond // 2.5 × BeatInterval
	// MaxBatchBytes bounds one event batch of several events, well under
	// NATS's 1 MiB default payload; a larger event goes alone.
	MaxBatchBytes = 256 << 10
	// MaxMessageSizeLimit is the highest MaxMessageSize: NATS's own
	// highest max_payload (64 MiB), less EnvelopeOverhead (512 bytes).
	MaxMessageSizeLimit = 64<<20 - EnvelopeOverhead
	// MaxNameLen is the longest group or uid name a client can have, in
	// bytes: api.MaxNameLen, which EnvelopeOverhead counts on. A token
	// whose sub or group is longer is refused; a command naming one gets
	// bad_request.
	MaxNameLen = 256
)

// TLSFiles names a PEM certificate (chain) and its private key.
type TLSFiles struct {
	CertFile, KeyFile string
}

// Config configures a [Gateway]. Zero values mean the documented default;
// New copies it and never changes the caller's value.
type Config struct {
	// Bus is the NATS connection. Required.
	Bus *bus.Conn
	// ID names this gateway process; it is embedded in client ids and must be
	// unique among live gateways. 1-32 characters from [A-Za-z0-9_].
	// Empty means a random id, which is what you want unless you need
	// readable ids.
	ID string
	// Prefix is the subject prefix shared by gateways and workers.
	// Empty means bus.DefaultPrefix ("gw").
	Prefix string

	// WebSocketAddr is where WebSocket clients connect ("127.0.0.1:7272").
	// Empty means no WebSocket listener.
	WebSocketAddr string
	// WebSocketPath is the URL path of the WebSocket endpoint. Empty means "/".
	WebSocketPath string
	// AllowedOrigins lists the Origin header values a browser may connect
	// from ("https://chat.example.com"); "*" allows any. Empty allows any,
	// which suits non-browser clients; set it when browsers connect.
	AllowedOrigins []string
	// WebSocketTLS, if set, makes the WebSocket listener serve wss://, with
	// Go's crypto/tls (TLS 1.2 and later). Nil means plain ws://, which
	// suits a gateway behind a TLS-terminating proxy (see TrustedProxies).
	WebSocketTLS *TLSFiles
	// WebSocketType is the frame type of the pushes that choose none, to
	// clients whose default no worker set (bus.OpSetFrame): GatewayWorker's
	// websocketType. Zero (bus.FrameDefault) sends bytes that are UTF-8 as
	// text and others as binary; bus.FrameText does the same (a text frame
	// must carry UTF-8); bus.FrameBinary sends every push as binary.
	WebSocketType bus.Frame
	// WebSocketCompression negotiates permessage-deflate with clients that
	// ask for it. Off by default: it costs CPU and memory per connection.
	WebSocketCompression bool
	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For header is believed for a client's address. Empty
	// means the header is ignored: anyone can write it.
	TrustedProxies []netip.Prefix
	// TCP lists raw TCP listeners, each with its protocol. Empty means none.
	TCP []TCPListener
	// AdvertiseAddrs are the URLs clients should connect to
	// ("wss://chat.example.com/"), which heartbeats and info queries (and so
	// `gatewayworker status` and /v1/gateways) carry instead of the bound
	// addresses: set them behind a proxy, NAT or port mapping. Empty means
	// the bound addresses, a wildcard one ("0.0.0.0", "[::]") replaced by
	// the host's loopback and unicast addresses (see AdvertisedAddrs).
	AdvertiseAddrs []string

	// History, if set, turns on history and recovery (docs/protocol.md,
	// "History"): the gateway creates or updates the history stream with
	// these limits at start, delivers recoverable pushes with their
	// positions, and replays what reconnecting clients missed. A NATS
	// server without JetStream makes it log a warning and run without.
	// Nil means no history (`gatewayworker gateway` turns it on: --history).
	History *bus.HistoryConfig

	// PingInterval is how often the heartbeat visits each client
	// (GatewayWorker's pingInterval); it visits a sixty-fourth of them every
	// PingInterval/64, not all at once. Zero means DefaultPingInterval
	// (25s); negative turns heartbeats off.
	PingInterval time.Duration
	// PingNotResponseLimit closes a client that sent nothing for this many
	// heartbeat intervals. Zero means clients never have to send anything
	// (GatewayWorker's meaning); the heartbeat then only sends PingData.
	PingNotResponseLimit int
	// PingData is sent to every client at each heartbeat. Empty sends a
	// WebSocket ping frame to WebSocket clients and nothing to TCP clients.
	PingData []byte
	// WriteDelay is how long the writers of group, uid and broadcast
	// pushes wait, after one arrives, for more before they write, so that
	// a client receiving several gets them in one system call (Centrifugo's
	// write_delay): less CPU per delivery for up to WriteDelay more latency.
	// Zero means no wait; pushes that queued up while the writers were busy
	// still go out together. Pushes to one client id are never delayed.
	WriteDelay time.Duration
	// TCPKeepAlive is how long a client socket may be silent before the
	// kernel probes it, and then how often (TCP keepalive). Zero means off
	// while the heartbeat runs (its pings make the kernel notice a dead
	// peer, and a probe after Go's 15 s of silence, on every idle socket,
	// was 67,000 packets a second at a million connections), else Go's
	// 15 s; negative turns it off.
	TCPKeepAlive time.Duration

	// MaxMessageSize is the largest message a client may send, in bytes.
	// Zero means DefaultMaxMessageSize (64 KiB); at most
	// MaxMessageSizeLimit (64 MiB less EnvelopeOverhead). Larger messages
	// close the client with bus.CloseMessageTooLarge. Run refuses to start
	// when MaxMessageSize plus EnvelopeOverhead exceeds the NATS server's
	// max payload (ErrMaxPayload): raise the server's max_payload first.
	MaxMessageSize int
	// SendQueueLimit is how many bytes may wait unsent for one client (in
	// nbio, and in frames the fanout builds) before it is closed as a slow
	// consumer (bus.CloseSlowConsumer): the gateway holds at most this plus
	// one message per client. Zero means DefaultSendQueueLimit (1 MiB), or
	// the NATS server's max payload when that is larger, so that the
	// largest push fits.
	SendQueueLimit int
	// MaxPendingEventBytes is how many bytes of one client's events may wait
	// for workers before the client is closed with bus.CloseEventQueueFull.
	// Zero means DefaultMaxPendingEventBytes (1 MiB), or twice
	// MaxMessageSize when that is larger; at most
	// MaxPendingEventBytesLimit (1 GiB).
	MaxPendingEventBytes int
	// MaxBatchesInFlight bounds the event batches this gateway has sent and
	// workers have not acknowledged yet (one per client at most). When
	// workers fall behind, further batches wait in their clients' queues
	// (bounded by MaxPendingEventBytes) and go out, first come first served,
	// as acks come back: a connect storm is slowed down, not piled into the
	// workers' buffers. Zero means DefaultMaxBatchesInFlight (4,096: six
	// gateways stay under a worker's 65,536-batch buffer); negative means
	// no limit.
	MaxBatchesInFlight int
	// MaxMessagesPerSecond closes a client that sends more messages than
	// this within one second (bus.CloseRateLimited). Zero means no limit;
	// at most MaxMessagesPerSecondLimit (65,534).
	MaxMessagesPerSecond int
	// MaxConnections caps this gateway's clients. Zero means
	// DefaultMaxConnections (100,000).
	MaxConnections int
	// MaxGroupsPerClient caps one client's groups. Zero means
	// DefaultMaxGroupsPerClient (256).
	MaxGroupsPerClient int
	// HandshakeTimeout bounds a WebSocket handshake and a TLS client's
	// handshake (on wss://, the TLS and WebSocket handshakes together). Zero
	// means DefaultHandshakeTimeout (10s).
	HandshakeTimeout time.Duration
	// MaxHeaderBytes bounds what a WebSocket client sends before its
	// upgrade: the request line and headers together; at most
	// MaxHeaderCount header lines. Past it the gateway answers 431 and
	// closes, even before the headers end (on wss://, counted on the
	// decrypted request). Zero means DefaultMaxHeaderBytes (16 KiB).
	MaxHeaderBytes int

	// AckTimeout is how long a batch may go without word from a worker
	// before it is sent again. Workers report progress every
	// bus.ProgressInterval, so only a dead worker lets it pass. Zero means
	// DefaultAckTimeout (1s); it must be at least 2 × bus.ProgressInterval.
	AckTimeout time.Duration
	// NoWorkerRetry is the pause before resending a batch that no worker
	// was there to take. Zero means DefaultNoWorkerRetry (250ms).
	NoWorkerRetry time.Duration
	// DrainTimeout bounds how long Run waits, when stopping, for workers to
	// acknowledge the close events of its clients. Zero means DefaultDrainTimeout (5s).
	DrainTimeout time.Duration
	// NATSLossTimeout is how long the gateway rides out a lost NATS: the
	// time its own heartbeats may fail to come back through NATS. Shorter
	// losses are invisible to clients: events and replies wait in the
	// reconnect buffer. Past it, the gateway closes its clients
	// (bus.CloseGatewayLost), because workers take a gateway whose beats
	// stopped for bus.GatewayDeadAfter(BeatInterval) (3.5 beats) for dead
	// and run its clients' OnClose. It must be between 2 and 3 beats. Zero
	// means 2.5 × BeatInterval (DefaultNATSLossTimeout, 2.5s, with the
	// default BeatInterval); negative never closes.
	NATSLossTimeout time.Duration
	// BeatInterval is how often the gateway announces itself on the bus;
	// its beats carry it, and workers and API clients derive their
	// deadlines about this gateway from it. Zero means DefaultBeatInterval (1s).
	BeatInterval time.Duration

	// Auth, if set, makes every client authenticate before it receives
	// anything: with a connection token (JWT) the gateway verifies, or,
	// with Auth.Pending, by a worker's accept. Nil (the default) trusts
	// each connection at once. See AuthConfig and docs/clients.md.
	Auth *AuthConfig

	// Logger receives the gateway's logs. Nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID = randomID()
	}
	if c.WebSocketPath == "" {
		c.WebSocketPath = DefaultWebSocketPath
	}
	c.TCP = slices.Clone(c.TCP)
	for i := range c.TCP {
		if c.TCP[i].Codec == nil {
			c.TCP[i].Codec = protocol.Text{}
		}
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.TCPKeepAlive == 0 && c.PingInterval > 0 {
		c.TCPKeepAlive = -1
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.SendQueueLimit == 0 {
		c.SendQueueLimit = DefaultSendQueueLimit
	}
	if c.MaxPendingEventBytes == 0 {
		c.MaxPendingEventBytes = max(DefaultMaxPendingEventBytes, min(2*c.MaxMessageSize, MaxPendingEventBytesLimit))
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxBatchesInFlight == 0 {
		c.MaxBatchesInFlight = DefaultMaxBatchesInFlight
	}
	if c.MaxGroupsPerClient == 0 {
		c.MaxGroupsPerClient = DefaultMaxGroupsPerClient
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.NoWorkerRetry == 0 {
		c.NoWorkerRetry = DefaultNoWorkerRetry
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.BeatInterval == 0 {
		c.BeatInterval = DefaultBeatInterval
	}
	if c.NATSLossTimeout == 0 {
		// 2.5 × BeatInterval, as the defaults are. (A Duration times a
		// Duration overflowed past a 3.7 s beat and came out negative:
		// "never close".)
		c.NATSLossTimeout = c.BeatInterval * 5 / 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.Bus == nil {
		return errors.New("gateway: Config.Bus is required")
	}
	if c.History != nil {
		if err := c.History.Check(); err != nil {
			return fmt.Errorf("gateway: History: %w", err)
		}
	}
	if err := clientid.ValidateGatewayID(c.ID); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if c.WebSocketAddr == "" && len(c.TCP) == 0 {
		return errors.New("gateway: no listener: set WebSocketAddr or TCP")
	}
	for _, l := range c.TCP {
		if l.Addr == "" {
			return fmt.Errorf("gateway: a %s TCP listener has no address", l.Codec.Name())
		}
	}
	for _, a := range c.AdvertiseAddrs {
		if err := CheckAdvertiseAddr(a); err != nil {
			return fmt.Errorf("gateway: AdvertiseAddrs: %w", err)
		}
	}
	if c.WebSocketPath[0] != '/' {
		return fmt.Errorf("gateway: WebSocketPath %q must start with '/'", c.WebSocketPath)
	}
	// Maps name the fields once; sorted, so the error is the same each run.
	ints := map[string]int{
		"MaxMessageSize": c.MaxMessageSize, "SendQueueLimit": c.SendQueueLimit,
		"MaxPendingEventBytes": c.MaxPendingEventBytes, "MaxConnections": c.MaxConnections,
		"MaxGroupsPerClient": c.MaxGroupsPerClient, "PingNotResponseLimit": c.PingNotResponseLimit + 1,
		"MaxMessagesPerSecond": c.MaxMessagesPerSecond, "MaxHeaderBytes": c.MaxHeaderBytes,
	}
	for _, name := range slices.Sorted(maps.Keys(ints)) {
		if ints[name] < 0 {
			return fmt.Errorf("gateway: %s must not be negative", name)
		}
	}
	if c.WebSocketType > bus.FrameBinary {
		return fmt.Errorf("gateway: WebSocketType %d is none of bus.FrameDefault, FrameText, FrameBinary", c.WebSocketType)
	}
	if c.MaxMessageSize > MaxMessageSizeLimit {
		return fmt.Errorf("gateway: MaxMessageSize (%d) cannot be higher than MaxMessageSizeLimit (%d)", c.MaxMessageSize, MaxMessageSizeLimit)
	}
	// A client's record keeps these in 32 and 16 bits, to stay small.
	if c.MaxPendingEventBytes > MaxPendingEventBytesLimit {
		return fmt.Errorf("gateway: MaxPendingEventBytes (%d) cannot be higher than %d", c.MaxPendingEventBytes, MaxPendingEventBytesLimit)
	}
	if c.MaxMessagesPerSecond > MaxMessagesPerSecondLimit {
		return fmt.Errorf("gateway: MaxMessagesPerSecond (%d) cannot be higher than %d", c.MaxMessagesPerSecond, MaxMessagesPerSecondLimit)
	}
	if c.MaxPendingEventBytes < c.MaxMessageSize {
		return fmt.Errorf("gateway: MaxPendingEventBytes (%d) cannot be lower than MaxMessageSize (%d)", c.MaxPendingEventBytes, c.MaxMessageSize)
	}
	if c.NATSLossTimeout > 0 && c.NATSLossTimeout < 2*c.BeatInterval {
		return fmt.Errorf("gateway: NATSLossTimeout (%v) must be at least twice BeatInterval (%v)", c.NATSLossTimeout, c.BeatInterval)
	}
	if dead := bus.GatewayDeadAfter(c.BeatInterval); c.NATSLossTimeout > dead-c.BeatInterval/2 {
		// Workers would run OnClose for clients this gateway still holds.
		return fmt.Errorf("gateway: NATSLossTimeout (%v) must be at most %v: workers take a gateway silent for %v (3.5 × BeatInterval %v) for dead",
			c.NATSLossTimeout, dead-c.BeatInterval/2, dead, c.BeatInterval)
	}
	if c.AckTimeout < 2*bus.ProgressInterval {
		return fmt.Errorf("gateway: AckTimeout (%v) must be at least twice bus.ProgressInterval (%v)", c.AckTimeout, bus.ProgressInterval)
	}
	durations := map[string]time.Duration{
		"NoWorkerRetry": c.NoWorkerRetry, "DrainTimeout": c.DrainTimeout,
		"BeatInterval": c.BeatInterval, "HandshakeTimeout": c.HandshakeTimeout,
		"WriteDelay": c.WriteDelay,
	}
	for _, name := range slices.Sorted(maps.Keys(durations)) {
		if durations[name] < 0 {
			return fmt.Errorf("gateway: %s must not be negative", name)
		}
	}
	return nil
}

// randomID returns 10 characters from [a-z0-9]: 51 bits, enough that two
// live gateways never draw the same.
func randomID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// CheckAdvertiseAddr refuses an AdvertiseAddrs entry that is not an absolute
// URL with a host ("ws://host:port/path", "text://host:port").
func CheckAdvertiseAddr(a string) error {
	u, err := url.Parse(a)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%q is not a URL such as ws://host:port/path", a)
	}
	return nil
}
