package api_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/internal/clientid"
	"github.com/gatewayworker/gatewayworker/pkg/api"
)

// TestErrorsAreTheAPIs: what NATS reports reaches callers as the API's
// own sentinels, which they can import (the bus's are internal).
func TestErrorsAreTheAPIs(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 1024})
	b := bustest.Connect(t, e, bus.Config{})
	a, err := api.New(api.Config{Bus: b, RequestTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	ctx := context.Background()

	err = a.SendToAll(ctx, make([]byte, 4096))
	require.ErrorIs(t, err, api.ErrTooLarge)

	// A gateway that hears commands and never answers them.
	subj, err := bus.NewSubjects("")
	require.NoError(t, err)
	sub, err := b.Subscribe(subj.Gateway("mute"), func(bus.Msg) {})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, b.Flush(ctx))
	err = a.SendToClient(ctx, clientid.Make("mute", 1, 1), []byte("hi"))
	require.ErrorIs(t, err, api.ErrGatewayUnavailable)
	require.ErrorIs(t, err, api.ErrTimeout)
}

// TestAPIShowsNoWireTypes: no call of the API takes or returns a type of
// the bus package, whose envelopes are no public API (the NATS connection
// in Config is the one bus type users hand in).
func TestAPIShowsNoWireTypes(t *testing.T) {
	client := reflect.TypeFor[*api.Client]()
	for i := range client.NumMethod() {
		m := client.Method(i)
		for j := range m.Type.NumIn() {
			requireNotBus(t, m.Name, m.Type.In(j))
		}
		for j := range m.Type.NumOut() {
			requireNotBus(t, m.Name, m.Type.Out(j))
		}
	}
}

func requireNotBus(t *testing.T, where string, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
		typ = typ.Elem()
	}
	require.False(t, strings.HasSuffix(typ.PkgPath(), "/bus"), "%s uses %v", where, typ)
	if typ.Kind() == reflect.Struct && typ.PkgPath() != "" {
		for i := range typ.NumField() {
			if typ.Field(i).IsExported() {
				requireNotBus(t, where+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
}

// TestFrameValuesAreTheWires: api.Frame is its own type (no wire type in
// the API's docs), so its values must stay the envelope's.
func TestFrameValuesAreTheWires(t *testing.T) {
	require.Equal(t, uint8(bus.FrameDefault), uint8(api.FrameDefault))
	require.Equal(t, uint8(bus.FrameText), uint8(api.FrameText))
	require.Equal(t, uint8(bus.FrameBinary), uint8(api.FrameBinary))
}
