// Package bus is gatewayworker's NATS wiring, and the only package that
// imports nats.go or nats-server: connection options (credentials, TLS,
// reconnect), the embedded single-node server, the subject names of
// docs/architecture.md ("The subjects") with a safe encoding for user strings, and the
// msgpack envelopes that gateways, workers and API clients exchange.
package bus
