// Package httpapi serves the push and query API of pkg/api as JSON over
// HTTP, so that a program in any language (a PHP site, a cron job in
// Python, a curl command) can send to clients, uids, groups and everyone,
// manage membership and sessions, and ask every live gateway about its
// clients, without speaking NATS or msgpack.
//
// [New] returns an http.Handler with one route per API call (listed in
// docs/http-api.md and in the OpenAPI 3.1 document it serves at
// [OpenAPIPath]), a batch route that runs up to [MaxBatchCalls] calls in
// one request, API-key authentication, a request body limit, and errors as
// JSON with stable codes. A request that is refused (bad key, cross-origin
// browser request, body too large, malformed JSON, invalid argument,
// unknown route) sends nothing to NATS, and a batch is checked whole before
// its first call runs. `gatewayworker api` serves this handler.
package httpapi
