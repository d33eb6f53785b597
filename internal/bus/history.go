package bus

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// History: recoverable pushes are stored in one JetStream stream per
// prefix before they are delivered (docs/protocol.md, "History").
//
// A recoverable push is a [Command] published with JetStream's publish (it
// waits for the stream's acknowledgement) to [Subjects.HistoryUID] or
// [Subjects.HistoryGroup]. The stream republishes every stored message to
// the same subject under "<p>.hr." ([Subjects.LiveUID], [Subjects.LiveGroup])
// with its sequence and the previous sequence of its subject in headers:
// gateways deliver those, so a live push carries its position, and a
// gateway sees a gap in a subject's sequences and reads what it missed.

// Defaults for [HistoryConfig].
const (
	DefaultHistoryMaxAge   = 10 * time.Minute
	DefaultHistoryMaxBytes = 256 << 20
	// HistoryDuplicateWindow is how long the stream remembers a push's
	// Nats-Msg-Id: a retry within it is stored once.
	HistoryDuplicateWindow = 2 * time.Minute
	// HistoryReadBatch is how many messages one direct-get request of
	// [Conn.ReadHistory] asks for.
	HistoryReadBatch = 256
	// DefaultPublishAttempts bounds the attempts of [Conn.PublishRecoverable]:
	// with its backoff (50 ms doubling up to 1 s) they span a stream leader's
	// election in a cluster.
	DefaultPublishAttempts = 8
)

// Errors of history, for errors.Is.
var (
	// ErrNoHistory means the NATS server has no JetStream, or the history
	// stream does not exist (no gateway with history created it).
	ErrNoHistory = errors.New("bus: no history (no JetStream, or no history stream)")
	// ErrBadPosition means a string is not a position ("<epoch>:<seq>").
	ErrBadPosition = errors.New("bus: bad history position")
	// ErrBadChannel means a string is not a channel ("u:<uid>", "g:<group>").
	ErrBadChannel = errors.New("bus: bad history channel")
	// ErrNotStored means the stream refused or never acknowledged a
	// recoverable push within its attempts.
	ErrNotStored = errors.New("bus: recoverable push not stored")
)

// Storage is where the history stream keeps its messages.
type Storage string

// Storage kinds.
const (
	StorageFile   Storage = "file"
	StorageMemory Storage = "memory"
)

// HistoryConfig is the history stream's configuration. Zero values mean
// the defaults.
type HistoryConfig struct {
	// MaxAge: older messages are dropped. Zero means DefaultHistoryMaxAge (10m).
	MaxAge time.Duration
	// MaxBytes: past it the oldest messages are dropped. Zero means
	// DefaultHistoryMaxBytes (256 MiB).
	MaxBytes int64
	// Storage is StorageFile (the default when empty) or StorageMemory.
	Storage Storage
	// Replicas is the stream's replication in a JetStream cluster (1 to 5).
	// Zero means 1.
	Replicas int
}

func (h HistoryConfig) withDefaults() HistoryConfig {
	if h.MaxAge == 0 {
		h.MaxAge = DefaultHistoryMaxAge
	}
	if h.MaxBytes == 0 {
		h.MaxBytes = DefaultHistoryMaxBytes
	}
	if h.Storage == "" {
		h.Storage = StorageFile
	}
	if h.Replicas == 0 {
		h.Replicas = 1
	}
	return h
}

// Check refuses values the stream cannot take.
func (h HistoryConfig) Check() error {
	h = h.withDefaults()
	switch {
	case h.MaxAge < time.Second:
		return fmt.Errorf("bus: history MaxAge %v: at least 1s", h.MaxAge)
	case h.MaxBytes < 1<<20:
		return fmt.Errorf("bus: history MaxBytes %d: at least 1 MiB", h.MaxBytes)
	case h.Storage != StorageFile && h.Storage != StorageMemory:
		return fmt.Errorf("bus: history Storage %q: want file or memory", h.Storage)
	case h.Replicas < 1 || h.Replicas > 5:
		return fmt.Errorf("bus: history Replicas %d: want 1 to 5", h.Replicas)
	}
	return nil
}

// HistoryStream is the name of the history stream: "HISTORY_" and the
// prefix with "." as "_" (HISTORY_gw).
func (s Subjects) HistoryStream() string { return "HISTORY_" + strings.ReplaceAll(s.p(), ".", "_") }

// HistoryUID is where a recoverable push to uid is published.
func (s Subjects) HistoryUID(uid string) string { return s.p() + ".h.u." + EncodeToken(uid) }

// HistoryGroup is where a recoverable push to group is published.
func (s Subjects) HistoryGroup(group string) string { return s.p() + ".h.g." + EncodeToken(group) }

// LiveUID is where the stream republishes the recoverable pushes to uid:
// gateways with a client bound to it subscribe.
func (s Subjects) LiveUID(uid string) string { return s.p() + ".hr.u." + EncodeToken(uid) }

// LiveGroup is LiveUID for a group.
func (s Subjects) LiveGroup(group string) string { return s.p() + ".hr.g." + EncodeToken(group) }

// Channel is a uid or a group as clients name it in positions: "u:<uid>"
// or "g:<group>".
type Channel struct {
	UID  bool // else a group
	Name string
}

// ParseChannel reads "u:<uid>" or "g:<group>"; the name is 1 to 256 bytes.
func ParseChannel(s string) (Channel, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || (kind != "u" && kind != "g") || name == "" || len(name) > 256 {
		return Channel{}, fmt.Errorf("%w: %.80q (want u:<uid> or g:<group>, names of 1 to 256 bytes)", ErrBadChannel, s)
	}
	return Channel{UID: kind == "u", Name: name}, nil
}

func (c Channel) String() string {
	if c.UID {
		return "u:" + c.Name
	}
	return "g:" + c.Name
}

// Stored is the channel's stream subject ([Subjects.HistoryUID] or HistoryGroup).
func (c Channel) Stored(s Subjects) string {
	if c.UID {
		return s.HistoryUID(c.Name)
	}
	return s.HistoryGroup(c.Name)
}

// Live is the channel's republish subject ([Subjects.LiveUID] or LiveGroup).
func (c Channel) Live(s Subjects) string {
	if c.UID {
		return s.LiveUID(c.Name)
	}
	return s.LiveGroup(c.Name)
}

// Position is where a message is in the history: the stream's epoch (its
// creation time in Unix ms, base 36: it changes when the stream is
// recreated) and the message's stream sequence. Seq 0 is before the first.
type Position struct {
	Epoch string
	Seq   uint64
}

// maxEpochLen: base 36 of any Unix ms a clock can give fits 13 digits.
const maxEpochLen = 13

// ParsePosition reads "<epoch>:<seq>": epoch 1 to 13 characters [0-9a-z],
// seq a decimal without sign or leading zeros.
func ParsePosition(s string) (Position, error) {
	epoch, seq, ok := strings.Cut(s, ":")
	if !ok || epoch == "" || len(epoch) > maxEpochLen || seq == "" || len(seq) > 1 && seq[0] == '0' {
		return Position{}, fmt.Errorf("%w: %.40q (want <epoch>:<seq>)", ErrBadPosition, s)
	}
	for i := 0; i < len(epoch); i++ {
		if c := epoch[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return Position{}, fmt.Errorf("%w: %.40q (epoch is base 36, lower case)", ErrBadPosition, s)
		}
	}
	for i := 0; i < len(seq); i++ {
		if c := seq[i]; c < '0' || c > '9' {
			return Position{}, fmt.Errorf("%w: %.40q (seq is decimal)", ErrBadPosition, s)
		}
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %.40q (seq out of range)", ErrBadPosition, s)
	}
	return Position{Epoch: epoch, Seq: n}, nil
}

func (p Position) String() string { return p.Epoch + ":" + strconv.FormatUint(p.Seq, 10) }

// AppendJSON appends the position as a JSON string (it needs no escaping).
func (p Position) AppendJSON(b []byte) []byte {
	b = append(b, '"')
	b = append(b, p.Epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '"')
}

// EpochOf is the epoch of a stream created at created.
func EpochOf(created time.Time) string { return strconv.FormatInt(created.UnixMilli(), 36) }

// HistoryInfo is what a reader needs of the stream's state.
type HistoryInfo struct {
	Epoch string
	// FirstSeq and LastSeq are the oldest and newest sequences stored (an
	// empty stream that held messages has FirstSeq = LastSeq + 1).
	FirstSeq, LastSeq uint64
}

// Resume says where to read after a client's position p: from Seq+1,
// ok. It is not ok, and nothing may be replayed, when p is of another epoch
// (the stream was recreated), beyond the stream's last message, or before
// what the stream still holds (its first sequence is past p.Seq+1, so
// messages after p may be gone).
func (h HistoryInfo) Resume(p Position) (from uint64, ok bool) {
	if p.Epoch != h.Epoch || p.Seq > h.LastSeq || h.FirstSeq > p.Seq+1 {
		return 0, false
	}
	return p.Seq + 1, true
}

// Last is the position of the stream's newest message.
func (h HistoryInfo) Last() Position { return Position{Epoch: h.Epoch, Seq: h.LastSeq} }

// jsErr maps the errors of JetStream calls to ErrNoHistory where the
// server has no JetStream or no stream.
func jsErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("bus: %s: %w: %w", op, ErrNoHistory, err)
	}
	return wrap(op, "", err)
}

// EnsureHistory creates the history stream of s, or updates its limits to
// cfg, and returns its state. ErrNoHistory when the server has no
// JetStream. Gateways with history call it at start.
func (c *Conn) EnsureHistory(ctx context.Context, s Subjects, cfg HistoryConfig) (HistoryInfo, error) {
	if err := cfg.Check(); err != nil {
		return HistoryInfo{}, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(c.nc)
	if err != nil {
		return HistoryInfo{}, jsErr("history stream", err)
	}
	storage := jetstream.FileStorage
	if cfg.Storage == StorageMemory {
		storage = jetstream.MemoryStorage
	}
	p := s.p()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        s.HistoryStream(),
		Description: "gatewayworker: recoverable pushes (docs/protocol.md, History)",
		Subjects:    []string{p + ".h.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
		Duplicates:  HistoryDuplicateWindow,
		AllowDirect: true,
		RePublish:   &jetstream.RePublish{Source: p + ".h.>", Destination: p + ".hr.>"},
	})
	if err != nil {
		return HistoryInfo{}, jsErr("history stream "+s.HistoryStream(), err)
	}
	return infoOf(st.CachedInfo()), nil
}

func infoOf(si *jetstream.StreamInfo) HistoryInfo {
	return HistoryInfo{Epoch: EpochOf(si.Created), FirstSeq: si.State.FirstSeq, LastSeq: si.State.LastSeq}
}

// HistoryInfo returns the history stream's state now.
func (c *Conn) HistoryInfo(ctx context.Context, s Subjects) (HistoryInfo, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return HistoryInfo{}, jsErr("history info", err)
	}
	st, err := js.Stream(ctx, s.HistoryStream())
	if err != nil {
		return HistoryInfo{}, jsErr("history info", err)
	}
	return infoOf(st.CachedInfo()), nil
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Error  *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// PublishRecoverable stores data on subject (a [Subjects.HistoryUID] or
// HistoryGroup) and returns its stream sequence once the stream
// acknowledged it. It tries up to DefaultPublishAttempts times, each
// within DefaultRequestTimeout and ctx, with one Nats-Msg-Id, so that a
// retry of a push the stream did store is not stored twice (within
// HistoryDuplicateWindow). "No responders" happens while a clustered
// stream elects a leader, and where there is no stream: then the stream's
// info says which, and the latter is ErrNoHistory at once.
func (c *Conn) PublishRecoverable(ctx context.Context, s Subjects, subject string, data []byte) (uint64, error) {
	var id [12]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{"Nats-Msg-Id": []string{base64.RawURLEncoding.EncodeToString(id[:])}}}
	backoff := 50 * time.Millisecond
	var last error
	for attempt := 0; attempt < DefaultPublishAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("%w: %w (last: %w)", ErrNotStored, ctx.Err(), last)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		actx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
		r, err := c.nc.RequestMsgWithContext(actx, m)
		cancel()
		if err != nil {
			last = wrap("publish", subject, err)
			if errors.Is(err, nats.ErrNoResponders) {
				if _, ierr := c.HistoryInfo(ctx, s); errors.Is(ierr, ErrNoHistory) {
					return 0, fmt.Errorf("bus: publish %s: %w", subject, ierr)
				}
			}
			if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrConnectionClosed) || ctx.Err() != nil {
				return 0, fmt.Errorf("%w: %w", ErrNotStored, last)
			}
			continue
		}
		var ack pubAck
		if err := json.Unmarshal(r.Data, &ack); err != nil {
			last = fmt.Errorf("bus: publish %s: bad acknowledgement: %w", subject, err)
			continue
		}
		if ack.Error != nil {
			last = fmt.Errorf("bus: publish %s: stream refused (%d): %s", subject, ack.Error.Code, ack.Error.Description)
			continue
		}
		return ack.Seq, nil
	}
	return 0, fmt.Errorf("%w after %d attempts: %w", ErrNotStored, DefaultPublishAttempts, last)
}

// HistoryMsg is a stored recoverable push: its sequence, the sequence of
// the previous message of its subject (live messages only: 0 when read,
// or when it is the subject's first), and its body (a [Command]).
type HistoryMsg struct {
	Seq, Prev uint64
	Data      []byte
}

// directGet is JetStream's direct get request, batched.
type directGet struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// ReadHistory calls each, in order, for the messages stored on subject
// with sequences from from to upTo (0: to the newest), until each returns
// false or none is left (the server's up_to_seq does not bound a batch by
// subject, so a batch may carry some past upTo: they are not handed to each). It reads with batched direct gets of
// HistoryReadBatch messages (the stream allows direct access), each batch
// within DefaultRequestTimeout and ctx.
func (c *Conn) ReadHistory(ctx context.Context, s Subjects, subject string, from, upTo uint64, each func(HistoryMsg) bool) error {
	api := "$JS.API.DIRECT.GET." + s.HistoryStream()
	inbox := c.nc.NewInbox()
	ch := make(chan *nats.Msg, HistoryReadBatch+1)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return wrap("subscribe", inbox, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	next := max(from, 1)
	for upTo == 0 || next <= upTo {
		req, _ := json.Marshal(directGet{Seq: next, NextFor: subject, Batch: HistoryReadBatch})
		if err := c.nc.PublishRequest(api, inbox, req); err != nil {
			return wrap("history read", subject, err)
		}
		more, err := readBatch(ctx, ch, &next, upTo, each)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// readBatch takes one batch's answers off ch; more is false when the
// stream has nothing left (or each said stop).
func readBatch(ctx context.Context, ch <-chan *nats.Msg, next *uint64, upTo uint64, each func(HistoryMsg) bool) (more bool, err error) {
	timer := time.NewTimer(DefaultRequestTimeout)
	defer timer.Stop()
	got := 0
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timer.C:
			return false, fmt.Errorf("bus: history read: %w", ErrTimeout)
		case <-ctx.Done():
			return false, fmt.Errorf("bus: history read: %w", ctx.Err())
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // nothing (left) on the subject
			return false, nil
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return pending > 0 && got > 0, nil
		case "503":
			return false, fmt.Errorf("bus: history read: %w", ErrNoHistory)
		default:
			return false, fmt.Errorf("bus: history read: status %s %s", status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return false, fmt.Errorf("bus: history read: message without a sequence")
		}
		got++
		*next = seq + 1
		if upTo != 0 && seq > upTo || !each(HistoryMsg{Seq: seq, Data: m.Data}) {
			return false, nil
		}
	}
}

// SubscribeLive calls h for every message the history stream republishes
// on subject ([Subjects.LiveUID], LiveGroup), with its sequence and the
// previous sequence of its subject. Messages without a sequence (not
// from the stream) are dropped.
func (c *Conn) SubscribeLive(subject string, h func(HistoryMsg)) (*Subscription, error) {
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return
		}
		prev, _ := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
		h(HistoryMsg{Seq: seq, Prev: prev, Data: m.Data})
	})
	if err != nil {
		return nil, wrap("subscribe", subject, err)
	}
	if err := sub.SetPendingLimits(PendingMsgs, PendingBytes); err != nil {
		return nil, wrap("subscribe", subject, err)
	}
	return &Subscription{sub: sub}, nil
}
