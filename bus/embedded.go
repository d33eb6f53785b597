package bus

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultEmbeddedHost is where an embedded server listens unless told otherwise.
const DefaultEmbeddedHost = "127.0.0.1"

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
	// MaxPayload is the largest message in bytes. Zero means the server's default (1 MiB).
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept clients. Zero means 10s.
	ReadyTimeout time.Duration
	// Logs turns on the server's own log on stderr.
	Logs bool
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a server and waits until it accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Port < 0 {
		return nil, fmt.Errorf("bus: embedded NATS port %d is negative", cfg.Port)
	}
	if cfg.Token != "" && (cfg.User != "" || cfg.Password != "") {
		return nil, errors.New("bus: embedded NATS takes a token or a user/password, not both")
	}
	host := cfg.Host
	if host == "" {
		host = DefaultEmbeddedHost
	}
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
	if wait == 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded NATS on %s:%d not ready after %v", host, port, wait)
	}
	return &Embedded{srv: srv}, nil
}

// URL is the address clients connect to.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it; safe to call more than once.
// Close the server's clients first, or they spend a while reconnecting.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
