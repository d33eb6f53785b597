// Package jsclient serves gatewayworker.js, the browser client of the
// gateway: one dependency-free ES module (GatewayClient) that connects with
// a token, reconnects with backoff and jitter as the gateway's close codes
// say, notices dead connections, queues sends while reconnecting, and
// sends and receives text and binary frames. docs/clients.md describes it.
//
// The file is pkg/jsclient/gatewayworker.js in the repository; the
// gateway binary serves it at [Path] beside the chat page.
package jsclient

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
)

// Path is where the gateway binary serves the module.
const Path = "/gatewayworker.js"

// Source is the module.
//
//go:embed gatewayworker.js
var Source []byte

// etag identifies this build's module, so that browsers revalidate cheaply.
var etag = func() string {
	sum := sha256.Sum256(Source)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// Handler serves the module to GET and HEAD requests, with a JavaScript
// content type (which browsers require of modules), an ETag, and
// no-cache so that a new gateway's client is picked up at once.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(Source)
	})
}
