package bus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// EnvelopeVersion is the first byte of every envelope. A decoder refuses
// other versions, so a mixed-version cluster fails loudly, not subtly.
// Adding a field is not a new version: decoders skip keys they do not know.
const EnvelopeVersion byte = 1

// ErrBadEnvelope means bytes from the bus could not be decoded.
var ErrBadEnvelope = errors.New("bus: bad envelope")

// EventKind is the kind of one client event.
type EventKind uint8

// Event kinds, in the order a client's events happen.
const (
	EventConnect EventKind = iota + 1
	EventWebSocketConnect
	EventMessage
	EventClose
)

var eventKindNames = [...]string{"", "connect", "websocket_connect", "message", "close"}

// String returns the kind in snake_case, as metrics label it.
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && k > 0 {
		return eventKindNames[k]
	}
	return "event_" + strconv.Itoa(int(k))
}

// Event is one thing that happened to a client.
type Event struct {
	Kind EventKind `msgpack:"k"`
	// Body is the message (EventMessage).
	Body []byte `msgpack:"b,omitempty"`
	// WS describes the handshake (EventWebSocketConnect).
	WS *WebSocketInfo `msgpack:"w,omitempty"`
	// Reason says why the client left (EventClose).
	Reason CloseReason `msgpack:"r,omitempty"`
}

// WebSocketInfo is what a WebSocket handshake carried.
type WebSocketInfo struct {
	Path   string              `msgpack:"p"`
	Query  string              `msgpack:"q,omitempty"`
	Header map[string][]string `msgpack:"h,omitempty"`
}

// EventBatch is one request from a gateway to the worker queue group: events
// of one client, in order. A gateway has at most one unacknowledged batch per
// client, so batches of a client never overlap; Seq numbers them from 1, and
// a resent batch keeps its Seq so a worker can tell a duplicate.
type EventBatch struct {
	Gateway string `msgpack:"g"`
	Client  string `msgpack:"c"`
	Seq     uint64 `msgpack:"q"`
	// Addr is the client's remote address.
	Addr string `msgpack:"a,omitempty"`
	// UID is the uid the client is bound to, if any.
	UID string `msgpack:"u,omitempty"`
	// Session is the client's session (see [EncodeSession]) when the batch left.
	Session []byte `msgpack:"s,omitempty"`
	// Resent is set on every copy the gateway sent again after its ack
	// timeout: a worker may run it only once the gateway granted it the
	// batch (a claim, see [AckWorking]), since another copy may run elsewhere.
	Resent bool    `msgpack:"r,omitempty"`
	Events []Event `msgpack:"e"`
}

// AckStatus says whether a worker has finished a batch.
type AckStatus uint8

// Ack statuses.
const (
	// AckDone: every handler of the batch returned.
	AckDone AckStatus = iota + 1
	// AckWorking: handlers still run; the gateway restarts its ack timer.
	// Workers send it every [ProgressInterval]. Sent as a request (with a
	// reply subject) it is a claim: the gateway answers AckWorking when the
	// batch is still in flight and nobody claimed it since it was last
	// sent (the claimant may run it), AckDone otherwise (it must not).
	AckWorking
)

// Ack is a worker's answer to an [EventBatch], sent to the batch's reply subject.
type Ack struct {
	Client string    `msgpack:"c"`
	Seq    uint64    `msgpack:"q"`
	Status AckStatus `msgpack:"t"`
	// SetSession is true when the handlers changed the session; Session then
	// replaces the gateway's copy (empty means cleared).
	SetSession bool   `msgpack:"x,omitempty"`
	Session    []byte `msgpack:"s,omitempty"`
	// Worker is the id of a sticky worker process, on AckDone: the gateway
	// sends the client's next batches to [Subjects.WorkerEvents] of that
	// id instead of the queue group, while the worker answers there.
	Worker string `msgpack:"w,omitempty"`
}

// Op is the operation of a [Command].
type Op uint8

// Command operations.
const (
	OpSend Op = iota + 1
	OpClose
	OpDestroy
	OpBindUID
	OpUnbindUID
	OpJoinGroup
	OpLeaveGroup
	OpUngroup
	OpGetSession
	OpSetSession
	OpUpdateSession
	OpIsOnline
	// OpGetUID: Reply.Items holds the client's uid, if it has one.
	OpGetUID
	// OpClientList asks a gateway for the clients whose connect event
	// went out and whose close event was not acknowledged yet: Items, in
	// parts, and Seq, the last Presence sequence the list includes.
	OpClientList
	// OpAccept accepts a pending client (docs/clients.md, "Pending
	// connections") and binds it to uid Name if Name is not empty.
	OpAccept
	// OpReject sends Body (if any) to a pending client and closes it with
	// CloseUnauthorized.
	OpReject
)

// OpSetFrame sets the named clients' default frame type (Frame) for the
// pushes that do not choose one; FrameDefault restores the gateway's
// (GatewayWorker's websocketType, per connection). Its number leaves 15
// and 16 to the ops of pending connections (OpAccept, OpReject).
const OpSetFrame Op = 17

// Frame is the WebSocket frame type a push goes out in. TCP clients get
// the same bytes whatever it says.
type Frame uint8

// Frame types.
const (
	// FrameDefault leaves the choice to the connection's default (see
	// OpSetFrame), then to the gateway's; where none is set, bytes that
	// are valid UTF-8 go as text, others as binary.
	FrameDefault Frame = iota
	// FrameText: a text frame. A text frame must carry UTF-8, or browsers
	// fail the connection (1007): bytes that are not UTF-8 go as binary.
	FrameText
	// FrameBinary: a binary frame, whatever the bytes.
	FrameBinary
)

var frameNames = [...]string{"default", "text", "binary"}

// String returns "default", "text" or "binary".
func (f Frame) String() string {
	if int(f) < len(frameNames) {
		return frameNames[f]
	}
	return "frame_" + strconv.Itoa(int(f))
}

// ParseFrame is the inverse of String; "" is FrameDefault.
func ParseFrame(s string) (Frame, error) {
	switch s {
	case "", "default":
		return FrameDefault, nil
	case "text":
		return FrameText, nil
	case "binary":
		return FrameBinary, nil
	}
	return FrameDefault, fmt.Errorf("%w: %q (want text, binary or default)", ErrBadFrame, s)
}

// ErrBadFrame means a frame type is none of text, binary and default.
var ErrBadFrame = errors.New("bus: bad frame type")

// Command is a push or a request to gateways: on a gateway's command subject
// it names clients; on a group, uid or broadcast subject it names none and
// applies to the subject's members.
type Command struct {
	Op      Op       `msgpack:"o"`
	Clients []string `msgpack:"c,omitempty"`
	// Name is the group or uid of membership ops.
	Name string `msgpack:"n,omitempty"`
	// Body is the data to send, the last data before a close, or the encoded
	// session for session ops.
	Body []byte `msgpack:"b,omitempty"`
	// Exclude lists client ids that a group, uid or broadcast send skips.
	Exclude []string `msgpack:"x,omitempty"`
	// Frame is the frame type of an OpSend's body, or the default that
	// OpSetFrame sets.
	Frame Frame `msgpack:"f,omitempty"`
}

// ReplyCode classifies a failed command or query on the wire.
type ReplyCode string

// Reply codes.
const (
	ReplyOK         ReplyCode = ""
	ReplyNotFound   ReplyCode = "not_found"
	ReplyBadRequest ReplyCode = "bad_request"
	ReplyLimit      ReplyCode = "limit"
)

// Reply answers a [Command] sent as a request, or one part of a query answer.
type Reply struct {
	Code    ReplyCode `msgpack:"e,omitempty"`
	Message string    `msgpack:"m,omitempty"`
	Gateway string    `msgpack:"g,omitempty"`
	// Body carries an encoded session.
	Body []byte `msgpack:"b,omitempty"`
	// OK answers yes/no questions (IsOnline).
	OK bool `msgpack:"k,omitempty"`
	// Count answers counting queries.
	Count int64 `msgpack:"n,omitempty"`
	// Items answers list queries.
	Items []string `msgpack:"i,omitempty"`
	// Sessions maps client ids to encoded sessions.
	Sessions map[string][]byte `msgpack:"s,omitempty"`
	// More is set on every part of a long answer but the last.
	More bool `msgpack:"more,omitempty"`
	// Seq answers OpClientList (see Presence.Seq).
	Seq uint64 `msgpack:"sq,omitempty"`
}

// Presence is a gateway's report of the clients that workers heard of
// (their connect event went out) and of those they are done with (their
// close event was acknowledged), since its previous report.
type Presence struct {
	Gateway string `msgpack:"g"`
	// Boot tells gateway processes with the same id apart.
	Boot int64 `msgpack:"b"`
	// Seq numbers reports from 1; a gap means one was lost.
	Seq     uint64   `msgpack:"q"`
	Added   []string `msgpack:"a,omitempty"`
	Removed []string `msgpack:"r,omitempty"`
}

// HeldSuffix ends the subject of a [Held] report: the reply subject of a
// gateway's batches with HeldSuffix in place of the client id (client ids
// never hold a '~').
const HeldSuffix = "~held"

// Held is a worker's progress report for many batches of one gateway at
// once: the batches waiting in the worker that their gateway granted it
// (an AckWorking for each, in one message). Clients[i] goes with Seqs[i].
type Held struct {
	Clients []string `msgpack:"c"`
	Seqs    []uint64 `msgpack:"q"`
}

// WorkerBeat is a worker's heartbeat on [Subjects.WorkerBeat].
type WorkerBeat struct {
	ID string `msgpack:"id"`
}

// GatewayInfo is a gateway's answer to [QueryInfo], for `gatewayworker status`.
type GatewayInfo struct {
	ID string `msgpack:"id" json:"id"`
	// Boot is the start time, Unix milliseconds.
	Boot        int64    `msgpack:"boot" json:"boot_unix_ms"`
	Addrs       []string `msgpack:"addrs" json:"addrs"`
	Connections int64    `msgpack:"conns" json:"connections"`
	Groups      int64    `msgpack:"groups" json:"groups"`
	UIDs        int64    `msgpack:"uids" json:"uids"`
	MessagesIn  uint64   `msgpack:"msg_in" json:"messages_in"`
	BytesIn     uint64   `msgpack:"bytes_in" json:"bytes_in"`
	PushesOut   uint64   `msgpack:"push_out" json:"pushes_out"`
	BytesOut    uint64   `msgpack:"bytes_out" json:"bytes_out"`
}

// WorkerInfo is a worker's answer on [Subjects.WorkerInfo].
type WorkerInfo struct {
	ID string `msgpack:"id" json:"id"`
	// Boot is the start time, Unix milliseconds.
	Boot     int64  `msgpack:"boot" json:"boot_unix_ms"`
	Handled  uint64 `msgpack:"handled" json:"events_handled"`
	InFlight int64  `msgpack:"in_flight" json:"in_flight"`
	// ReaperClients is how many clients of live gateways the worker's
	// reaper knows: those whose OnClose it would see sent if their gateway
	// died. Workers that do not reap (PHP's BusinessWorker) leave it out.
	ReaperClients int64 `msgpack:"reaper_clients" json:"reaper_clients"`
}

// Beat is a gateway's presence message on [Subjects.Heartbeat].
type Beat struct {
	Gateway string `msgpack:"g"`
	// Boot is the gateway's start time, Unix milliseconds.
	Boot int64 `msgpack:"b"`
	// Leaving is set on the last beat of a gateway that stops cleanly.
	Leaving bool     `msgpack:"l,omitempty"`
	Addrs   []string `msgpack:"a,omitempty"`
	Conns   int64    `msgpack:"n"`
	// Interval is the gateway's BeatInterval in milliseconds; zero means
	// DefaultBeatInterval. Receivers derive every deadline about the
	// gateway from it (see [GatewayDeadAfter]).
	Interval int64 `msgpack:"i,omitempty"`
}

// DefaultBeatInterval is a gateway's beat interval when its Beat says none.
const DefaultBeatInterval = time.Second

// Every is the gateway's beat interval.
func (b *Beat) Every() time.Duration {
	if b.Interval <= 0 {
		return DefaultBeatInterval
	}
	return time.Duration(b.Interval) * time.Millisecond
}

// GatewayDeadAfter is how long a gateway that beats every interval may go
// unheard before workers take it for dead and run its clients' OnClose:
// 3.5 intervals. A gateway closes its own clients sooner when its beats
// stop coming back (NATSLossTimeout, validated against this).
func GatewayDeadAfter(interval time.Duration) time.Duration { return interval * 7 / 2 }

// MarkResent returns a copy of an encoded batch with Resent set.
func MarkResent(data []byte) ([]byte, error) {
	var b EventBatch
	if err := UnmarshalBatch(data, &b); err != nil {
		return nil, err
	}
	b.Resent = true
	return MarshalBatch(&b), nil
}

type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	e.enc.SetSortMapKeys(true)
	return e
}}

// Marshal encodes v behind the version byte. EventBatch, Ack and Command,
// which cross NATS for every client message, have hand-written encoders
// that write the bytes msgpack/v5 would, into one exact allocation.
func Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case *EventBatch:
		return MarshalBatch(x), nil
	case *Ack:
		return MarshalAck(x), nil
	case *Command:
		return MarshalCommand(x), nil
	}
	return marshalReflect(v)
}

func marshalReflect(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	e.buf.WriteByte(EnvelopeVersion)
	if err := e.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("bus: encode %T: %w", v, err)
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// Unmarshal decodes an envelope made by [Marshal] into v. Byte slices in v
// may share data's memory: data must not be reused afterwards (a NATS
// message's Data never is).
func Unmarshal(data []byte, v any) error {
	switch x := v.(type) {
	case *EventBatch:
		return UnmarshalBatch(data, x)
	case *Ack:
		return UnmarshalAck(data, x)
	case *Command:
		return UnmarshalCommand(data, x)
	}
	payload, err := payloadOf(data)
	if err != nil {
		return err
	}
	return unmarshalReflect(payload, v)
}

// payloadOf checks the version byte and returns what follows it.
func payloadOf(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadEnvelope)
	}
	if data[0] != EnvelopeVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadEnvelope, data[0], EnvelopeVersion)
	}
	return data[1:], nil
}

// unmarshalReflect decodes msgpack (no version byte) into v.
func unmarshalReflect(payload []byte, v any) error {
	if err := checkLengths(payload); err != nil {
		return err
	}
	if err := msgpack.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrBadEnvelope, v, err)
	}
	return nil
}

// EncodeSession encodes a session map. Keys are sorted, so equal maps give
// equal bytes; an empty or nil map gives nil.
func EncodeSession(s map[string]any) ([]byte, error) {
	if len(s) == 0 {
		return nil, nil
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(s); err != nil {
		return nil, fmt.Errorf("bus: encode session: %w", err)
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// DecodeSession decodes what [EncodeSession] made; never returns a nil map.
// Integers come back as int64 (uint64 only above MaxInt64) and floats as
// float64, whatever their size on the wire, so `s["n"].(int64)` works for any
// integer that was stored.
func DecodeSession(b []byte) (map[string]any, error) {
	if len(b) == 0 {
		return map[string]any{}, nil
	}
	if err := walkLengths(b, true); err != nil {
		return nil, err
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	v, err := decodeSessionValue(dec, len(b))
	if err != nil {
		return nil, fmt.Errorf("%w: session: %v", ErrBadEnvelope, err)
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: session is a %T, not a map", ErrBadEnvelope, v)
	}
	for k, x := range m {
		m[k] = normalizeInts(x)
	}
	return m, nil
}

// decodeSessionValue decodes one value of a session, sizing maps and
// slices by what the input can hold rather than by what their headers claim.
func decodeSessionValue(dec *msgpack.Decoder, limit int) (any, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil || n < 0 {
			return nil, err
		}
		if n > limit {
			return nil, fmt.Errorf("map of %d entries in %d bytes", n, limit)
		}
		m := make(map[string]any, n)
		for range n {
			k, err := dec.DecodeString()
			if err != nil {
				return nil, err
			}
			if m[k], err = decodeSessionValue(dec, limit); err != nil {
				return nil, err
			}
		}
		return m, nil
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil || n < 0 {
			return nil, err
		}
		if n > limit {
			return nil, fmt.Errorf("array of %d items in %d bytes", n, limit)
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = decodeSessionValue(dec, limit); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return dec.DecodeInterfaceLoose()
}

// normalizeInts turns the uint64 that compact encoding makes of every
// non-negative integer back into int64, the type users expect.
func normalizeInts(v any) any {
	switch x := v.(type) {
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
	case []any:
		for i := range x {
			x[i] = normalizeInts(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeInts(x[k])
		}
	}
	return v
}

// ProgressInterval is how often a worker tells a gateway that a batch's
// handlers still run (an [AckWorking] ack), so that a slow handler is never
// mistaken for a dead worker.
const ProgressInterval = 250 * time.Millisecond
