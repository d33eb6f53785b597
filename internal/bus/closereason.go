package bus

import "strconv"

// CloseReason says why a client connection ended. Workers see it in the
// close event; it travels on the wire as one byte, so values never change:
// new reasons are appended.
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
	// CloseServerFull: the gateway had MaxConnections clients already when
	// the client's WebSocket upgrade finished. Workers never see it (the
	// client never had a connect event); it exists for the close code and
	// the gateway's counters.
	CloseServerFull
	// CloseTokenExpired: the client's connection token expired and no fresh
	// one came in time.
	CloseTokenExpired
	// CloseUnauthorized: the client's token was missing, malformed, forged,
	// signed with a refused algorithm or key, or a worker rejected the
	// pending client.
	CloseUnauthorized
)

// NumCloseReasons is one more than the highest CloseReason: the size of a
// table indexed by reason.
const NumCloseReasons = int(CloseUnauthorized) + 1

// closeReasonInfo is one reason's name and what a WebSocket client gets.
type closeReasonInfo struct {
	name string
	// code and text are the WebSocket close frame's status code and reason.
	code uint16
	text string
}

// closeReasons is the one table of close reasons, their names and their
// WebSocket close codes (docs/clients.md, "Close codes", lists it for
// client developers). Codes 4000-4499 mean "reconnect, with backoff and
// jitter", 4500-4999 "do not reconnect by yourself: the app must act".
var closeReasons = [NumCloseReasons]closeReasonInfo{
	CloseUnknown:          {"unknown", 1000, ""},
	CloseClientClosed:     {"client closed", 1000, ""},
	CloseHeartbeatTimeout: {"heartbeat timeout", 4006, "heartbeat timeout"},
	CloseSlowConsumer:     {"slow consumer", 4002, "slow consumer"},
	CloseMessageTooLarge:  {"message too large", 4503, "message too large"},
	CloseProtocolError:    {"protocol error", 1002, "protocol error"},
	ClosedByAPI:           {"closed by api", 4500, "kicked"},
	CloseGatewayShutdown:  {"gateway shutdown", 4000, "gateway shutdown"},
	CloseGatewayLost:      {"gateway lost", 4001, "gateway lost nats"},
	CloseEventQueueFull:   {"event queue full", 4005, "event queue full"},
	CloseRateLimited:      {"rate limited", 4004, "rate limited"},
	CloseServerFull:       {"server full", 4003, "server full"},
	CloseTokenExpired:     {"token expired", 4501, "token expired"},
	CloseUnauthorized:     {"unauthorized", 4502, "unauthorized"},
}

// String returns the reason in words.
func (r CloseReason) String() string {
	if int(r) < len(closeReasons) {
		return closeReasons[r].name
	}
	return "close reason " + strconv.Itoa(int(r))
}

// WSCode returns the WebSocket close code a client closed for r gets: 4000-4499
// tells it to reconnect (with backoff and jitter), 4500-4999 not to
// reconnect by itself; 1002 is a protocol error, 1000 a normal close. An
// unknown reason gets 1000.
func (r CloseReason) WSCode() int {
	if int(r) < len(closeReasons) {
		return int(closeReasons[r].code)
	}
	return 1000
}

// WSText returns the short reason text of r's WebSocket close frame
// ("slow consumer"); empty for a normal close.
func (r CloseReason) WSText() string {
	if int(r) < len(closeReasons) {
		return closeReasons[r].text
	}
	return ""
}
