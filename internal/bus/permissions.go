package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Role is a kind of gatewayworker process, for NATS permissions.
type Role string

// Roles.
const (
	RoleGateway Role = "gateway"
	RoleWorker  Role = "worker"
	// RoleAPI is a program that only pushes and queries (an HTTP API, a
	// cron job, `gatewayworker status`).
	RoleAPI Role = "api"
)

// ErrPermission means the NATS server refused a subscription for lack of
// permission.
var ErrPermission = errors.New("bus: permission denied by the NATS server")

// Inbox is the reply-subject prefix of role r's connections (for
// [Config].InboxPrefix): "_INBOX.gw.api" for prefix gw. A role subscribes
// only under its own, so an API client cannot read the replies that carry
// sessions to workers, nor the acknowledgements of gateways. The subject
// prefix is one encoded token here, so tenants never share inboxes.
func (s Subjects) Inbox(r Role) string { return "_INBOX." + EncodeToken(s.p()) + "." + string(r) }

// Permissions returns the subjects a role needs to publish and subscribe
// to under the subject prefix of s: the least a NATS server should grant
// it, for a connection whose [Config].InboxPrefix is [Subjects.Inbox] of
// the role. A worker, for one, cannot publish client events or gateway
// heartbeats, so it cannot impersonate a gateway to other workers or API
// clients; an API client answers nothing and reads only its own replies.
// Every role may publish to any "_INBOX.>" subject but the API role, which
// never replies.
func (s Subjects) Permissions(r Role) (publish, subscribe []string) {
	p := s.p()
	pushes := []string{p + ".*.cmd", p + ".grp.>", p + ".uid.>", p + ".all", p + ".q.>", s.WorkerInfo()}
	own := s.Inbox(r) + ".>"
	// History (history.go): pushers store recoverable pushes and read the
	// stream; gateways also create or update it.
	stream := s.HistoryStream()
	read := []string{"$JS.API.STREAM.INFO." + stream, "$JS.API.DIRECT.GET." + stream}
	pushes = append(append(pushes, p+".h.>"), read...)
	switch r {
	case RoleGateway:
		return append([]string{s.Events(), s.AllWorkerEvents(), s.Heartbeat(), s.AllPresence(), s.GatewayClaim("*"), "_INBOX.>",
				"$JS.API.STREAM.CREATE." + stream, "$JS.API.STREAM.UPDATE." + stream}, read...),
			[]string{p + ".*.cmd", p + ".grp.>", p + ".uid.>", p + ".hr.>", s.All(), p + ".q.>", s.Heartbeat(), s.GatewayClaim("*"), own}
	case RoleWorker:
		return append(pushes, s.LostEvents(), s.WorkerBeat(), "_INBOX.>"),
			[]string{s.Events(), s.AllWorkerEvents(), s.LostEvents(), s.Heartbeat(), s.AllPresence(), s.WorkerInfo(), s.WorkerBeat(), own}
	case RoleAPI:
		return pushes, []string{s.Heartbeat(), own}
	}
	return nil, nil
}

// CheckSubscriptions waits until the server has processed everything sent
// so far, then returns an error wrapping [ErrPermission] if it refused one
// of subs. NATS refuses a subscription asynchronously (an -ERR line that
// nats.go keeps as the connection's last error, read before the flush's
// answer), so a refused subscription otherwise looks like a silent one.
func (c *Conn) CheckSubscriptions(ctx context.Context, subs ...*Subscription) error {
	if err := c.Flush(ctx); err != nil {
		return err
	}
	last := c.nc.LastError()
	if !errors.Is(last, nats.ErrPermissionViolation) {
		return nil
	}
	for _, s := range subs {
		if strings.Contains(last.Error(), fmt.Sprintf("Subscription to %q", s.sub.Subject)) {
			return fmt.Errorf("%w: may not subscribe to %s (grant it; see bus.Subjects.Permissions)", ErrPermission, s.sub.Subject)
		}
	}
	return nil
}
