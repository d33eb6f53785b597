package worker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestConfigErrorsNameTheField: New's errors say which field is wrong, its
// API's included. New does no I/O, so an unconnected bus.Conn will do.
func TestConfigErrorsNameTheField(t *testing.T) {
	b := new(bus.Conn)
	for field, cfg := range map[string]worker.Config{
		"Bus":                  {Handlers: workertest.Greeter},
		"OnMessage":            {Bus: b},
		"MaxConcurrency (-1)":  {Bus: b, Handlers: workertest.Greeter, MaxConcurrency: -1},
		"DrainTimeout (-1s)":   {Bus: b, Handlers: workertest.Greeter, DrainTimeout: -time.Second},
		"RequestTimeout (-1s)": {Bus: b, Handlers: workertest.Greeter, API: api.Config{RequestTimeout: -time.Second}},
		"QueryTimeout (-1ms)":  {Bus: b, Handlers: workertest.Greeter, API: api.Config{QueryTimeout: -time.Millisecond}},
		`subject prefix "a b"`: {Bus: b, Handlers: workertest.Greeter, Prefix: "a b"},
	} {
		_, err := worker.New(cfg)
		require.ErrorContains(t, err, field)
	}
	_, err := worker.New(worker.Config{Bus: b, ReapOnly: true})
	require.NoError(t, err, "a reap-only worker needs no handlers")
}
