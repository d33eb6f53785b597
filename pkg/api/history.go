package api

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// History (docs/protocol.md, "History and recovery").

// ErrNoHistory means there is no history: the NATS server has no
// JetStream, or no gateway with history created the stream. A
// recoverable push fails with it before anything was delivered.
var ErrNoHistory = errors.New("api: no history (no JetStream, or no history stream)")

// Bounds of GetHistory.
const (
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
)

// History is a page of a uid's or group's stored pushes.
type History struct {
	// Messages are in order, oldest first.
	Messages []HistoryMessage
	// Complete reports that Messages start right after since: false when
	// since is of another epoch or older than what the stream holds (then
	// Messages is empty), and, for an empty since, when the stream has
	// dropped messages already.
	Complete bool
}

// HistoryMessage is one stored push.
type HistoryMessage struct {
	// Pos is its position, "<epoch>:<seq>": pass the last one as since
	// to read on.
	Pos   string
	Body  []byte
	Frame Frame
}

// Recoverable returns a view of c whose SendToUID(s) and SendToGroup(s)
// are recoverable: stored in the history stream before they are delivered,
// so that clients that reconnect with their positions get them (its other
// calls are c's). A recoverable push returns once the stream stored it,
// and fails with ErrNoHistory where there is none. The view shares c's
// connection and has no Close.
func (c *Client) Recoverable() Calls {
	v := *c
	v.recoverable, v.derived = true, true
	return &v
}

// recoverableTo reports whether a push to ch is recoverable: the view's,
// or one whose name matches Config.Recoverable.
func (c *Client) recoverableTo(ch bus.Channel) bool {
	if c.recoverable {
		return true
	}
	if len(c.cfg.Recoverable) == 0 {
		return false
	}
	name := ch.String()
	for _, p := range c.cfg.Recoverable {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// checkPatterns refuses Config.Recoverable patterns path.Match cannot use.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil || len(p) < 2 || (p[:2] != "u:" && p[:2] != "g:") {
			return fmt.Errorf("api: Recoverable pattern %q: want u:<glob> or g:<glob> (path.Match)", p)
		}
	}
	return nil
}

// pushTo sends cmd to ch's subject, or stores it in the history when the
// push is recoverable.
func (c *Client) pushTo(ctx context.Context, ch bus.Channel, cmd *bus.Command) error {
	if err := validName(ch.Name); err != nil {
		return err
	}
	if !c.recoverableTo(ch) {
		subject := c.subj.Group(ch.Name)
		if ch.UID {
			subject = c.subj.UID(ch.Name)
		}
		return c.publish(ctx, subject, cmd)
	}
	if err := c.canPush(ctx, cmd); err != nil {
		return err
	}
	_, err := c.bus.PublishRecoverable(ctx, c.subj, ch.Stored(c.subj), bus.MarshalCommand(cmd))
	return historyErr(err)
}

func historyErr(err error) error {
	if errors.Is(err, bus.ErrNoHistory) {
		return fmt.Errorf("%w: %w", ErrNoHistory, err)
	}
	return ofBus(err)
}

// GetHistory returns up to limit (0: DefaultHistoryLimit, at most
// MaxHistoryLimit) stored pushes of uid (kind "uid") or group (kind
// "group") name after position since ("": from the oldest held). Errors:
// ErrBadRequest for a bad kind or position, ErrInvalidName, ErrLimit,
// ErrNoHistory.
func (c *Client) GetHistory(ctx context.Context, kind, name, since string, limit int) (History, error) {
	var ch bus.Channel
	switch kind {
	case "uid":
		ch = bus.Channel{UID: true, Name: name}
	case "group":
		ch = bus.Channel{Name: name}
	default:
		return History{}, fmt.Errorf("%w: history kind %q: want uid or group", ErrBadRequest, kind)
	}
	if err := validName(name); err != nil {
		return History{}, err
	}
	switch {
	case limit == 0:
		limit = DefaultHistoryLimit
	case limit < 0:
		return History{}, fmt.Errorf("%w: limit %d", ErrBadRequest, limit)
	case limit > MaxHistoryLimit:
		return History{}, fmt.Errorf("%w: limit %d, at most %d", ErrLimit, limit, MaxHistoryLimit)
	}
	if err := c.Available(); err != nil {
		return History{}, err
	}
	ctx, cancel := c.bounded(ctx, c.cfg.RequestTimeout)
	defer cancel()
	info, err := c.bus.HistoryInfo(ctx, c.subj)
	if err != nil {
		return History{}, historyErr(err)
	}
	from, complete := uint64(1), info.FirstSeq <= 1
	if since != "" {
		p, err := bus.ParsePosition(since)
		if err != nil {
			return History{}, fmt.Errorf("%w: since: %w", ErrBadRequest, err)
		}
		if from, complete = info.Resume(p); !complete {
			return History{}, nil
		}
	}
	h := History{Complete: complete}
	err = c.bus.ReadHistory(ctx, c.subj, ch.Stored(c.subj), from, 0, func(m bus.HistoryMsg) bool {
		var cmd bus.Command
		if bus.UnmarshalCommand(m.Data, &cmd) == nil {
			h.Messages = append(h.Messages, HistoryMessage{Pos: bus.Position{Epoch: info.Epoch, Seq: m.Seq}.String(), Body: cmd.Body, Frame: Frame(cmd.Frame)})
		}
		return len(h.Messages) < limit
	})
	if err != nil {
		return History{}, historyErr(err)
	}
	return h, nil
}
