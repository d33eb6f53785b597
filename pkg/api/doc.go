// Package api is the push and query API of gatewayworker, the Go form of
// GatewayWorker's Gateway class and GatewayClient: send to a client, a uid, a
// group or everyone; bind uids, join groups, read and write sessions, close
// clients; and ask every live gateway about its clients. Workers get it
// through their [worker.Client]; any other Go program (an HTTP handler, a
// cron job) creates one with [New] on a NATS connection and uses it without
// consuming client events.
//
// Sends to groups, uids and everyone are published once and delivered at
// most once, like GatewayWorker's. Calls that name one client are requests
// that the client's gateway answers, so they report ErrClientNotFound.
// Every call takes a context; one without a deadline is bounded by
// Config.RequestTimeout, so no call waits forever (docs/architecture.md, G6).
package api
