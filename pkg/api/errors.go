package api

import (
	"errors"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// Errors of the NATS connection under the API, for errors.Is. The API
// returns them (wrapping what NATS said) instead of the bus's own, which
// are no public API.
var (
	// ErrTimeout means a gateway, or NATS itself, did not answer in time
	// (ctx's deadline or Config.RequestTimeout).
	ErrTimeout = errors.New("api: timed out")
	// ErrTooLarge means a message is over the NATS server's max payload
	// (1 MiB by default): nothing was sent.
	ErrTooLarge = errors.New("api: message over the NATS server's max payload")
	// ErrPermission means the NATS server refused a subject to this
	// connection's credentials.
	ErrPermission = errors.New("api: permission denied by the NATS server")
	// ErrBadReply means an answer from a gateway or worker could not be
	// decoded: a process of another, incompatible version.
	ErrBadReply = errors.New("api: undecodable answer")
)

// fromBus are the bus errors and the API's error for each.
var fromBus = []struct{ bus, api error }{
	{bus.ErrTimeout, ErrTimeout},
	{bus.ErrMaxPayload, ErrTooLarge},
	{bus.ErrPermission, ErrPermission},
	{bus.ErrClosed, ErrNATSUnavailable},
	{bus.ErrBadEnvelope, ErrBadReply},
}

// busError is a bus error as the API returns it: the same text, and
// errors.Is matches the API's sentinel.
type busError struct {
	sentinel, err error
}

func (e *busError) Error() string        { return e.err.Error() }
func (e *busError) Unwrap() error        { return e.err }
func (e *busError) Is(target error) bool { return target == e.sentinel }

// ofBus returns err with the API's sentinel for the bus error it holds.
func ofBus(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range fromBus {
		if errors.Is(err, m.bus) {
			if errors.Is(err, m.api) {
				return err
			}
			return &busError{sentinel: m.api, err: err}
		}
	}
	return err
}
