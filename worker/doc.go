// Package worker is the runtime of business workers: the processes that
// run user handlers for client events. A worker takes event batches from
// the NATS queue group that all workers share, so any number can run and
// none owns a client. Each gateway keeps at most one unacknowledged batch
// per client, so a client's events reach handlers in order and never two at
// once, whichever worker takes them (docs/architecture.md, G1). The worker
// acknowledges a batch after its handlers returned, carrying the client's
// changed session back; a batch a dead worker never acknowledged goes to
// another (at-least-once, G2), and Run drains in-flight batches when its
// context ends (G3). With Config.Sticky, a client's batches go to the
// worker that ran its previous one while that worker runs (GatewayWorker's
// routerBind), for handlers that keep per-client state in memory; the
// guarantees stay the same (docs/protocol.md, "Sticky workers").
package worker
