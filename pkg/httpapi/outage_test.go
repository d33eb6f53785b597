package httpapi_test

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// TestNATSOutageAnswers503 stops the NATS server under a running stack:
// every documented route, queries and pushes alike, answers 503
// nats_unavailable (not 200 with an empty list, nor 202 for a push that
// would go nowhere), and pkg/api returns api.ErrNATSUnavailable. Once a
// server is back on the same port, the same calls succeed again.
func TestNATSOutageAnswers503(t *testing.T) {
	s := newStack(t, stackConfig{})
	doc := readOpenAPI(t, s)
	_, id := s.dial()
	require.NoError(t, s.api.JoinGroup(t.Context(), id, docGroup))
	require.NoError(t, s.api.BindUID(t.Context(), id, docUID))

	var routes []string
	for path, methods := range doc.Paths {
		for method := range methods {
			if path != "/v1/openapi.json" {
				routes = append(routes, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(routes)

	_, port, err := net.SplitHostPort(strings.TrimPrefix(s.e.URL(), "nats://"))
	require.NoError(t, err)
	s.e.Shutdown()
	require.Eventually(t, func() bool { return !s.apiBus.Connected() }, 10*time.Second, 10*time.Millisecond)

	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		op := doc.Paths[path][strings.ToLower(method)]
		s.fails(http.StatusServiceUnavailable, "nats_unavailable", method, docTarget(t, doc, path, op, id), docBody(t, op, id))
	}
	_, err = s.api.GetAllClientIDList(t.Context())
	require.ErrorIs(t, err, api.ErrNATSUnavailable)
	require.ErrorIs(t, s.api.SendToAll(t.Context(), []byte("x")), api.ErrNATSUnavailable)
	require.ErrorIs(t, s.api.SendToClient(t.Context(), id, []byte("x")), api.ErrNATSUnavailable)
	_, err = s.api.GetWorkerInfos(t.Context(), 100*time.Millisecond)
	require.ErrorIs(t, err, api.ErrNATSUnavailable)

	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	bustest.RunServer(t, bus.EmbeddedConfig{Port: p})
	require.Eventually(t, func() bool {
		status, m := s.call("GET", "/v1/gateways", nil)
		return status == http.StatusOK && len(m["gateways"].([]any)) == 1
	}, 20*time.Second, 50*time.Millisecond, "the API is back with the gateway once NATS is")
	s.ok(http.StatusAccepted, "POST", "/v1/send/all", `{"data":"back"}`)
}
