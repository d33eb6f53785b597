package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// Defaults and bounds of the HTTP API.
const (
	// DefaultMaxBodyBytes bounds a request body when Config.MaxBodyBytes is zero.
	DefaultMaxBodyBytes = 1 << 20
	// MaxBatchCalls is the most calls one POST /v1/batch may hold.
	MaxBatchCalls = 100
	// OpenAPIPath serves the OpenAPI 3.1 document, without authentication.
	OpenAPIPath = "/v1/openapi.json"
)

// Config configures the handler returned by [New].
type Config struct {
	// API is the client every call goes through. Required; the handler
	// never closes it.
	API *api.Client
	// Keys are the API keys accepted, sent as "Authorization: Bearer <key>"
	// or "X-API-Key: <key>" and compared in constant time. Empty means no
	// authentication at all: serve such a handler on loopback only.
	Keys []string
	// MaxBodyBytes bounds a request body (a batch's included); a larger one
	// is refused with 413 before anything is sent. Zero means
	// DefaultMaxBodyBytes (1 MiB); negative is an error.
	MaxBodyBytes int64
	// Logger receives server-side failures (5xx answers), never payloads,
	// sessions or keys. Nil means slog.Default().
	Logger *slog.Logger
}

//go:embed openapi.json
var openAPIDoc []byte

// handler is the HTTP API. It keeps no state between requests.
type handler struct {
	api    *api.Client
	keys   [][sha256.Size]byte
	max    int64
	log    *slog.Logger
	mux    *http.ServeMux
	origin *http.CrossOriginProtection
	fails  *authLimiter
}

// New returns the HTTP API on cfg.API. It does no I/O.
func New(cfg Config) (http.Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("httpapi: Config.API is required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("httpapi: MaxBodyBytes (%d) must not be negative", cfg.MaxBodyBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &handler{
		api:    cfg.API,
		max:    cfg.MaxBodyBytes,
		log:    cfg.Logger,
		mux:    http.NewServeMux(),
		origin: http.NewCrossOriginProtection(),
		fails:  newAuthLimiter(),
	}
	for i, k := range cfg.Keys {
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t\r\n,") {
			return nil, fmt.Errorf("httpapi: Keys[%d] is empty or holds spaces or commas", i)
		}
		h.keys = append(h.keys, sha256.Sum256([]byte(k)))
	}
	for _, rt := range routes() {
		h.mux.Handle(rt.pattern, h.serveRoute(rt))
	}
	h.mux.HandleFunc("POST /v1/batch", h.serveBatch)
	return h, nil
}

// ServeHTTP checks the key, the origin and the body size, then routes.
// Nothing of a request refused here reaches NATS.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == OpenAPIPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(openAPIDoc)
		return
	}
	if len(h.keys) > 0 {
		if wait := h.fails.wait(r.RemoteAddr, time.Now()); wait > 0 {
			w.Header().Set("Retry-After", retryAfter(wait))
			writeError(w, errorf(http.StatusTooManyRequests, codeTooManyAuthFailures,
				"too many failed authentications from this address: retry in %ss", retryAfter(wait)))
			return
		}
	}
	if !h.authorized(r) {
		h.fails.fail(r.RemoteAddr, time.Now())
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatewayworker"`)
		writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized,
			`missing or wrong API key: send "Authorization: Bearer <key>" or "X-API-Key: <key>"`))
		return
	}
	// Browsers mark cross-site requests; a page on another site must not
	// be able to push through a user's own loopback API.
	if err := h.origin.Check(r); err != nil {
		writeError(w, errorf(http.StatusForbidden, codeForbidden, "cross-origin browser request refused: %v", err))
		return
	}
	if r.ContentLength > h.max {
		writeError(w, tooLarge(h.max))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.max)
	h.route(w, r)
}

// authorized compares the request's key with every configured key in
// constant time: hashing first makes the comparison independent of the
// keys' lengths too, and no early exit says which key came close.
func (h *handler) authorized(r *http.Request) bool {
	if len(h.keys) == 0 {
		return true
	}
	given := r.Header.Get("X-API-Key")
	if auth := r.Header.Get("Authorization"); given == "" && auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			given = strings.TrimSpace(token)
		}
	}
	if given == "" {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	match := 0
	for _, k := range h.keys {
		match |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return match == 1
}

// route serves r on the mux, turning its plain-text 404 and 405 answers
// (and its redirects of unclean paths) into JSON errors.
func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	var probe capture
	h.mux.ServeHTTP(&probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		writeError(w, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed,
			"%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow")))
		return
	}
	writeError(w, errorf(http.StatusNotFound, codeNotFound, "no route %s %s (see %s)", r.Method, r.URL.Path, OpenAPIPath))
}

// capture is a ResponseWriter that keeps what a handler wrote: the mux's
// fallback answers, and the answers of a batch's calls.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(p)
}

// Error codes: stable strings in every error body (docs/http-api.md).
const (
	codeUnauthorized = "unauthorized"
	// codeTooManyAuthFailures: see AuthFailureBurst.
	codeTooManyAuthFailures = "too_many_auth_failures"
	codeForbidden           = "forbidden"
	codeNotFound            = "not_found"
	codeMethodNotAllowed    = "method_not_allowed"
	codeBodyTooLarge        = "body_too_large"
	codeBadJSON             = "bad_json"
	codeInvalidArgument     = "invalid_argument"
	codeClientNotFound      = "client_not_found"
	codeLimitExceeded       = "limit_exceeded"
	codeGatewayUnavailable  = "gateway_unavailable"
	codeNATSUnavailable     = "nats_unavailable"
	codeNoHistory           = "no_history"
	codeInternal            = "internal"
)

// apiError is an error answer: its status, code and message.
type apiError struct {
	status  int
	code    string
	message string
	// call is the index of the batch call at fault, or -1.
	call int
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...), call: -1}
}

func invalid(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codeInvalidArgument, format, args...)
}

func tooLarge(limit int64) *apiError {
	return errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body over %d bytes", limit)
}

// classify maps an error of a call to its answer. Errors of pkg/api are
// matched with errors.Is, never by their text.
func classify(err error) *apiError {
	var ae *apiError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &tooBig):
		return tooLarge(tooBig.Limit)
	case errors.Is(err, api.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "%v", err)
	case errors.Is(err, api.ErrClientNotFound):
		return errorf(http.StatusNotFound, codeClientNotFound, "%v", err)
	case errors.Is(err, api.ErrInvalidClientID), errors.Is(err, api.ErrInvalidName), errors.Is(err, api.ErrBadRequest):
		return invalid("%v", err)
	case errors.Is(err, api.ErrLimit):
		return errorf(http.StatusConflict, codeLimitExceeded, "%v", err)
	case errors.Is(err, api.ErrNATSUnavailable):
		// Before the gateway's cases: a query during an outage must not
		// look like an empty deployment, nor a push like a slow gateway.
		return errorf(http.StatusServiceUnavailable, codeNATSUnavailable, "%v", err)
	case errors.Is(err, api.ErrNoHistory):
		return errorf(http.StatusServiceUnavailable, codeNoHistory, "%v", err)
	case errors.Is(err, api.ErrGatewayUnavailable), errors.Is(err, api.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, codeGatewayUnavailable, "%v", err)
	}
	return errorf(http.StatusInternalServerError, codeInternal, "internal error (logged by the server)")
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Call is the index of the batch call at fault.
	Call *int `json:"call,omitempty"`
}

func (e *apiError) body() errorBody {
	b := errorBody{Error: errorDetail{Code: e.code, Message: e.message}}
	if e.call >= 0 {
		call := e.call
		b.Error.Call = &call
	}
	return b
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, e.body())
}

// encode renders v as one line of JSON, HTML characters left as they are.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := encode(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = encode(errorf(status, codeInternal, "answer not encodable as JSON: %v", err).body())
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// run executes a parsed call and renders its answer: the success body, or
// the error body of what went wrong. 5xx answers are logged.
func (h *handler) run(ctx context.Context, method, pattern string, c call) (int, []byte) {
	status, body, err := c(ctx, h.api)
	if err == nil {
		var b []byte
		if b, err = encode(body); err == nil {
			return status, b
		}
		err = fmt.Errorf("httpapi: answer not encodable as JSON: %w", err)
	}
	e := classify(err)
	switch {
	case e.status == http.StatusInternalServerError:
		h.log.Error("http api call failed", "method", method, "route", pattern, "err", err)
	case e.status >= 500:
		h.log.Warn("http api call failed", "method", method, "route", pattern, "err", err)
	}
	b, _ := encode(e.body())
	return e.status, b
}
