// Package httppush shows the API client outside a worker: a plain net/http
// handler, as a web application would have, that pushes a notification to
// every connection of a user (GatewayWorker's GatewayClient, in Go).
package httppush

import (
	"errors"
	"io"
	"net/http"

	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// MaxBody bounds a notification.
const MaxBody = 64 << 10

// NewHandler serves POST /notify?uid=<uid> and pushes the request body to
// every client bound to uid, on any gateway.
func NewHandler(a *api.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notify", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		err = a.SendToUID(r.Context(), r.URL.Query().Get("uid"), body)
		switch {
		case errors.Is(err, api.ErrInvalidName):
			http.Error(w, "uid: "+err.Error(), http.StatusBadRequest)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	return mux
}
