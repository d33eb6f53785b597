// Package gateway owns client sockets and never runs business logic. It
// accepts WebSocket and raw TCP connections on lesismal/nbio (no goroutine per
// idle connection), gives each a client id, keeps its session and its group
// and uid memberships, and forwards its events to the worker queue group as
// NATS requests: one unacknowledged batch per client, so a client's events
// reach handlers in order whichever worker takes them, and a batch that a
// dead worker never acknowledged is sent again (at-least-once). It executes
// the pushes and commands that workers and API clients send, and answers the
// cluster-wide queries about its own clients. With an AuthConfig it lets a
// client in only after a connection token it verified, or a worker's
// accept (auth.go); every close it decides tells a WebSocket client why in
// the close code of bus.CloseReason.WSCode.
package gateway
