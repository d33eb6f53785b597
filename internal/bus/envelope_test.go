package bus

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	in := EventBatch{
		Gateway: "g1", Client: "g1-abc-1", Seq: 7, Addr: "127.0.0.1:5000", UID: "u1",
		Session: []byte{0x81, 0xa1, 'a', 0x01},
		Events: []Event{
			{Kind: EventConnect},
			{Kind: EventWebSocketConnect, WS: &WebSocketInfo{Path: "/ws", Query: "a=1", Header: map[string][]string{"Origin": {"x"}}}},
			{Kind: EventMessage, Body: []byte("hi")},
			{Kind: EventClose, Reason: CloseHeartbeatTimeout},
		},
	}
	b, err := Marshal(&in)
	require.NoError(t, err)
	require.Equal(t, EnvelopeVersion, b[0])
	var out EventBatch
	require.NoError(t, Unmarshal(b, &out))
	require.Equal(t, in, out)
}

func TestUnmarshalRejects(t *testing.T) {
	var c Command
	require.ErrorIs(t, Unmarshal(nil, &c), ErrBadEnvelope)
	require.ErrorContains(t, Unmarshal([]byte{9, 0x80}, &c), "version 9")
	require.ErrorIs(t, Unmarshal([]byte{EnvelopeVersion, 0xc1}, &c), ErrBadEnvelope)
	require.ErrorIs(t, Unmarshal([]byte{EnvelopeVersion, 0x81, 0xa1, 'o', 0xa1, 'x'}, &c), ErrBadEnvelope)
}

func TestUnknownFieldsAreSkipped(t *testing.T) {
	type future struct {
		Op    Op     `msgpack:"o"`
		Extra string `msgpack:"zz"`
	}
	b, err := Marshal(&future{Op: OpSend, Extra: "later"})
	require.NoError(t, err)
	var c Command
	require.NoError(t, Unmarshal(b, &c))
	require.Equal(t, OpSend, c.Op)
}

func TestSessionCodec(t *testing.T) {
	b1, err := EncodeSession(map[string]any{"name": "Ann", "room": 1, "n": int64(300), "f": 1.5, "tags": []string{"a"}})
	require.NoError(t, err)
	b2, err := EncodeSession(map[string]any{"tags": []string{"a"}, "f": 1.5, "n": int64(300), "room": 1, "name": "Ann"})
	require.NoError(t, err)
	require.Equal(t, b1, b2, "equal maps must encode to equal bytes")

	s, err := DecodeSession(b1)
	require.NoError(t, err)
	require.Equal(t, int64(1), s["room"])
	require.Equal(t, int64(300), s["n"])
	require.Equal(t, 1.5, s["f"])
	require.Equal(t, "Ann", s["name"])

	empty, err := EncodeSession(map[string]any{})
	require.NoError(t, err)
	require.Nil(t, empty)
	s, err = DecodeSession(nil)
	require.NoError(t, err)
	require.NotNil(t, s)
	_, err = DecodeSession([]byte{0xc1})
	require.ErrorIs(t, err, ErrBadEnvelope)
}

func TestCloseReasonString(t *testing.T) {
	require.Equal(t, "heartbeat timeout", CloseHeartbeatTimeout.String())
	require.Equal(t, "close reason 200", CloseReason(200).String())
}

// FuzzUnmarshal feeds arbitrary bytes to every envelope decoder: they must
// return an error or a value, never panic or hang.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{
		&EventBatch{Gateway: "g", Client: "g-1-1", Seq: 1, Events: []Event{{Kind: EventMessage, Body: []byte("x")}}},
		&Ack{Client: "g-1-1", Seq: 1, Status: AckDone, SetSession: true, Session: []byte{0x80}},
		&Command{Op: OpSend, Clients: []string{"g-1-1"}, Body: []byte("x"), Exclude: []string{"a"}},
		&Reply{Code: ReplyNotFound, Items: []string{"a"}, Sessions: map[string][]byte{"a": {0x80}}},
		&Beat{Gateway: "g", Boot: 1, Addrs: []string{"ws://x"}},
	} {
		b, err := Marshal(v)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{EnvelopeVersion, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Unmarshal(data, &EventBatch{})
		_ = Unmarshal(data, &Ack{})
		_ = Unmarshal(data, &Command{})
		_ = Unmarshal(data, &Reply{})
		_ = Unmarshal(data, &Beat{})
		if len(data) > 0 {
			_, _ = DecodeSession(data[1:])
		}
	})
}

func TestHugeLengthsAreRefusedBeforeAllocating(t *testing.T) {
	for name, b := range map[string][]byte{
		"map of a billion entries": {0xdf, 'A', 'v', 0x01, 'w', 0xb0},
		"array32":                  {0xdd, 0xff, 0xff, 0xff, 0xff},
		"str32":                    {0xdb, 0x00, 0x10, 0x00, 0x00, 'x'},
		"nested map16":             {0x81, 0xa1, 'k', 0xde, 0xff, 0xff},
		"truncated":                {0x82, 0xa1, 'k'},
		"reserved byte":            {0xc1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeSession(b)
			require.ErrorIs(t, err, ErrBadEnvelope)
			require.ErrorIs(t, Unmarshal(append([]byte{EnvelopeVersion}, b...), &Command{}), ErrBadEnvelope)
		})
	}
	// Valid envelopes of every shape still pass.
	b, err := EncodeSession(map[string]any{"a": []any{1, "x", 2.5, true, nil, map[string]any{"b": []byte{1, 2}}}, "big": int64(1) << 40})
	require.NoError(t, err)
	require.NoError(t, checkLengths(b))
}

func TestSessionsKeepTimesButRefuseOtherExtensions(t *testing.T) {
	when := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	b, err := EncodeSession(map[string]any{"at": when})
	require.NoError(t, err)
	s, err := DecodeSession(b)
	require.NoError(t, err)
	require.True(t, when.Equal(s["at"].(time.Time)))

	// An extension whose payload looks like a huge map header.
	_, err = DecodeSession([]byte("\xd6\x01\xdf000i"))
	require.ErrorIs(t, err, ErrBadEnvelope)
	require.ErrorIs(t, Unmarshal([]byte("\x01\xd6\x01\xdf000i"), &Command{}), ErrBadEnvelope)
	_, err = DecodeSession([]byte("\xd6\xff\xdf000i")) // a time extension as the whole session
	require.ErrorIs(t, err, ErrBadEnvelope)
}
