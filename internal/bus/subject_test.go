package bus

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEncodeToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"room1", "room1"},
		{"a-b_C", "a-b_C"},
		{"a.b", "~YS5i"},
		{"*", "~Kg"},
		{">", "~Pg"},
		{"", "~"},
		{"two words", "~dHdvIHdvcmRz"},
		{"~Kg", "~fktn"},
		{"房间", "~5oi_6Ze0"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := EncodeToken(tt.in)
			require.Equal(t, tt.want, got)
			require.False(t, strings.ContainsAny(got, ".*> "), got)
			back, err := DecodeToken(got)
			require.NoError(t, err)
			require.Equal(t, tt.in, back)
		})
	}
}

func TestDecodeTokenRejects(t *testing.T) {
	for _, tok := range []string{"a.b", "~!!", "~YQ==", "*", "~cm9vbTE"} { // the last is "room1" encoded, which is never produced
		_, err := DecodeToken(tok)
		require.ErrorIs(t, err, ErrInvalidToken, tok)
	}
}

func TestSubjects(t *testing.T) {
	s, err := NewSubjects("")
	require.NoError(t, err)
	require.Equal(t, "gw.ev", s.Events())
	require.Equal(t, "gw.g1.cmd", s.Gateway("g1"))
	require.Equal(t, "gw.grp.~YS5i", s.Group("a.b"))
	require.Equal(t, "gw.uid.u1", s.UID("u1"))
	require.Equal(t, "gw.all", s.All())
	require.Equal(t, "gw.q.count", s.Query("count"))
	require.Equal(t, "gw.ev", Subjects{}.Events())

	s, err = NewSubjects("t1.gw")
	require.NoError(t, err)
	require.Equal(t, "t1.gw.all", s.All())
	for _, bad := range []string{"a..b", "a.*", ">", "a b", "."} {
		_, err := NewSubjects(bad)
		require.Error(t, err, bad)
	}
}

func FuzzTokenRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "*", ">", "~", "房间", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EncodeToken(s)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("unsafe token %q for %q", tok, s)
		}
		back, err := DecodeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q -> %q, %v", s, tok, back, err)
		}
		if d, err := DecodeToken(s); err == nil && EncodeToken(d) != s {
			t.Fatalf("decode accepted %q but encodes back to %q", s, EncodeToken(d))
		}
	})
}

// TestSubjectsMember: Member reverses Group and UID for any name, under
// any prefix, and refuses every other subject.
func TestSubjectsMember(t *testing.T) {
	for _, prefix := range []string{"", "tenant1.gw"} {
		s, err := NewSubjects(prefix)
		require.NoError(t, err)
		for _, name := range []string{"room1", "a.b", "*", ">", "", "two words", "房间", "~Kg", "grp.x"} {
			got, uid, err := s.Member(s.Group(name))
			require.NoError(t, err)
			require.Equal(t, name, got)
			require.False(t, uid)
			got, uid, err = s.Member(s.UID(name))
			require.NoError(t, err)
			require.Equal(t, name, got)
			require.True(t, uid)
		}
		for _, other := range []string{s.All(), s.Events(), s.Gateway("g1"), s.Heartbeat(), s.Query("ping"),
			s.p() + ".grp.", s.p() + ".grp.a.b", s.p() + ".uid.~!!", "other.grp.room1", s.p() + "x.grp.room1", ""} {
			_, _, err := s.Member(other)
			require.ErrorIs(t, err, ErrInvalidToken, other)
		}
	}
}
