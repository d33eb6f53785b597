package bus

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults for [EmbeddedConfig].
const (
	// DefaultEmbeddedHost is where an embedded server listens unless told otherwise.
	DefaultEmbeddedHost = "127.0.0.1"
	// DefaultEmbeddedReadyTimeout bounds the wait for a new server to take
	// clients: a loaded machine needs seconds to start one.
	DefaultEmbeddedReadyTimeout = 10 * time.Second
)

// EmbeddedConfig configures the single-node NATS server that `gatewayworker
// run` starts in-process. Credentials set here are required of every client.
type EmbeddedConfig struct {
	// Host to listen on. Empty means DefaultEmbeddedHost (loopback only).
	Host string
	// Port to listen on. Zero picks a free port; negative is not allowed.
	Port int
	// Token, if set, is required of clients.
	Token string
	// User and Password, if set, are required of clients.
	User, Password string
	// Users are accounts with their own credentials and permissions, for
	// a server shared by processes of different roles (see
	// Subjects.Permissions). They replace Token and User/Password.
	Users []EmbeddedUser
	// CertFile and KeyFile, if set, make clients connect with TLS
	// ("tls://" URLs, or Config.TLS with the CA that signed the certificate).
	CertFile, KeyFile string
	// MaxPayload is the largest message in bytes (NATS's max_payload).
	// Zero means DefaultMaxPayload (1 MiB); at most MaxMaxPayload (64 MiB).
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept clients. Zero
	// means DefaultEmbeddedReadyTimeout (10s); negative is refused.
	ReadyTimeout time.Duration
	// JetStream turns on the server's JetStream (history and recovery of
	// recoverable pushes, docs/protocol.md "History"), storing its files
	// under StoreDir. Off by default.
	JetStream bool
	// StoreDir is where JetStream keeps its files (created 0700 if
	// missing). Required with JetStream: file streams need a directory;
	// memory streams use none but the server still wants one.
	StoreDir string
	// Logs turns on the server's own log on stderr.
	Logs bool
}

// EmbeddedUser is one client identity of an embedded server: a user name
// and password, or an nkey.
type EmbeddedUser struct {
	Name, Password string
	// NKey is a public user nkey ("U..."); the client proves it holds the seed.
	NKey string
	// Publish and Subscribe are the subjects it may use (wildcards allowed);
	// nil means any.
	Publish, Subscribe []string
}

func (u EmbeddedUser) permissions() *server.Permissions {
	if u.Publish == nil && u.Subscribe == nil {
		return nil
	}
	p := &server.Permissions{}
	if u.Publish != nil {
		p.Publish = &server.SubjectPermission{Allow: u.Publish}
	}
	if u.Subscribe != nil {
		p.Subscribe = &server.SubjectPermission{Allow: u.Subscribe}
	}
	return p
}

// NATS's limits on max_payload: its default, and the highest it accepts.
const (
	DefaultMaxPayload = 1 << 20
	MaxMaxPayload     = 64 << 20
)

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
	// local hands messages between the in-process connections to srv over
	// in memory (Config.InProcess).
	local *local
}

func (cfg EmbeddedConfig) withDefaults() EmbeddedConfig {
	if cfg.Host == "" {
		cfg.Host = DefaultEmbeddedHost
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultEmbeddedReadyTimeout
	}
	return cfg
}

func (cfg EmbeddedConfig) validate() error {
	if cfg.Port < 0 {
		return fmt.Errorf("bus: embedded NATS port %d is negative", cfg.Port)
	}
	if cfg.ReadyTimeout < 0 {
		return fmt.Errorf("bus: embedded NATS ReadyTimeout (%v) must not be negative", cfg.ReadyTimeout)
	}
	if cfg.Token != "" && (cfg.User != "" || cfg.Password != "") {
		return errors.New("bus: embedded NATS takes a token or a user/password, not both")
	}
	if len(cfg.Users) > 0 && (cfg.Token != "" || cfg.User != "") {
		return errors.New("bus: embedded NATS takes Users or a token or a user/password, not several")
	}
	if cfg.JetStream && cfg.StoreDir == "" {
		return errors.New("bus: embedded NATS with JetStream needs a StoreDir")
	}
	for _, u := range cfg.Users {
		if u.NKey == "" && u.Name == "" {
			return errors.New("bus: an embedded user needs a Name or an NKey")
		}
	}
	return nil
}

// StartEmbedded starts a server and waits until it accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPayload < 0 || cfg.MaxPayload > MaxMaxPayload {
		return nil, fmt.Errorf("bus: embedded NATS MaxPayload %d: want 0 (the default, %d) to %d", cfg.MaxPayload, DefaultMaxPayload, MaxMaxPayload)
	}
	host := cfg.Host
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:    "gatewayworker-embedded",
		Host:          host,
		Port:          port,
		NoLog:         !cfg.Logs,
		NoSigs:        true,
		Authorization: cfg.Token,
		Username:      cfg.User,
		Password:      cfg.Password,
		MaxPayload:    cfg.MaxPayload,
	}
	if cfg.JetStream {
		if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
			return nil, fmt.Errorf("bus: embedded NATS store directory: %w", err)
		}
		opts.JetStream, opts.StoreDir = true, cfg.StoreDir
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile})
		if err != nil {
			return nil, fmt.Errorf("bus: embedded NATS TLS: %w", err)
		}
		opts.TLSConfig, opts.TLSTimeout = tc, 2
	}
	for _, u := range cfg.Users {
		switch {
		case u.NKey != "":
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: u.permissions()})
		default: // validate refused users with neither
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: u.permissions()})
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded NATS: %w", err)
	}
	if cfg.Logs {
		srv.ConfigureLogger()
	}
	// Start does not report a taken port; probe first for a clear error.
	if cfg.Port != 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("bus: embedded NATS cannot listen on %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), err)
		}
		_ = l.Close()
	}
	go srv.Start()
	wait := cfg.ReadyTimeout
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded NATS on %s:%d not ready after %v", host, port, wait)
	}
	maxPayload := int(cfg.MaxPayload)
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Embedded{srv: srv, local: newLocal(srv, maxPayload)}, nil
}

// JetStream reports whether the server runs JetStream.
func (e *Embedded) JetStream() bool { return e.srv.JetStreamEnabled() }

// URL is the address clients connect to.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// HandedOver counts the messages this server's in-process connections
// delivered to each other in memory, without it (Config.InProcess).
func (e *Embedded) HandedOver() uint64 { return e.local.delivered.Load() }

// Shutdown stops the server and waits for it; safe to call more than once.
// Close the server's clients first, or they spend a while reconnecting.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
