package bus

import (
	"encoding/binary"
	"maps"
	"math"
	"slices"
)

// Hand-written msgpack for the envelopes that cross NATS once or twice per
// client message: EventBatch, Ack and Command. Reflection-based msgpack was
// a sixth of the CPU of an echo round trip. The encoders write exactly the
// bytes msgpack/v5 writes for these structs (compact integers, fields in
// declaration order, omitempty honoured); the decoders read those bytes and
// leave anything else (signed integers, unknown keys, nil where a
// value was expected) to the reflection decoder. TestFastCodecMatches and
// FuzzFastDecode hold both properties.

// appendUint writes n as msgpack/v5 does with compact integers.
func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

func appendStr(b []byte, s string) []byte {
	switch l := len(s); {
	case l < 32:
		b = append(b, 0xa0|byte(l))
	case l <= math.MaxUint8:
		b = append(b, 0xd9, byte(l))
	case l <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(l))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(l))
	}
	return append(b, s...)
}

// appendBin writes p; msgpack/v5 writes a nil slice as nil, not as bin.
func appendBin(b, p []byte) []byte {
	if p == nil {
		return append(b, 0xc0)
	}
	switch l := len(p); {
	case l <= math.MaxUint8:
		b = append(b, 0xc4, byte(l))
	case l <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(l))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(l))
	}
	return append(b, p...)
}

// appendLen writes a map (fix 0x80, 16-bit 0xde) or array (0x90, 0xdc) header.
func appendLen(b []byte, fix, wide byte, l int) []byte {
	switch {
	case l < 16:
		return append(b, fix|byte(l))
	case l <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, wide), uint16(l))
	}
	return binary.BigEndian.AppendUint32(append(b, wide+1), uint32(l))
}

func appendMapLen(b []byte, l int) []byte   { return appendLen(b, 0x80, 0xde, l) }
func appendArrayLen(b []byte, l int) []byte { return appendLen(b, 0x90, 0xdc, l) }

func appendStrings(b []byte, ss []string) []byte {
	b = appendArrayLen(b, len(ss))
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// count returns how many of the conditions hold: the optional fields
// present, which sizes a struct's map header.
func count(present ...bool) int {
	n := 0
	for _, p := range present {
		if p {
			n++
		}
	}
	return n
}

// MarshalBatch is [Marshal] for an EventBatch, without b escaping to the
// heap: the envelope is the only allocation.
func MarshalBatch(b *EventBatch) []byte { return b.appendMsgpack(envelope(b.sizeHint())) }

// MarshalAck is [Marshal] for an Ack, without a escaping to the heap.
func MarshalAck(a *Ack) []byte { return a.appendMsgpack(envelope(a.sizeHint())) }

// MarshalCommand is [Marshal] for a Command, without c escaping to the heap.
func MarshalCommand(c *Command) []byte { return c.appendMsgpack(envelope(c.sizeHint())) }

// envelope returns a buffer holding the version byte, with room for size more.
func envelope(size int) []byte { return append(make([]byte, 0, 1+size), EnvelopeVersion) }

// perField bounds a field's overhead: its one-letter key (2 bytes) and the
// widest header of its value (a code and a 64-bit length or integer).
const perField = 11

func (e *EventBatch) sizeHint() int {
	n := 8*perField + len(e.Gateway) + len(e.Client) + len(e.Addr) + len(e.UID) + len(e.Session)
	for i := range e.Events {
		n += 4*perField + len(e.Events[i].Body)
		if e.Events[i].WS != nil {
			n += e.Events[i].WS.sizeHint()
		}
	}
	return n
}

func (a *Ack) sizeHint() int { return 6*perField + len(a.Client) + len(a.Session) + len(a.Worker) }

func (c *Command) sizeHint() int {
	n := 6*perField + len(c.Name) + len(c.Body)
	for _, s := range c.Clients {
		n += perField + len(s)
	}
	for _, s := range c.Exclude {
		n += perField + len(s)
	}
	return n
}

func (e *EventBatch) appendMsgpack(b []byte) []byte {
	b = appendMapLen(b, 4+count(e.Addr != "", e.UID != "", len(e.Session) > 0, e.Resent))
	b = appendUint(appendStr(appendStr(appendStr(appendStr(appendStr(b, "g"), e.Gateway), "c"), e.Client), "q"), e.Seq)
	if e.Addr != "" {
		b = appendStr(appendStr(b, "a"), e.Addr)
	}
	if e.UID != "" {
		b = appendStr(appendStr(b, "u"), e.UID)
	}
	if len(e.Session) > 0 {
		b = appendBin(appendStr(b, "s"), e.Session)
	}
	if e.Resent {
		b = append(appendStr(b, "r"), 0xc3)
	}
	b = appendStr(b, "e")
	if e.Events == nil {
		return append(b, 0xc0)
	}
	b = appendArrayLen(b, len(e.Events))
	for i := range e.Events {
		ev := &e.Events[i]
		b = appendMapLen(b, 1+count(len(ev.Body) > 0, ev.WS != nil, ev.Reason != 0))
		b = appendUint(appendStr(b, "k"), uint64(ev.Kind))
		if len(ev.Body) > 0 {
			b = appendBin(appendStr(b, "b"), ev.Body)
		}
		if ev.WS != nil {
			b = ev.WS.appendMsgpack(appendStr(b, "w"))
		}
		if ev.Reason != 0 {
			b = appendUint(appendStr(b, "r"), uint64(ev.Reason))
		}
	}
	return b
}

// appendMsgpack writes the handshake with its header names sorted, as
// msgpack/v5 does with SetSortMapKeys.
func (w *WebSocketInfo) appendMsgpack(b []byte) []byte {
	b = appendMapLen(b, 1+count(w.Query != "", len(w.Header) > 0))
	b = appendStr(appendStr(b, "p"), w.Path)
	if w.Query != "" {
		b = appendStr(appendStr(b, "q"), w.Query)
	}
	if len(w.Header) > 0 {
		b = appendMapLen(appendStr(b, "h"), len(w.Header))
		for _, name := range slices.Sorted(maps.Keys(w.Header)) {
			b = appendStr(b, name)
			if values := w.Header[name]; values == nil {
				b = append(b, 0xc0)
			} else {
				b = appendStrings(b, values)
			}
		}
	}
	return b
}

func (w *WebSocketInfo) sizeHint() int {
	n := 3*perField + len(w.Path) + len(w.Query)
	for name, values := range w.Header {
		n += perField + len(name)
		for _, v := range values {
			n += perField + len(v)
		}
	}
	return n
}

func (a *Ack) appendMsgpack(b []byte) []byte {
	b = appendMapLen(b, 3+count(a.SetSession, len(a.Session) > 0, a.Worker != ""))
	b = appendStr(appendStr(b, "c"), a.Client)
	b = appendUint(appendStr(b, "q"), a.Seq)
	b = appendUint(appendStr(b, "t"), uint64(a.Status))
	if a.SetSession {
		b = append(appendStr(b, "x"), 0xc3)
	}
	if len(a.Session) > 0 {
		b = appendBin(appendStr(b, "s"), a.Session)
	}
	if a.Worker != "" {
		b = appendStr(appendStr(b, "w"), a.Worker)
	}
	return b
}

func (c *Command) appendMsgpack(b []byte) []byte {
	b = appendMapLen(b, 1+count(len(c.Clients) > 0, c.Name != "", len(c.Body) > 0, len(c.Exclude) > 0, c.Frame != FrameDefault))
	b = appendUint(appendStr(b, "o"), uint64(c.Op))
	if len(c.Clients) > 0 {
		b = appendStrings(appendStr(b, "c"), c.Clients)
	}
	if c.Name != "" {
		b = appendStr(appendStr(b, "n"), c.Name)
	}
	if len(c.Body) > 0 {
		b = appendBin(appendStr(b, "b"), c.Body)
	}
	if len(c.Exclude) > 0 {
		b = appendStrings(appendStr(b, "x"), c.Exclude)
	}
	if c.Frame != FrameDefault {
		b = appendUint(appendStr(b, "f"), uint64(c.Frame))
	}
	return b
}

// reader reads the msgpack that the encoders above write. Any other form
// sets ok to false, and the caller decodes with reflection instead.
type reader struct {
	b  []byte
	i  int
	ok bool
}

func (r *reader) fail() { r.ok = false }

func (r *reader) byte() byte {
	if !r.ok || r.i >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// n reads an l-byte big-endian length or integer.
func (r *reader) n(l int) uint64 {
	if !r.ok || len(r.b)-r.i < l {
		r.fail()
		return 0
	}
	var v uint64
	for _, c := range r.b[r.i : r.i+l] {
		v = v<<8 | uint64(c)
	}
	r.i += l
	return v
}

// take returns the next l bytes, without copying.
func (r *reader) take(l uint64) []byte {
	if !r.ok || uint64(len(r.b)-r.i) < l {
		r.fail()
		return nil
	}
	p := r.b[r.i : r.i+int(l) : r.i+int(l)]
	r.i += int(l)
	return p
}

func (r *reader) uint(max uint64) uint64 {
	c := r.byte()
	var v uint64
	switch {
	case c <= 0x7f:
		v = uint64(c)
	case c >= 0xcc && c <= 0xcf:
		v = r.n(1 << (c - 0xcc))
	default:
		r.fail()
	}
	if v > max {
		r.fail()
	}
	return v
}

func (r *reader) strBytes() []byte {
	c := r.byte()
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return r.take(uint64(c & 0x1f))
	case c >= 0xd9 && c <= 0xdb:
		return r.take(r.n(1 << (c - 0xd9)))
	}
	r.fail()
	return nil
}

func (r *reader) str() string { return string(r.strBytes()) }

// bin returns a slice of the input: envelopes are decoded from a NATS
// message's own buffer, which nothing reuses.
func (r *reader) bin() []byte {
	c := r.byte()
	if c >= 0xc4 && c <= 0xc6 {
		return r.take(r.n(1 << (c - 0xc4)))
	}
	r.fail()
	return nil
}

// length reads a map or array header (fix, 16 and 32 bit forms).
func (r *reader) length(fix, wide byte) int {
	c := r.byte()
	switch {
	case c&0xf0 == fix:
		return int(c & 0x0f)
	case c == wide:
		return int(r.n(2))
	case c == wide+1:
		return int(r.n(4))
	}
	r.fail()
	return 0
}

// mapLen reads a map header and bounds it by the bytes left, so that a
// hostile header cannot size an allocation: each entry takes at least 2
// bytes, each array item at least 1.
func (r *reader) mapLen() int {
	l := r.length(0x80, 0xde)
	if l > (len(r.b)-r.i)/2 {
		r.fail()
	}
	return l
}

func (r *reader) arrayLen() int {
	l := r.length(0x90, 0xdc)
	if l > len(r.b)-r.i {
		r.fail()
	}
	return l
}

// key reads a one-letter field name and refuses a repeat (reflection
// would merge a repeated slice field into what it decoded first).
func (r *reader) key(seen *uint32) byte {
	k := r.strBytes()
	if len(k) != 1 || k[0] < 'a' || k[0] > 'z' || *seen&(1<<(k[0]-'a')) != 0 {
		r.fail()
		return 0
	}
	*seen |= 1 << (k[0] - 'a')
	return k[0]
}

// null consumes a nil, if one comes next, and reports whether it did.
func (r *reader) null() bool {
	if r.ok && r.i < len(r.b) && r.b[r.i] == 0xc0 {
		r.i++
		return true
	}
	return false
}

// strings reads an array of strings, or nil as msgpack/v5 writes a nil
// slice.
func (r *reader) strings() []string {
	if r.null() {
		return nil
	}
	n := r.arrayLen()
	if !r.ok {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.str()
	}
	return ss
}

func (r *reader) bool() bool {
	switch r.byte() {
	case 0xc2:
		return false
	case 0xc3:
		return true
	}
	r.fail()
	return false
}

// done reports whether decoding succeeded and used every byte.
func (r *reader) done() bool { return r.ok && r.i == len(r.b) }

// UnmarshalBatch is [Unmarshal] for an EventBatch, without b escaping to
// the heap when the fast decoder reads it. It and its two siblings are
// written out: one generic function calls decode through its dictionary,
// and that made every decoded struct escape (go build -gcflags=-m).
func UnmarshalBatch(data []byte, b *EventBatch) error {
	payload, err := payloadOf(data)
	if err != nil {
		return err
	}
	r := reader{b: payload, ok: true}
	d := *b // fields the input lacks keep their values, as with reflection
	d.decode(&r)
	if r.done() {
		*b = d
		return nil
	}
	slow := new(EventBatch)
	*slow = *b
	err = unmarshalReflect(payload, slow)
	*b = *slow
	return err
}

// UnmarshalAck is [Unmarshal] for an Ack, without a escaping to the heap
// when the fast decoder reads it.
func UnmarshalAck(data []byte, a *Ack) error {
	payload, err := payloadOf(data)
	if err != nil {
		return err
	}
	r := reader{b: payload, ok: true}
	d := *a
	d.decode(&r)
	if r.done() {
		*a = d
		return nil
	}
	slow := new(Ack)
	*slow = *a
	err = unmarshalReflect(payload, slow)
	*a = *slow
	return err
}

// UnmarshalCommand is [Unmarshal] for a Command, without c escaping to
// the heap when the fast decoder reads it.
func UnmarshalCommand(data []byte, c *Command) error {
	payload, err := payloadOf(data)
	if err != nil {
		return err
	}
	r := reader{b: payload, ok: true}
	d := *c
	d.decode(&r)
	if r.done() {
		*c = d
		return nil
	}
	slow := new(Command)
	*slow = *c
	err = unmarshalReflect(payload, slow)
	*c = *slow
	return err
}

func (e *EventBatch) decode(r *reader) {
	var seen uint32
	for range r.mapLen() {
		switch r.key(&seen) {
		case 'g':
			e.Gateway = r.str()
		case 'c':
			e.Client = r.str()
		case 'q':
			e.Seq = r.uint(math.MaxUint64)
		case 'a':
			e.Addr = r.str()
		case 'u':
			e.UID = r.str()
		case 's':
			e.Session = r.bin()
		case 'r':
			e.Resent = r.bool()
		case 'e':
			if r.null() {
				e.Events = nil
				continue
			}
			n := r.arrayLen()
			if !r.ok {
				return
			}
			e.Events = make([]Event, n)
			for i := range e.Events {
				e.Events[i].decode(r)
			}
		default:
			r.fail()
		}
		if !r.ok {
			return
		}
	}
}

func (ev *Event) decode(r *reader) {
	var seen uint32
	for range r.mapLen() {
		switch r.key(&seen) {
		case 'k':
			ev.Kind = EventKind(r.uint(math.MaxUint8))
		case 'b':
			ev.Body = r.bin()
		case 'r':
			ev.Reason = CloseReason(r.uint(math.MaxUint8))
		case 'w':
			if r.null() {
				ev.WS = nil
				continue
			}
			ev.WS = new(WebSocketInfo)
			ev.WS.decode(r)
		default:
			r.fail()
		}
		if !r.ok {
			return
		}
	}
}

func (w *WebSocketInfo) decode(r *reader) {
	var seen uint32
	for range r.mapLen() {
		switch r.key(&seen) {
		case 'p':
			w.Path = r.str()
		case 'q':
			w.Query = r.str()
		case 'h':
			if r.null() {
				w.Header = nil
				continue
			}
			n := r.mapLen()
			if !r.ok {
				return
			}
			w.Header = make(map[string][]string, n)
			for range n {
				name := r.str()
				w.Header[name] = r.strings()
			}
		default:
			r.fail()
		}
		if !r.ok {
			return
		}
	}
}

func (a *Ack) decode(r *reader) {
	var seen uint32
	for range r.mapLen() {
		switch r.key(&seen) {
		case 'c':
			a.Client = r.str()
		case 'q':
			a.Seq = r.uint(math.MaxUint64)
		case 't':
			a.Status = AckStatus(r.uint(math.MaxUint8))
		case 'x':
			a.SetSession = r.bool()
		case 's':
			a.Session = r.bin()
		case 'w':
			a.Worker = r.str()
		default:
			r.fail()
		}
		if !r.ok {
			return
		}
	}
}

func (c *Command) decode(r *reader) {
	var seen uint32
	for range r.mapLen() {
		switch r.key(&seen) {
		case 'o':
			c.Op = Op(r.uint(math.MaxUint8))
		case 'c':
			c.Clients = r.strings()
		case 'n':
			c.Name = r.str()
		case 'b':
			c.Body = r.bin()
		case 'x':
			c.Exclude = r.strings()
		case 'f':
			c.Frame = Frame(r.uint(math.MaxUint8))
		default:
			r.fail()
		}
		if !r.ok {
			return
		}
	}
}
