package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

// TestAuthFailuresAreSlowedPerAddress: after AuthFailureBurst wrong keys,
// an address is answered 429 with Retry-After, even with the right key,
// while other addresses are served; so keys cannot be guessed at speed.
func TestAuthFailuresAreSlowedPerAddress(t *testing.T) {
	s := newStack(t, stackConfig{})
	h, err := httpapi.New(httpapi.Config{API: s.api, Keys: []string{testKey}})
	require.NoError(t, err)
	do := func(addr, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/groups", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const attacker, user = "203.0.113.7:40000", "198.51.100.2:50000"
	for i := range httpapi.AuthFailureBurst {
		require.Equal(t, http.StatusUnauthorized, do(attacker, "guess-"+strconv.Itoa(i)).Code, "failure %d", i)
	}
	w := do("203.0.113.7:40001", testKey) // same host, another port
	require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
	require.Contains(t, w.Body.String(), `"too_many_auth_failures"`)
	wait, err := strconv.Atoi(w.Header().Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, wait)
	require.LessOrEqual(t, wait, int(httpapi.AuthFailureRefill.Seconds()))

	require.Equal(t, http.StatusOK, do(user, testKey).Code, "another address is served")
}
