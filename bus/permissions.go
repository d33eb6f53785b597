package bus

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

// Permissions returns the subjects a role needs to publish and subscribe
// to under the subject prefix of s: the least a NATS server should grant
// it. A worker, for one, cannot publish client events or gateway
// heartbeats, so it cannot impersonate a gateway to other workers or API
// clients. Replies travel on "_INBOX.>" subjects.
func (s Subjects) Permissions(r Role) (publish, subscribe []string) {
	p := s.p()
	pushes := []string{p + ".*.cmd", p + ".grp.>", p + ".uid.>", p + ".all", p + ".q.>", p + ".wk.info"}
	switch r {
	case RoleGateway:
		return []string{s.Events(), s.Heartbeat(), p + ".pr.*", "_INBOX.>"},
			[]string{p + ".*.cmd", p + ".grp.>", p + ".uid.>", s.All(), p + ".q.>", "_INBOX.>"}
	case RoleWorker:
		return append(pushes, s.LostEvents(), s.WorkerBeat(), "_INBOX.>"),
			[]string{s.Events(), s.LostEvents(), s.Heartbeat(), s.AllPresence(), s.WorkerInfo(), s.WorkerBeat(), "_INBOX.>"}
	case RoleAPI:
		return pushes, []string{s.Heartbeat(), "_INBOX.>"}
	}
	return nil, nil
}
