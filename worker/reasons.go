package worker

import "github.com/gatewayworker/gatewayworker/internal/bus"

// CloseReason says why a client left: [CloseEvent.Reason]. Its String is
// the reason in words ("slow consumer"), as metrics label it.
type CloseReason = bus.CloseReason

// Close reasons, as gateways record them. The values travel between
// processes and never change; TestWorkerListsEveryCloseReason keeps this
// list complete.
const (
	CloseUnknown          = bus.CloseUnknown
	CloseClientClosed     = bus.CloseClientClosed
	CloseHeartbeatTimeout = bus.CloseHeartbeatTimeout
	CloseSlowConsumer     = bus.CloseSlowConsumer
	CloseMessageTooLarge  = bus.CloseMessageTooLarge
	CloseProtocolError    = bus.CloseProtocolError
	ClosedByAPI           = bus.ClosedByAPI
	CloseGatewayShutdown  = bus.CloseGatewayShutdown
	CloseGatewayLost      = bus.CloseGatewayLost
	CloseEventQueueFull   = bus.CloseEventQueueFull
	CloseRateLimited      = bus.CloseRateLimited
	CloseServerFull       = bus.CloseServerFull
	CloseTokenExpired     = bus.CloseTokenExpired
	CloseUnauthorized     = bus.CloseUnauthorized
)

// EventKind is the kind of event a handler ran for, as
// [Config.ObserveHandler] reports it; its String is the snake_case name
// metrics label it with.
type EventKind = bus.EventKind

// Event kinds, in the order a client's events happen.
const (
	EventConnect          = bus.EventConnect
	EventWebSocketConnect = bus.EventWebSocketConnect
	EventMessage          = bus.EventMessage
	EventClose            = bus.EventClose
)
