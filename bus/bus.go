// Package bus connects gatewayworker's processes through NATS. It is what
// a program needs around gateway.New, worker.New and api.New: a NATS
// connection ([Connect]), the single-node server that `gatewayworker run`
// embeds ([StartEmbedded]), and the subjects and permissions of each
// process role ([Subjects]).
//
// The messages that cross NATS between gateways, workers and API clients
// (docs/protocol.md) are internal/bus's and no public API: they may change
// between releases. The names here are aliases of internal/bus's, so a
// *Conn made here is the one gateway.Config.Bus takes.
package bus

import (
	"context"

	internal "github.com/gatewayworker/gatewayworker/internal/bus"
)

type (
	// Config says how to reach NATS (see its fields for the defaults).
	Config = internal.Config
	// TLSConfig configures TLS to NATS.
	TLSConfig = internal.TLSConfig
	// Conn is a NATS connection, safe for concurrent use.
	Conn = internal.Conn
	// Msg is a message received on a [Conn].
	Msg = internal.Msg
	// Handler receives the messages of one subscription.
	Handler = internal.Handler
	// Subscription is an interest in a subject.
	Subscription = internal.Subscription
	// EmbeddedConfig configures an in-process NATS server.
	EmbeddedConfig = internal.EmbeddedConfig
	// EmbeddedUser is one client identity of an embedded server.
	EmbeddedUser = internal.EmbeddedUser
	// Embedded is a running in-process NATS server.
	Embedded = internal.Embedded
	// Subjects names a deployment's NATS subjects, for permissions.
	Subjects = internal.Subjects
	// Role is a kind of gatewayworker process, for NATS permissions.
	Role = internal.Role
	// HistoryConfig limits the history stream of recoverable pushes
	// (gateway.Config.History).
	HistoryConfig = internal.HistoryConfig
	// Storage is where the history stream keeps its messages.
	Storage = internal.Storage
)

// Storage kinds of [HistoryConfig].
const (
	StorageFile   = internal.StorageFile
	StorageMemory = internal.StorageMemory
)

// Roles.
const (
	RoleGateway = internal.RoleGateway
	RoleWorker  = internal.RoleWorker
	RoleAPI     = internal.RoleAPI
)

// Defaults.
const (
	DefaultPrefix               = internal.DefaultPrefix
	DefaultEmbeddedHost         = internal.DefaultEmbeddedHost
	DefaultEmbeddedReadyTimeout = internal.DefaultEmbeddedReadyTimeout
	DefaultReconnectWait        = internal.DefaultReconnectWait
	DefaultPingInterval         = internal.DefaultPingInterval
	DefaultMaxPingsOut          = internal.DefaultMaxPingsOut
	DefaultReconnectBufSize     = internal.DefaultReconnectBufSize
	DefaultRequestTimeout       = internal.DefaultRequestTimeout
	// PendingMsgs and PendingBytes bound what waits in nats.go for one
	// subscription (README, "Overload").
	PendingMsgs  = internal.PendingMsgs
	PendingBytes = internal.PendingBytes
)

// Errors of a [Conn], for errors.Is. pkg/api returns its own.
var (
	ErrNoResponders = internal.ErrNoResponders
	ErrTimeout      = internal.ErrTimeout
	ErrClosed       = internal.ErrClosed
	ErrMaxPayload   = internal.ErrMaxPayload
	ErrPermission   = internal.ErrPermission
	ErrInvalidToken = internal.ErrInvalidToken
)

// Connect connects to NATS and waits until it is connected or ctx ends.
func Connect(ctx context.Context, cfg Config) (*Conn, error) { return internal.Connect(ctx, cfg) }

// StartEmbedded starts a NATS server in this process and waits until it
// accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) { return internal.StartEmbedded(cfg) }

// NewSubjects returns the subjects of the deployment with this prefix
// (empty means DefaultPrefix).
func NewSubjects(prefix string) (Subjects, error) { return internal.NewSubjects(prefix) }
