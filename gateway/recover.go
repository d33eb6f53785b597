package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// Bounds of the recover query parameter (docs/protocol.md, "Recovery").
const (
	// MaxRecoverBytes bounds the parameter's JSON (after URL decoding).
	MaxRecoverBytes = 16 << 10
	// MaxRecoverChannels bounds the channels it names.
	MaxRecoverChannels = 256
)

// ErrBadRecover means a recover query parameter the gateway refuses (HTTP 400).
var ErrBadRecover = errors.New("gateway: bad recover parameter")

// parseRecover reads the recover query parameter: a JSON object of
// channel ("u:<uid>", "g:<group>") → position ("<epoch>:<seq>"), at most
// MaxRecoverBytes and MaxRecoverChannels. "{}" opts in with no position.
func parseRecover(raw string) (map[bus.Channel]bus.Position, error) {
	if len(raw) > MaxRecoverBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRecover, len(raw), MaxRecoverBytes)
	}
	if !strings.HasPrefix(strings.TrimLeft(raw, " \t\r\n"), "{") {
		return nil, fmt.Errorf("%w: want a JSON object of channel to position", ErrBadRecover)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("%w: want a JSON object of channel to position: %v", ErrBadRecover, err)
	}
	if len(m) > MaxRecoverChannels {
		return nil, fmt.Errorf("%w: %d channels, at most %d", ErrBadRecover, len(m), MaxRecoverChannels)
	}
	out := make(map[bus.Channel]bus.Position, len(m))
	for k, v := range m {
		ch, err := bus.ParseChannel(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRecover, err)
		}
		p, err := bus.ParsePosition(v)
		if err != nil {
			return nil, fmt.Errorf("%w: channel %.80q: %w", ErrBadRecover, k, err)
		}
		out[ch] = p
	}
	return out, nil
}

// recoverOf returns the recovery state of an upgrade request: nil when it
// has no recover parameter (the client did not opt in).
func recoverOf(r *http.Request) (*recovery, error) {
	q := r.URL.Query()
	if !q.Has("recover") {
		return nil, nil
	}
	pos, err := parseRecover(q.Get("recover"))
	if err != nil {
		return nil, err
	}
	return &recovery{positions: pos}, nil
}
