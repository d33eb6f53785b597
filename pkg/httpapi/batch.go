package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// slotKey marks a batch's check pass in a request's context: the route
// parses the call and leaves it in the slot instead of running it.
type slotKey struct{}

type slot struct {
	call    call
	pattern string
	method  string
}

type batchCall struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
}

type batchResult struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

type batchBody struct {
	Results []batchResult `json:"results"`
}

// serveBatch runs up to MaxBatchCalls calls, in order, through the same
// routes as single requests. Every call is parsed and checked first; if
// one is malformed the batch is refused whole and nothing is sent. Then
// the calls run one after the other, and each gets its own status and
// body, as if it had been sent alone.
func (h *handler) serveBatch(w http.ResponseWriter, r *http.Request) {
	// prepare never routes to a batch; this holds should a path slip by.
	if _, checking := r.Context().Value(slotKey{}).(*slot); checking {
		writeError(w, invalid("a batch may not hold a batch"))
		return
	}
	var req struct {
		Calls []batchCall `json:"calls"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeError(w, classify(err))
		return
	}
	switch {
	case req.Calls == nil:
		writeError(w, invalid(`calls is required: an array of {"method", "path", "body"}`))
		return
	case len(req.Calls) > MaxBatchCalls:
		writeError(w, invalid("calls holds %d calls, at most %d", len(req.Calls), MaxBatchCalls))
		return
	}
	slots := make([]*slot, len(req.Calls))
	for i, c := range req.Calls {
		s, err := h.prepare(r, i, c)
		if err != nil {
			writeError(w, err)
			return
		}
		slots[i] = s
	}
	// Refused whole during a NATS outage, like a single call, rather than
	// 200 with every call failed.
	if err := h.api.Available(); err != nil {
		writeError(w, classify(err))
		return
	}
	out := batchBody{Results: make([]batchResult, len(slots))}
	for i, s := range slots {
		status, b := h.run(r.Context(), s.method, s.pattern, s.call)
		out.Results[i] = batchResult{Status: status, Body: bytes.TrimSuffix(b, []byte("\n"))}
	}
	writeJSON(w, http.StatusOK, out)
}

// prepare parses call i of a batch through the router, without running it.
func (h *handler) prepare(r *http.Request, i int, c batchCall) (*slot, *apiError) {
	fail := func(e *apiError) *apiError {
		code := e.code
		if code != codeBadJSON {
			code = codeInvalidArgument
		}
		out := errorf(http.StatusBadRequest, code, "calls[%d] (%s %s): %s", i, c.Method, c.Path, e.message)
		out.call = i
		return out
	}
	method := strings.ToUpper(c.Method)
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return nil, fail(invalid("method %q: want GET, POST, PUT, PATCH or DELETE", c.Method))
	}
	body := []byte(c.Body)
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		body = nil
	}
	s := &slot{method: method}
	// The path is checked as the request that routes it parsed it: another
	// parser once read "/v1/batch#x" as a path of its own, and the router
	// then ran that nested batch during the check.
	inner, err := http.NewRequestWithContext(r.Context(), method, c.Path, bytes.NewReader(body))
	if err != nil || !strings.HasPrefix(c.Path, "/v1/") || inner.URL.Fragment != "" ||
		!strings.HasPrefix(inner.URL.Path, "/v1/") || inner.URL.Path == "/v1/batch" || inner.URL.Path == OpenAPIPath {
		return nil, fail(invalid("path %q: want a route of this API such as /v1/send/uid (not a batch, no fragment)", c.Path))
	}
	inner = inner.WithContext(context.WithValue(inner.Context(), slotKey{}, s))
	var answer capture
	h.route(&answer, inner)
	if s.call != nil {
		return s, nil
	}
	var eb errorBody
	if json.Unmarshal(answer.body.Bytes(), &eb) != nil || eb.Error.Code == "" {
		return nil, fail(errorf(http.StatusInternalServerError, codeInternal, "call refused with status %d", answer.status))
	}
	return nil, fail(&apiError{status: answer.status, code: eb.Error.Code, message: eb.Error.Message, call: -1})
}
