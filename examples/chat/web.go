package chat

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/pkg/jsclient"
)

//go:embed web
var webFiles embed.FS

// Security headers. The page has inline script and style, and connects
// to the gateway, which listens on another port than the page: only to the
// gateways of its config (connect-src), so a crafted ?ws= link cannot send
// a user's name and messages elsewhere. No other site may frame it.
const (
	cspFormat = "default-src 'self'; connect-src 'self' %s; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
	noSniff   = "nosniff"
)

// WebConfig configures the page server.
type WebConfig struct {
	// WebSocketURL is what the page connects to, e.g.
	// "ws://127.0.0.1:7272/". Required: a ws:// or wss:// URL.
	WebSocketURL string
	// WebSocketOrigins are further gateways ("wss://chat2.example.com")
	// that a link may point the page at with ?ws=. Without them the page
	// connects only to WebSocketURL's origin and its own.
	WebSocketOrigins []string
	// API answers the stats panel (gateways and connections); nil
	// disables /api/stats (404).
	API *api.Client
	// HeartbeatTimeout is how long the page waits without hearing anything
	// before it takes its connection for dead and reconnects: about 2.5 ×
	// the gateway's PingInterval, whose PingData ({"type":"ping"}) pages
	// hear (browsers do not show WebSocket pings). Zero: the page never does.
	HeartbeatTimeout time.Duration
}

// wsOrigin returns the origin ("ws://host:port") of a ws:// or wss:// URL.
func wsOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("chat: %q must be a ws:// or wss:// URL", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// stats is the answer of /api/stats.
type stats struct {
	Gateways    int `json:"gateways"`
	Connections int `json:"connections"`
	// Partial says some gateway did not answer in time: the counts are
	// those of the gateways that did.
	Partial bool `json:"partial,omitempty"`
}

// NewWebHandler returns an http.Handler serving the page at "/", the
// JavaScript client it uses at "/gatewayworker.js" (pkg/jsclient), its
// settings at "/config.json" ({"ws_url": ..., "ws_origins": [...]}: the
// origins ?ws= may name, "heartbeat_timeout_ms": ...) and, when cfg.API is set,
// the stats panel's counts at "/api/stats" ({"gateways":N,"connections":N}).
// Other paths are 404. It does no I/O until a request comes.
func NewWebHandler(cfg WebConfig) (http.Handler, error) {
	if cfg.WebSocketURL == "" {
		return nil, errors.New("chat: WebConfig.WebSocketURL is required")
	}
	var origins []string
	for _, raw := range append([]string{cfg.WebSocketURL}, cfg.WebSocketOrigins...) {
		o, err := wsOrigin(raw)
		if err != nil {
			return nil, err
		}
		origins = append(origins, o)
	}
	csp := fmt.Sprintf(cspFormat, strings.Join(origins, " "))
	page, err := webFiles.ReadFile("web/index.html")
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err) // only if the embed pattern is broken
	}
	if cfg.HeartbeatTimeout < 0 {
		return nil, errors.New("chat: WebConfig.HeartbeatTimeout must not be negative")
	}
	conf, err := json.Marshal(struct {
		WSURL       string   `json:"ws_url"`
		WSOrigins   []string `json:"ws_origins"`
		HeartbeatMS int64    `json:"heartbeat_timeout_ms,omitempty"`
	}{cfg.WebSocketURL, origins, cfg.HeartbeatTimeout.Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}

	mux := http.NewServeMux()
	// "GET" patterns answer HEAD too; other methods get 405.
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
	// No icon: answering the browser's request spares every page load a 404.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	// The page's WebSocket client (pkg/jsclient), same origin as the page.
	mux.Handle("GET "+jsclient.Path, jsclient.Handler())
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, conf)
	})
	if cfg.API != nil {
		mux.HandleFunc("GET /api/stats", statsHandler(cfg.API))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", noSniff)
		w.Header().Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
		mux.ServeHTTP(w, r)
	}), nil
}

// statsHandler counts gateways and connections. The API bounds both
// queries (api.Config.QueryTimeout), and a partial answer, when a gateway
// is slow or just died, is still worth showing.
func statsHandler(a *api.Client) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var st stats
		ids, err := a.GetGatewayIDs(r.Context())
		if !usable(err, &st) {
			writeJSON(w, http.StatusServiceUnavailable, []byte(`{"error":"gateways unreachable"}`))
			return
		}
		st.Gateways = len(ids)
		st.Connections, err = a.GetAllClientIDCount(r.Context())
		if !usable(err, &st) {
			writeJSON(w, http.StatusServiceUnavailable, []byte(`{"error":"gateways unreachable"}`))
			return
		}
		body, err := json.Marshal(st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// usable reports whether a query's result can be shown: it can when the
// query succeeded or answered in part, which it notes in st.
func usable(err error, st *stats) bool {
	var partial *api.QueryError
	switch {
	case err == nil:
		return true
	case errors.As(err, &partial):
		st.Partial = true
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
