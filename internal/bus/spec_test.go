package bus_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// specPath is the wire spec this test keeps true.
const specPath = "../../docs/protocol.md"

// specSession is the session of the spec's examples.
func specSession() []byte {
	b, err := bus.EncodeSession(map[string]any{"name": "Ann", "room": int64(1)})
	if err != nil {
		panic(err)
	}
	return b
}

// specExamples are the Go values behind the spec's hex dumps, by the name
// its marker lines give them (<!-- envelope: name -->).
func specExamples() map[string]any {
	const id = "gw1-mihyrchs-1"
	return map[string]any{
		"session":             specSession(), // not an envelope: no version byte
		"command-send-client": &bus.Command{Op: bus.OpSend, Clients: []string{id}, Body: []byte("hello")},
		"command-join-group":  &bus.Command{Op: bus.OpJoinGroup, Clients: []string{id}, Name: "房间"},
		"command-set-session": &bus.Command{Op: bus.OpSetSession, Clients: []string{id}, Body: specSession()},
		"command-send-group":  &bus.Command{Op: bus.OpSend, Body: []byte("hi room"), Exclude: []string{"gw1-mihyrchs-2"}},
		"command-send-binary": &bus.Command{Op: bus.OpSend, Clients: []string{id}, Body: []byte{0x82, 0xa1}, Frame: bus.FrameBinary},
		"reply-ok":            &bus.Reply{Gateway: "gw1", Count: 1},
		"reply-not-found":     &bus.Reply{Code: bus.ReplyNotFound, Message: "gateway: client gw1-mihyrchs-9 not found", Gateway: "gw1"},
		"query-group-count":   &bus.Command{Name: "房间"},
		"reply-items-more":    &bus.Reply{Gateway: "gw1", Count: 2, Items: []string{"gw1-mihyrchs-1", "gw1-mihyrchs-2"}, More: true},
		"reply-items-last":    &bus.Reply{Gateway: "gw1", Count: 1, Items: []string{"gw1-mihyrchs-3"}},
		"beat":                &bus.Beat{Gateway: "gw1", Boot: 1764280000000, Addrs: []string{"ws://127.0.0.1:7272/"}, Conns: 2, Interval: 1000},
		"event-batch-connect": &bus.EventBatch{Gateway: "gw1", Client: id, Seq: 1, Addr: "127.0.0.1:50312", Events: []bus.Event{
			{Kind: bus.EventConnect},
			{Kind: bus.EventWebSocketConnect, WS: &bus.WebSocketInfo{Path: "/", Query: "t=1"}},
		}},
		"event-batch-message": &bus.EventBatch{Gateway: "gw1", Client: id, Seq: 2, Addr: "127.0.0.1:50312", UID: "ann", Session: specSession(), Events: []bus.Event{
			{Kind: bus.EventMessage, Body: []byte("hi")},
			{Kind: bus.EventClose, Reason: bus.CloseClientClosed},
		}},
		"ack-working":      &bus.Ack{Client: id, Seq: 2, Status: bus.AckWorking},
		"ack-done-session": &bus.Ack{Client: id, Seq: 2, Status: bus.AckDone, SetSession: true, Session: specSession()},
		"ack-done-sticky":  &bus.Ack{Client: id, Seq: 3, Status: bus.AckDone, Worker: "0a1b2c3d4e5f"},
	}
}

// specEnums are the numbered and named values the spec's tables list.
var specEnums = map[string]map[string]string{
	"Op": named(bus.OpSend, "OpSend", bus.OpClose, "OpClose", bus.OpDestroy, "OpDestroy", bus.OpBindUID, "OpBindUID",
		bus.OpUnbindUID, "OpUnbindUID", bus.OpJoinGroup, "OpJoinGroup", bus.OpLeaveGroup, "OpLeaveGroup",
		bus.OpUngroup, "OpUngroup", bus.OpGetSession, "OpGetSession", bus.OpSetSession, "OpSetSession",
		bus.OpUpdateSession, "OpUpdateSession", bus.OpIsOnline, "OpIsOnline", bus.OpGetUID, "OpGetUID",
		bus.OpClientList, "OpClientList", bus.OpAccept, "OpAccept", bus.OpReject, "OpReject", bus.OpSetFrame, "OpSetFrame"),
	"Frame": named(bus.FrameDefault, "FrameDefault", bus.FrameText, "FrameText", bus.FrameBinary, "FrameBinary"),
	"EventKind": named(bus.EventConnect, "EventConnect", bus.EventWebSocketConnect, "EventWebSocketConnect",
		bus.EventMessage, "EventMessage", bus.EventClose, "EventClose"),
	"CloseReason": named(bus.CloseUnknown, "CloseUnknown", bus.CloseClientClosed, "CloseClientClosed",
		bus.CloseHeartbeatTimeout, "CloseHeartbeatTimeout", bus.CloseSlowConsumer, "CloseSlowConsumer",
		bus.CloseMessageTooLarge, "CloseMessageTooLarge", bus.CloseProtocolError, "CloseProtocolError",
		bus.ClosedByAPI, "ClosedByAPI", bus.CloseGatewayShutdown, "CloseGatewayShutdown",
		bus.CloseGatewayLost, "CloseGatewayLost", bus.CloseEventQueueFull, "CloseEventQueueFull",
		bus.CloseRateLimited, "CloseRateLimited", bus.CloseServerFull, "CloseServerFull",
		bus.CloseTokenExpired, "CloseTokenExpired", bus.CloseUnauthorized, "CloseUnauthorized"),
	"AckStatus": named(bus.AckDone, "AckDone", bus.AckWorking, "AckWorking"),
	"ReplyCode": named(bus.ReplyOK, "ReplyOK", bus.ReplyNotFound, "ReplyNotFound", bus.ReplyBadRequest, "ReplyBadRequest",
		bus.ReplyLimit, "ReplyLimit"),
	"Query": named(bus.QueryPing, "QueryPing", bus.QueryInfo, "QueryInfo", bus.QueryClientCount, "QueryClientCount",
		bus.QueryClientList, "QueryClientList", bus.QueryClientSessions, "QueryClientSessions",
		bus.QueryUIDClients, "QueryUIDClients", bus.QueryUIDList, "QueryUIDList", bus.QueryGroupCount, "QueryGroupCount",
		bus.QueryGroupClients, "QueryGroupClients", bus.QueryGroupSessions, "QueryGroupSessions",
		bus.QueryGroupUIDs, "QueryGroupUIDs", bus.QueryGroupList, "QueryGroupList"),
}

// named maps constant names to their values as the spec writes them:
// numbers in decimal, strings quoted.
func named(pairs ...any) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(pairs); i += 2 {
		v := reflect.ValueOf(pairs[i])
		if v.Kind() == reflect.String {
			out[pairs[i+1].(string)] = strconv.Quote(v.String())
		} else {
			out[pairs[i+1].(string)] = strconv.FormatUint(v.Uint(), 10)
		}
	}
	return out
}

// specStructs are the envelopes whose fields the spec's tables list.
var specStructs = map[string]any{
	"EventBatch": bus.EventBatch{}, "Event": bus.Event{}, "WebSocketInfo": bus.WebSocketInfo{}, "Ack": bus.Ack{},
	"Command": bus.Command{}, "Reply": bus.Reply{}, "Beat": bus.Beat{}, "GatewayInfo": bus.GatewayInfo{},
	"WorkerInfo": bus.WorkerInfo{}, "Presence": bus.Presence{}, "WorkerBeat": bus.WorkerBeat{}, "Held": bus.Held{},
}

// spec is what the test reads out of the document.
type spec struct {
	hex    map[string][]byte     // marker "envelope: name" then a ```hex block
	tables map[string][][]string // marker "table: name" then a markdown table: its body rows' cells
}

func readSpec(t *testing.T) spec {
	t.Helper()
	f, err := os.Open(specPath)
	require.NoError(t, err)
	defer f.Close()
	s := spec{hex: map[string][]byte{}, tables: map[string][][]string{}}
	var marker, block string
	inHex, inTable := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case inHex && line == "```":
			b, err := hex.DecodeString(strings.Join(strings.Fields(block), ""))
			require.NoError(t, err, "%s:%d: hex of %s", specPath, n, marker)
			s.hex[marker] = b
			inHex, marker, block = false, "", ""
		case inHex:
			block += " " + line
		case inTable && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for i := range cells {
				cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
			}
			if strings.HasPrefix(cells[0], "---") {
				s.tables[marker] = nil // the row above was the header
				continue
			}
			s.tables[marker] = append(s.tables[marker], cells)
		case inTable && (line != "" || len(s.tables[marker]) > 0):
			inTable, marker = false, ""
		case strings.HasPrefix(line, "<!-- envelope: "), strings.HasPrefix(line, "<!-- table: "):
			require.Empty(t, marker, "%s:%d: marker %q before the block of %q", specPath, n, line, marker)
			kind, name, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(line, "<!-- "), " -->"), ": ")
			marker = name
			_, dupHex := s.hex[name]
			_, dupTable := s.tables[name]
			require.False(t, dupHex || dupTable, "%s:%d: %q twice", specPath, n, name)
			if kind == "table" {
				inTable = true
				s.tables[name] = nil
			}
		case marker != "" && line == "```hex":
			inHex = true
		case marker != "" && strings.HasPrefix(line, "```"):
			t.Fatalf("%s:%d: the block after marker %q is not ```hex", specPath, n, marker)
		}
	}
	require.NoError(t, sc.Err())
	require.False(t, inHex, "unclosed hex block")
	return s
}

// dump formats b as the spec writes hex: 16 bytes a line.
func dump(b []byte) string {
	var lines []string
	for i := 0; i < len(b); i += 16 {
		var pairs []string
		for _, c := range b[i:min(i+16, len(b))] {
			pairs = append(pairs, fmt.Sprintf("%02x", c))
		}
		lines = append(lines, strings.Join(pairs, " "))
	}
	return strings.Join(lines, "\n")
}

// TestSpecHexDumps: each hex dump in the spec is exactly what bus.Marshal
// makes of the Go value it names, and decodes back to it.
func TestSpecHexDumps(t *testing.T) {
	s := readSpec(t)
	examples := specExamples()
	var names []string
	for name := range s.hex {
		names = append(names, name)
	}
	for name := range examples {
		require.Contains(t, s.hex, name, "example %q has no hex dump in the spec", name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			v, ok := examples[name]
			require.True(t, ok, "the spec's dump %q names no Go value of this test", name)
			want, isBytes := v.([]byte)
			if !isBytes {
				var err error
				want, err = bus.Marshal(v)
				require.NoError(t, err)
			}
			require.Equal(t, dump(want), dump(s.hex[name]), "hex of %s: the spec should read\n```hex\n%s\n```", name, dump(want))
			if !isBytes {
				back := reflect.New(reflect.TypeOf(v).Elem())
				require.NoError(t, bus.Unmarshal(s.hex[name], back.Interface()))
				require.Equal(t, v, back.Interface(), "the dump decodes to the value")
			}
		})
	}
}

// TestSpecFieldTables: the spec lists every msgpack key of every envelope,
// with its Go field, and nothing else.
func TestSpecFieldTables(t *testing.T) {
	s := readSpec(t)
	for name, v := range specStructs {
		rows, ok := s.tables[name]
		require.True(t, ok, "no field table for %s", name)
		var documented, actual []string
		for _, cells := range rows {
			require.GreaterOrEqual(t, len(cells), 3, "%s: %v", name, cells)
			documented = append(documented, cells[0]+" "+cells[1])
		}
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
			actual = append(actual, key+" "+f.Name)
		}
		require.ElementsMatch(t, actual, documented, "fields of %s: key and Go field", name)
	}
}

// TestSpecEnums: the spec's tables of numbers and names are the constants.
func TestSpecEnums(t *testing.T) {
	s := readSpec(t)
	for enum, values := range specEnums {
		rows, ok := s.tables[enum]
		require.True(t, ok, "no table for %s", enum)
		documented := map[string]string{}
		for _, cells := range rows {
			require.GreaterOrEqual(t, len(cells), 2, "%s: %v", enum, cells)
			documented[cells[1]] = cells[0]
		}
		require.Equal(t, values, documented, "values of %s", enum)
	}
}

// TestSpecTokens: the spec's examples of subject tokens are EncodeToken's.
func TestSpecTokens(t *testing.T) {
	s := readSpec(t)
	rows := s.tables["tokens"]
	require.NotEmpty(t, rows)
	subj, err := bus.NewSubjects("")
	require.NoError(t, err)
	for _, cells := range rows {
		in, err := strconv.Unquote(cells[0])
		require.NoError(t, err, "%v", cells)
		require.Equal(t, cells[1], bus.EncodeToken(in), "token of %q", in)
		require.Equal(t, cells[2], subj.Group(in), "group subject of %q", in)
		back, err := bus.DecodeToken(cells[1])
		require.NoError(t, err)
		require.Equal(t, in, back)
	}
}
