package bus

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fastCases cover every header width the encoders choose between: strings
// of 31/32/255/256 bytes, binaries of 255/256/65,536, arrays and maps of
// 15/16 entries, and integers at each width's edge.
func fastCases() []any {
	s := func(n int) string { return strings.Repeat("s", n) }
	p := func(n int) []byte { return bytes.Repeat([]byte{'p'}, n) }
	events := func(n int) []Event {
		evs := make([]Event, n)
		for i := range evs {
			evs[i] = Event{Kind: EventMessage, Body: p(i)}
		}
		return evs
	}
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s(i)
		}
		return out
	}
	cases := []any{
		&EventBatch{},
		&EventBatch{Gateway: "gw1", Client: "c1", Seq: 1, Events: []Event{{Kind: EventMessage, Body: []byte("hi")}}},
		&EventBatch{Gateway: s(31), Client: s(32), Seq: 127, Addr: s(255), UID: s(256), Session: p(1), Events: events(15)},
		&EventBatch{Gateway: "gw1", Client: "c1", Seq: 2, Resent: true, Events: events(1)},
		&EventBatch{Gateway: s(70000), Client: "c", Seq: 128, Session: p(65536), Events: events(16)},
		&EventBatch{Seq: 255, Events: []Event{}},
		&EventBatch{Seq: 256, Events: []Event{{Kind: EventClose, Reason: CloseSlowConsumer}, {Kind: EventConnect}}},
		&EventBatch{Seq: 65535, Events: []Event{{Kind: EventMessage, Body: []byte{}}}},
		&EventBatch{Seq: 65536, Events: []Event{{Kind: EventMessage, Body: p(256)}}},
		&EventBatch{Seq: 1<<32 - 1},
		&EventBatch{Seq: 1 << 32},
		&EventBatch{Seq: 1<<64 - 1, Events: events(2)},
		&EventBatch{Client: "c", Events: []Event{{Kind: EventConnect}, {Kind: EventWebSocketConnect, WS: &WebSocketInfo{Path: "/ws"}}}},
		&EventBatch{Client: "c", Events: []Event{{Kind: EventWebSocketConnect, WS: &WebSocketInfo{Path: "/", Query: "a=1",
			Header: map[string][]string{"Origin": {"x"}, "Accept": {"a", "b"}, "Empty": {}, "Nil": nil, s(40): {s(300)}}}}}},
		&Ack{},
		&Ack{Client: "c1", Seq: 9, Status: AckDone},
		&Ack{Client: s(40), Seq: 300, Status: AckWorking, SetSession: true},
		&Ack{Client: "c", Seq: 1, Status: AckDone, SetSession: true, Session: p(300)},
		&Ack{Client: "c", Seq: 2, Status: AckDone, Worker: "0a1b2c3d4e5f"},
		&Command{},
		&Command{Op: OpSend, Clients: []string{"a"}, Body: []byte("x")},
		&Command{Op: OpJoinGroup, Clients: ids(16), Name: "room 1 ✓"},
		&Command{Op: OpSend, Body: p(65535), Exclude: ids(15)},
		&Command{Op: OpUngroup, Name: s(33), Exclude: []string{}},
		&Command{Op: OpSend, Clients: []string{"a"}, Body: []byte("x"), Frame: FrameBinary},
		&Command{Op: OpSetFrame, Clients: ids(2), Frame: FrameText},
	}
	return cases
}

func TestFastCodecMatches(t *testing.T) {
	for _, v := range fastCases() {
		fast, err := Marshal(v)
		require.NoError(t, err)
		slow, err := marshalReflect(v)
		require.NoError(t, err)
		if hasHandshake(v) {
			// msgpack/v5 writes header names in map order; ours are sorted.
			require.Len(t, fast, len(slow))
		} else {
			require.Equal(t, slow, fast, "%T %+v: hand-written encoding differs from msgpack/v5", v, v)
		}
		require.Equal(t, 1+sizeHint(v), cap(fast), "%T: the envelope outgrew its size hint (a second allocation)", v)

		fresh := newLike(v)
		if !fastDecode(fast[1:], fresh) {
			t.Fatalf("%T %+v: the fast decoder must read what the encoder writes", v, v)
		}
		require.NoError(t, Unmarshal(fast, fresh))
		viaReflect := newLike(v)
		require.NoError(t, unmarshalReflect(fast[1:], viaReflect))
		require.Equal(t, viaReflect, fresh, "%T: decoders disagree", v)
		again, err := Marshal(fresh)
		require.NoError(t, err)
		require.Equal(t, fast, again, "%T: decoding and encoding again changed it", v)
	}
}

// TestFastDecodeReadsHandshakes: a connect's handshake is read by the
// fast decoder too (msgpack/v5's reflection was 17 % of a worker's CPU in a
// connect storm), to the value reflection gives, nil and empty included.
func TestFastDecodeReadsHandshakes(t *testing.T) {
	for _, ws := range []*WebSocketInfo{
		{Path: "/"},
		{Path: "/chat", Query: "room=1&x=%20", Header: map[string][]string{"Origin": {"https://app.example"}, "Cookie": {"a=1", "b=2"}, "Empty": {}, "Nil": nil}},
		{Path: "/ü", Header: map[string][]string{"": {""}}},
	} {
		b := &EventBatch{Client: "c", Events: []Event{{Kind: EventConnect}, {Kind: EventWebSocketConnect, WS: ws}}}
		data, err := Marshal(b)
		require.NoError(t, err)
		var fast, slow EventBatch
		require.True(t, fastDecode(data[1:], &fast), "%+v", ws)
		require.NoError(t, unmarshalReflect(data[1:], &slow))
		require.Equal(t, slow, fast)
		require.Equal(t, *b, fast)
	}
	// A nil handshake, and a nil header map, as msgpack/v5 may write them.
	for _, v := range []any{
		map[string]any{"c": "c", "e": []any{map[string]any{"k": uint8(EventWebSocketConnect), "w": nil}}},
		map[string]any{"c": "c", "e": []any{map[string]any{"k": uint8(EventWebSocketConnect), "w": map[string]any{"p": "/", "h": nil}}}},
	} {
		data, err := marshalReflect(v)
		require.NoError(t, err)
		var fast, slow EventBatch
		require.True(t, fastDecode(data[1:], &fast))
		require.NoError(t, unmarshalReflect(data[1:], &slow))
		require.Equal(t, slow, fast)
	}
}

func TestFastDecodeAliasesBinaries(t *testing.T) {
	data, err := Marshal(&Command{Op: OpSend, Body: []byte("hello")})
	require.NoError(t, err)
	var c Command
	require.NoError(t, Unmarshal(data, &c))
	require.Equal(t, "hello", string(c.Body))
	require.Equal(t, len(c.Body), cap(c.Body), "an append to Body must not write into the message")
}

func hasHandshake(v any) bool {
	if b, ok := v.(*EventBatch); ok {
		for _, ev := range b.Events {
			if ev.WS != nil {
				return true
			}
		}
	}
	return false
}

// fastDecode runs only the hand-written decoder.
func fastDecode(payload []byte, v any) bool {
	r := reader{b: payload, ok: true}
	switch x := v.(type) {
	case *EventBatch:
		x.decode(&r)
	case *Ack:
		x.decode(&r)
	case *Command:
		x.decode(&r)
	}
	return r.done()
}

func sizeHint(v any) int {
	switch x := v.(type) {
	case *EventBatch:
		return x.sizeHint()
	case *Ack:
		return x.sizeHint()
	case *Command:
		return x.sizeHint()
	}
	panic("sizeHint")
}

func newLike(v any) any {
	switch v.(type) {
	case *EventBatch:
		return &EventBatch{}
	case *Ack:
		return &Ack{}
	case *Command:
		return &Command{}
	}
	panic("newLike")
}

// FuzzFastDecode: whatever the fast decoder accepts, msgpack/v5 decodes to
// the same value; what it refuses goes to msgpack/v5 anyway.
func FuzzFastDecode(f *testing.F) {
	for _, v := range fastCases() {
		if data, err := Marshal(v); err == nil && len(data) < 4096 {
			f.Add(data[1:])
		}
	}
	f.Add([]byte{0x81, 0xa1, 'o', 0xcc, 0x01})
	f.Add([]byte{0x82, 0xa1, 'c', 0x91, 0xa0, 0xa1, 'c', 0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{&EventBatch{}, &Ack{}, &Command{}} {
			fast := newLike(v)
			if !fastDecode(data, fast) {
				continue
			}
			slow := newLike(v)
			require.NoError(t, unmarshalReflect(data, slow), "fast decoder accepted what msgpack/v5 refuses")
			require.Equal(t, slow, fast)
		}
	})
}

// FuzzFastEncode: for any field values, the hand-written encoders write the
// bytes msgpack/v5 writes.
func FuzzFastEncode(f *testing.F) {
	f.Add("gw", "client", uint64(7), []byte("body"), "group", uint8(2), true)
	f.Add("", "", uint64(1<<40), []byte{}, "", uint8(0), false)
	f.Fuzz(func(t *testing.T, gw, client string, seq uint64, body []byte, name string, n uint8, flag bool) {
		evs := make([]Event, n%20)
		for i := range evs {
			evs[i] = Event{Kind: EventKind(i % 5), Body: body[:min(i, len(body))], Reason: CloseReason(n)}
		}
		var session []byte
		if flag {
			session = body
		}
		for _, v := range []any{
			&EventBatch{Gateway: gw, Client: client, Seq: seq, Addr: name, UID: name, Session: session, Resent: flag, Events: evs},
			&Ack{Client: client, Seq: seq, Status: AckStatus(n), SetSession: flag, Session: session, Worker: name},
			&Command{Op: Op(n), Clients: []string{gw, client}[:n%3%2+1], Name: name, Body: body, Exclude: strings.Fields(name)},
		} {
			fast, err := Marshal(v)
			require.NoError(t, err)
			slow, err := marshalReflect(v)
			require.NoError(t, err)
			require.Equal(t, slow, fast)
		}
	})
}

// BenchmarkDecodeConnect decodes a browser's connect batch (a WebSocket
// handshake with ten headers) with the hand-written decoder and with
// msgpack/v5's reflection, which decoded every handshake before.
func BenchmarkDecodeConnect(b *testing.B) {
	batch := &EventBatch{Gateway: "gw1", Client: "gw1-mx7sxx9h-2", Seq: 1, Addr: "203.0.113.7:51234", Events: []Event{
		{Kind: EventConnect},
		{Kind: EventWebSocketConnect, WS: &WebSocketInfo{Path: "/ws", Query: "token=abc", Header: map[string][]string{
			"Host": {"chat.example.com"}, "User-Agent": {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"},
			"Accept-Encoding": {"gzip, deflate, br"}, "Accept-Language": {"en-US,en;q=0.9"}, "Cache-Control": {"no-cache"},
			"Origin": {"https://chat.example.com"}, "Pragma": {"no-cache"}, "Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"},
		}}},
	}}
	data := MarshalBatch(batch)
	for _, bc := range []struct {
		name   string
		decode func(*EventBatch) error
	}{
		{"fast", func(out *EventBatch) error { return UnmarshalBatch(data, out) }},
		{"reflection", func(out *EventBatch) error { return unmarshalReflect(data[1:], out) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out EventBatch
				if err := bc.decode(&out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
