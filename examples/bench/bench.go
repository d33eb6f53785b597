package bench

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/gatewayworker/gatewayworker/pkg/api"
	"github.com/gatewayworker/gatewayworker/worker"
)

// Replies to a join.
const (
	joinOK     = "ok"
	joinFailed = "err:"
)

// Handlers returns the worker handlers of the bench protocol. Only
// OnMessage is set: the protocol has no greeting and keeps no state, so
// the handlers are safe for any number of workers and clients.
func Handlers() worker.Handlers {
	return worker.Handlers{OnMessage: onMessage}
}

// onMessage runs one bench frame. A failed send is returned, so the worker
// logs it with the client id; a failed join is told to the client instead.
func onMessage(ctx context.Context, c *worker.Client, e worker.MessageEvent) error {
	op, group, payload := parse(e.Data)
	switch op {
	case opAll:
		return retryUnavailable(ctx, func() error { return c.SendToAll(ctx, payload) })
	case opJoin:
		if err := c.JoinGroup(ctx, c.ID(), string(group)); err != nil {
			return c.SendToCurrentClient(ctx, []byte(joinFailed+err.Error()))
		}
		return c.SendToCurrentClient(ctx, []byte(joinOK))
	case opGroup:
		return retryUnavailable(ctx, func() error { return c.SendToGroup(ctx, string(group), payload) })
	}
	return retryUnavailable(ctx, func() error { return c.SendToCurrentClient(ctx, payload) })
}

// Retries of a send refused while NATS reconnects.
const (
	retryEvery = 20 * time.Millisecond
	retryFor   = time.Second
)

// retryUnavailable runs send, and again every retryEvery for up to retryFor
// while it fails with api.ErrNATSUnavailable: NATS was reconnecting, to
// another node after a node's loss, and nothing was sent, so trying again
// cannot duplicate. Without it a handler running at that moment lost its
// push (a recoverable group push in the compose test).
func retryUnavailable(ctx context.Context, send func() error) error {
	err := send()
	if !errors.Is(err, api.ErrNATSUnavailable) {
		return err
	}
	for deadline := time.Now().Add(retryFor); errors.Is(err, api.ErrNATSUnavailable) && time.Now().Before(deadline); err = send() {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryEvery):
		}
	}
	return err
}

// op is what a bench frame asks for.
type op uint8

const (
	opEcho  op = iota // anything that is not one of the below
	opAll             // a:<p>
	opJoin            // j:<g>
	opGroup           // g:<g>:<p>
)

// parse splits a frame without allocating. group and payload alias data.
// For opEcho the payload is the whole frame; for opJoin the group is
// everything after "j:" (it may be empty: JoinGroup then refuses it). A
// "g:" frame with no second colon is not a group send and is echoed.
func parse(data []byte) (o op, group, payload []byte) {
	if len(data) < 2 || data[1] != ':' {
		return opEcho, nil, data
	}
	rest := data[2:]
	switch data[0] {
	case 'a':
		return opAll, nil, rest
	case 'j':
		return opJoin, rest, nil
	case 'g':
		if i := bytes.IndexByte(rest, ':'); i >= 0 {
			return opGroup, rest[:i], rest[i+1:]
		}
	}
	return opEcho, nil, data
}
