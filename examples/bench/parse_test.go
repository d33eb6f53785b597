package bench

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		op      op
		group   string
		payload string
	}{
		{"echo", "hello", opEcho, "", "hello"},
		{"echo empty", "", opEcho, "", ""},
		{"echo one byte", "a", opEcho, "", "a"},
		{"echo colons", "x:y:z", opEcho, "", "x:y:z"},
		{"echo unicode", "héllo: 世界 🌍", opEcho, "", "héllo: 世界 🌍"},
		{"echo upper case op", "A:x", opEcho, "", "A:x"},
		{"echo unknown op", "e:x", opEcho, "", "e:x"},
		{"echo long op", "ab:x", opEcho, "", "ab:x"},
		{"echo g without payload colon", "g:room", opEcho, "", "g:room"},
		{"echo g only", "g:", opEcho, "", "g:"},
		{"all", "a:hi", opAll, "", "hi"},
		{"all empty", "a:", opAll, "", ""},
		{"all colons", "a:b:c", opAll, "", "b:c"},
		{"join", "j:room", opJoin, "room", ""},
		{"join dots", "j:a.b", opJoin, "a.b", ""},
		{"join colon in name", "j:a:b", opJoin, "a:b", ""},
		{"join empty", "j:", opJoin, "", ""},
		{"group", "g:room:hi", opGroup, "room", "hi"},
		{"group payload colons", "g:room:x:y:", opGroup, "room", "x:y:"},
		{"group empty payload", "g:room:", opGroup, "room", ""},
		{"group empty name", "g::hi", opGroup, "", "hi"},
		{"group wildcard", "g:*:hi", opGroup, "*", "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, g, p := parse([]byte(tt.in))
			require.Equal(t, tt.op, o)
			require.Equal(t, tt.group, string(g))
			require.Equal(t, tt.payload, string(p))
		})
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	frames := [][]byte{[]byte("echo me"), []byte("a:all"), []byte("j:room"), []byte("g:room:x:y")}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, f := range frames {
			parse(f)
		}
	})
	require.Zero(t, allocs)
}

// FuzzParse checks that parse loses nothing: the frame can be rebuilt from
// what it returns.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a", "hello", "a:", "a:x", "j:", "j:a.b", "g:", "g:x", "g:x:", "g:x:y:z", "x:y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, g, p := parse(data)
		var rebuilt []byte
		switch o {
		case opEcho:
			rebuilt = p
		case opAll:
			rebuilt = append([]byte("a:"), p...)
		case opJoin:
			rebuilt = append([]byte("j:"), g...)
		case opGroup:
			if bytes.IndexByte(g, ':') >= 0 {
				t.Fatalf("group %q contains a colon", g)
			}
			rebuilt = append(append(append([]byte("g:"), g...), ':'), p...)
		default:
			t.Fatalf("unknown op %d", o)
		}
		if !bytes.Equal(rebuilt, data) {
			t.Fatalf("parse(%q) = %d %q %q", data, o, g, p)
		}
	})
}
