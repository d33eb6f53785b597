package api

import (
	"context"
	"time"
)

// Calls are the calls of a [Client] without its lifecycle (Close): what
// a worker's handlers get (worker.Client embeds it), so that a handler
// cannot close the API client its worker shares between all handlers.
// [*Client] implements it; TestCallsAreEveryMethodButClose keeps the two
// in step. Each method is documented on [Client].
type Calls interface {
	Available() error
	WithFrame(f Frame) Calls
	Recoverable() Calls
	GetHistory(ctx context.Context, kind, name, since string, limit int) (History, error)
	SetWebSocketType(ctx context.Context, clientID string, f Frame) error
	SendToClient(ctx context.Context, clientID string, data []byte) error
	SendToUID(ctx context.Context, uid string, data []byte) error
	SendToGroup(ctx context.Context, group string, data []byte, exclude ...string) error
	SendToAll(ctx context.Context, data []byte, exclude ...string) error
	SendToClients(ctx context.Context, clientIDs []string, data []byte, exclude ...string) error
	SendToUIDs(ctx context.Context, uids []string, data []byte) error
	SendToGroups(ctx context.Context, groups []string, data []byte, exclude ...string) error
	BindUID(ctx context.Context, clientID, uid string) error
	UnbindUID(ctx context.Context, clientID, uid string) error
	JoinGroup(ctx context.Context, clientID, group string) error
	LeaveGroup(ctx context.Context, clientID, group string) error
	Ungroup(ctx context.Context, group string) error
	CloseClient(ctx context.Context, clientID string, lastData []byte) error
	DestroyClient(ctx context.Context, clientID string) error
	AcceptClient(ctx context.Context, clientID, uid string) error
	RejectClient(ctx context.Context, clientID string, lastData []byte) error
	IsOnline(ctx context.Context, clientID string) (bool, error)
	GetSession(ctx context.Context, clientID string) (map[string]any, error)
	SetSession(ctx context.Context, clientID string, session map[string]any) error
	UpdateSession(ctx context.Context, clientID string, changes map[string]any) error
	SendToClientAsync(ctx context.Context, gatewayID, clientID string, data []byte) error
	GetAllClientIDCount(ctx context.Context) (int, error)
	GetAllClientIDList(ctx context.Context) ([]string, error)
	GetAllClientSessions(ctx context.Context) (map[string]map[string]any, error)
	GetClientIDsByUID(ctx context.Context, uid string) ([]string, error)
	IsUIDOnline(ctx context.Context, uid string) (bool, error)
	GetUIDByClientID(ctx context.Context, clientID string) (string, error)
	GetAllUIDList(ctx context.Context) ([]string, error)
	GetAllUIDCount(ctx context.Context) (int, error)
	GetClientIDListByGroup(ctx context.Context, group string) ([]string, error)
	GetClientCountByGroup(ctx context.Context, group string) (int, error)
	GetClientSessionsByGroup(ctx context.Context, group string) (map[string]map[string]any, error)
	GetUIDListByGroup(ctx context.Context, group string) ([]string, error)
	GetUIDCountByGroup(ctx context.Context, group string) (int, error)
	GetAllGroupIDList(ctx context.Context) ([]string, error)
	GetClientIDListByGroups(ctx context.Context, groups []string) ([]string, error)
	GetUIDListByGroups(ctx context.Context, groups []string) ([]string, error)
	GetAllGroupClientIDList(ctx context.Context) (map[string][]string, error)
	GetAllGroupClientIDCount(ctx context.Context) (map[string]int, error)
	GetAllGroupUIDList(ctx context.Context) (map[string][]string, error)
	GetAllGroupUIDCount(ctx context.Context) (map[string]int, error)
	GetGatewayIDs(ctx context.Context) ([]string, error)
	GetGatewayInfos(ctx context.Context) ([]GatewayInfo, error)
	GetWorkerInfos(ctx context.Context, wait time.Duration) ([]WorkerInfo, error)
}

var _ Calls = (*Client)(nil)
