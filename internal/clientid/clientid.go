// Package clientid builds and parses client ids. A client id names one
// connection on one gateway process, so a push to it goes to exactly one
// gateway, and it is unique across restarts: "<gateway>-<boot>-<seq>", where
// gateway is the gateway id, boot the gateway process's start time and seq a
// per-process counter, both in base 36. Ids are safe as one NATS subject token.
package clientid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxGatewayIDLen is the longest gateway id accepted.
const MaxGatewayIDLen = 32

// ErrInvalid means a string is not a well-formed client id.
var ErrInvalid = errors.New("clientid: invalid client id")

// Make returns the client id of connection seq on gateway gw started at boot.
func Make(gw string, boot, seq uint64) string {
	b := make([]byte, 0, len(gw)+2+13+8)
	b = append(b, gw...)
	b = append(b, '-')
	b = strconv.AppendUint(b, boot, 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 36)
	return string(b)
}

// Gateway returns the gateway id embedded in a client id.
func Gateway(id string) (string, error) {
	gw, rest, ok := strings.Cut(id, "-")
	if !ok || ValidateGatewayID(gw) != nil {
		return "", fmt.Errorf("%w: %q", ErrInvalid, id)
	}
	boot, seq, ok := strings.Cut(rest, "-")
	if !ok || !base36(boot) || !base36(seq) {
		return "", fmt.Errorf("%w: %q", ErrInvalid, id)
	}
	return gw, nil
}

// ValidateGatewayID reports whether s can be a gateway id: 1 to
// [MaxGatewayIDLen] characters from [A-Za-z0-9_].
func ValidateGatewayID(s string) error {
	if s == "" || len(s) > MaxGatewayIDLen {
		return fmt.Errorf("clientid: gateway id %q must be 1 to %d characters", s, MaxGatewayIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("clientid: gateway id %q may only hold letters, digits and '_'", s)
		}
	}
	return nil
}

func base36(s string) bool {
	if s == "" || len(s) > 13 {
		return false
	}
	_, err := strconv.ParseUint(s, 36, 64)
	return err == nil && strings.ToLower(s) == s
}
