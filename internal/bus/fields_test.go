package bus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// envelopes lists every type that crosses the bus. TestEnvelopeListComplete
// keeps it complete, so a new envelope cannot be left out of
// TestEveryFieldCrossesTheWire.
var envelopes = []any{
	&Event{}, &WebSocketInfo{}, &EventBatch{}, &Ack{}, &Command{}, &Reply{},
	&Presence{}, &WorkerBeat{}, &GatewayInfo{}, &WorkerInfo{}, &Beat{}, &Held{},
}

// notEnvelopes are the package's other exported structs: they never cross
// the bus, and have no msgpack tags (history's go in JetStream headers and
// JSON, docs/protocol.md "History").
var notEnvelopes = []string{
	"Buffer", "Buffered", "Channel", "Config", "Conn", "Embedded", "EmbeddedConfig", "EmbeddedUser",
	"HistoryConfig", "HistoryInfo", "HistoryMsg", "Msg", "Position", "Subjects", "Subscription", "TLSConfig",
}

// TestEnvelopeListComplete reads the package's source: every exported
// struct with a msgpack tag must be in envelopes, every other exported
// struct in notEnvelopes.
func TestEnvelopeListComplete(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var tagged, untagged []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			hasTag := false
			for _, fld := range st.Fields.List {
				if fld.Tag != nil && strings.Contains(fld.Tag.Value, `msgpack:"`) {
					hasTag = true
				}
			}
			if hasTag {
				tagged = append(tagged, ts.Name.Name)
			} else {
				untagged = append(untagged, ts.Name.Name)
			}
			return true
		})
	}
	var listed []string
	for _, v := range envelopes {
		listed = append(listed, reflect.TypeOf(v).Elem().Name())
	}
	slices.Sort(tagged)
	slices.Sort(untagged)
	slices.Sort(listed)
	require.Equal(t, tagged, listed, "every exported struct with msgpack tags must be in envelopes (and nothing else)")
	require.Equal(t, untagged, notEnvelopes, "a new exported struct without msgpack tags: add it to notEnvelopes, or to envelopes with tags")
}

// TestEveryFieldCrossesTheWire fills every exported field of every envelope
// (nested ones too) with a non-zero value and requires that it survives,
// both ways, between this package's codec (the hand-written one where a
// type has it) and msgpack/v5: a field the hand-written encoder or decoder
// forgets fails here, whatever the other tests' cases hold.
func TestEveryFieldCrossesTheWire(t *testing.T) {
	for _, v := range envelopes {
		typ := reflect.TypeOf(v).Elem()
		t.Run(typ.Name(), func(t *testing.T) {
			full := reflect.New(typ)
			fill(t, full.Elem(), typ.Name())

			ours, err := Marshal(full.Interface())
			require.NoError(t, err)
			ref := reflect.New(typ)
			require.NoError(t, msgpack.Unmarshal(ours[1:], ref.Interface()))
			require.Equal(t, full.Interface(), ref.Interface(), "our encoder lost a field (left: sent, right: what msgpack/v5 read)")

			theirs, err := msgpack.Marshal(full.Interface())
			require.NoError(t, err)
			back := reflect.New(typ)
			require.NoError(t, Unmarshal(append([]byte{EnvelopeVersion}, theirs...), back.Interface()))
			require.Equal(t, full.Interface(), back.Interface(), "our decoder lost a field (left: what msgpack/v5 wrote, right: what we read)")

			// The hand-written decoder must read what the hand-written
			// encoder writes, so no field silently goes the slow way. The
			// one field left to reflection by design is Event.WS.
			if r, ok := newFast(typ); ok {
				noWS := reflect.New(typ)
				fill(t, noWS.Elem(), typ.Name())
				clearHandshakes(noWS.Interface())
				data, err := Marshal(noWS.Interface())
				require.NoError(t, err)
				require.True(t, fastDecode(data[1:], r), "the hand-written decoder refused a field its encoder wrote")
				require.Equal(t, noWS.Interface(), r)
			}
		})
	}
}

// newFast returns a fresh value of typ when it has a hand-written decoder.
func newFast(typ reflect.Type) (any, bool) {
	for _, v := range []any{&EventBatch{}, &Ack{}, &Command{}} {
		if reflect.TypeOf(v).Elem() == typ {
			return newLike(v), true
		}
	}
	return nil, false
}

func clearHandshakes(v any) {
	if b, ok := v.(*EventBatch); ok {
		for i := range b.Events {
			b.Events[i].WS = nil
		}
	}
}

// fill sets every exported field of v to a non-zero value derived from
// path, so two fields swapped on the wire show too. Integers are above 127
// (0xcc and wider forms), strings and binaries are non-empty.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	n := uint64(len(path))*7 + 128
	switch v.Kind() {
	case reflect.String:
		v.SetString(path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8:
		v.SetUint(n%100 + 130)
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(n * 1000)
	case reflect.Int8:
		v.SetInt(int64(n % 100))
	case reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		v.SetInt(int64(n * 1000))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(path))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), path+"["+string(rune('0'+i))+"]")
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k, path+".key")
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, path+".value")
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() {
				fill(t, v.Field(i), path+"."+f.Name)
			}
		}
	default:
		t.Fatalf("%s: fill does not know %s; teach it", path, v.Type())
	}
}
