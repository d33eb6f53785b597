package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Gather sends one request to every listener of subject (scatter) and hands
// each reply to collect until collect returns true or ctx ends (gather).
// It returns nil when collect finished, ErrNoResponders when nobody listens,
// and an error wrapping ErrTimeout when ctx ended first: the caller then
// knows from what it collected who did not answer.
func (c *Conn) Gather(ctx context.Context, subject string, data []byte, collect func(Msg) bool) error {
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return wrap("gather", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(PendingMsgs, PendingBytes); err != nil {
		return wrap("gather", subject, err)
	}
	if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
		return wrap("gather", subject, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout) {
				return fmt.Errorf("bus: gather %s: %w: %w", subject, ErrTimeout, err)
			}
			return wrap("gather", subject, err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return wrap("gather", subject, ErrNoResponders)
		}
		if collect(Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data}) {
			return nil
		}
	}
}
