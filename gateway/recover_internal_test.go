package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

func TestParseRecover(t *testing.T) {
	got, err := parseRecover(`{"u:alice":"mjx3k2:1457","g:room 1":"mjx3k2:1460","g:\u623f":"a:0"}`)
	require.NoError(t, err)
	require.Equal(t, map[bus.Channel]bus.Position{
		{UID: true, Name: "alice"}: {Epoch: "mjx3k2", Seq: 1457},
		{Name: "room 1"}:           {Epoch: "mjx3k2", Seq: 1460},
		{Name: "房"}:                {Epoch: "a", Seq: 0},
	}, got)
	got, err = parseRecover(" {}")
	require.NoError(t, err)
	require.Empty(t, got)

	var b strings.Builder
	b.WriteString("{")
	for i := range MaxRecoverChannels {
		fmt.Fprintf(&b, `"g:%d":"e:1",`, i)
	}
	atMost := strings.TrimSuffix(b.String(), ",") + "}"
	got, err = parseRecover(atMost)
	require.NoError(t, err)
	require.Len(t, got, MaxRecoverChannels)
	tooMany := strings.TrimSuffix(b.String(), ",") + `,"g:x":"e:1"}`

	for _, bad := range []string{"", "[]", "null", `"x"`, "{", `{"u:a":"e:1"`, `{"u:a":1}`, `{"u:a":null}`,
		`{"x:a":"e:1"}`, `{"u:":"e:1"}`, `{"u:a":"E:1"}`, `{"u:a":"e:1","g:b":"e"}`, tooMany,
		`{"g:a":"` + strings.Repeat("x", MaxRecoverBytes) + `"}`} {
		_, err := parseRecover(bad)
		require.ErrorIs(t, err, ErrBadRecover, "%.60s", bad)
	}
}

// FuzzParseRecover: any input is refused with ErrBadRecover or gives at
// most MaxRecoverChannels valid channels and positions, which print back
// to what parses again.
func FuzzParseRecover(f *testing.F) {
	for _, s := range []string{`{}`, `{"u:alice":"mjx3k2:1457"}`, `{"g:a.b":"0:0","u:*":"z:18446744073709551615"}`, `[]`, `{"g:a":"e:01"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseRecover(raw)
		if err != nil {
			if !errors.Is(err, ErrBadRecover) {
				t.Fatalf("error %v is not ErrBadRecover", err)
			}
			return
		}
		if len(raw) > MaxRecoverBytes || len(got) > MaxRecoverChannels {
			t.Fatalf("accepted %d bytes, %d channels", len(raw), len(got))
		}
		for ch, p := range got {
			if c, err := bus.ParseChannel(ch.String()); err != nil || c != ch {
				t.Fatalf("channel %q does not parse back: %v", ch.String(), err)
			}
			if q, err := bus.ParsePosition(p.String()); err != nil || q != p {
				t.Fatalf("position %q does not parse back: %v", p.String(), err)
			}
		}
	})
}
