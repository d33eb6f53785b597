// Package bench is the worker of the bench protocol (docs/architecture.md,
// "The bench protocol"). The protocol is fixed and deliberately tiny so that
// cmd/gwbench can drive this stack and other WebSocket servers (PHP
// GatewayWorker, centrifuge, plain nbio echo servers) with the same load and
// compare their numbers. Every frame is one of:
//
//	a:<p>      send <p> to every client (SendToAll)
//	j:<g>      join group <g>, then reply "ok" (or "err:<message>")
//	g:<g>:<p>  send <p> to the members of group <g>; <g> ends at the
//	           second colon and <p> may contain colons
//	other      echo the frame to its sender unchanged
//
// [Handlers] returns the handlers that cmd/gatewayworker runs for it. Echo is
// the message measured for throughput, so the parsing allocates nothing and
// echo passes the received bytes straight back.
package bench
