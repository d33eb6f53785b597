// Package integration holds tests that run gatewayworker's tiers as
// separate OS processes of the real binary, connected by real NATS, with
// real clients: what a deployment does, with nothing shared in memory.
package integration
