package bus

import "strconv"

// CloseReason says why a client connection ended. Workers see it in the
// close event; it travels on the wire as one byte, so values never change.
type CloseReason uint8

// Close reasons. Zero is reserved for "unknown" so a missing field is visible.
const (
	// CloseUnknown is the zero value: no reason was recorded.
	CloseUnknown CloseReason = iota
	// CloseClientClosed: the client closed the connection or it broke.
	CloseClientClosed
	// CloseHeartbeatTimeout: the client sent nothing for PingInterval × PingNotResponseLimit.
	CloseHeartbeatTimeout
	// CloseSlowConsumer: the client did not read and its send queue passed the byte limit.
	CloseSlowConsumer
	// CloseMessageTooLarge: the client sent a message over the size limit.
	CloseMessageTooLarge
	// CloseProtocolError: the client sent bytes its protocol cannot decode.
	CloseProtocolError
	// ClosedByAPI: CloseClient or DestroyClient was called for it.
	ClosedByAPI
	// CloseGatewayShutdown: its gateway is stopping.
	CloseGatewayShutdown
	// CloseGatewayLost: its gateway lost NATS for longer than its
	// NATSLossTimeout, or vanished.
	CloseGatewayLost
	// CloseEventQueueFull: the client sent faster than workers acknowledged,
	// past the gateway's pending-event byte limit.
	CloseEventQueueFull
	// CloseRateLimited: the client sent more messages per second than allowed.
	CloseRateLimited
)

var closeReasonNames = [...]string{
	CloseUnknown:          "unknown",
	CloseClientClosed:     "client closed",
	CloseHeartbeatTimeout: "heartbeat timeout",
	CloseSlowConsumer:     "slow consumer",
	CloseMessageTooLarge:  "message too large",
	CloseProtocolError:    "protocol error",
	ClosedByAPI:           "closed by api",
	CloseGatewayShutdown:  "gateway shutdown",
	CloseGatewayLost:      "gateway lost",
	CloseEventQueueFull:   "event queue full",
	CloseRateLimited:      "rate limited",
}

// String returns the reason in words.
func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return "close reason " + strconv.Itoa(int(r))
}
