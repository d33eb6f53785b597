package bus

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the first subject token when Config.Prefix is empty.
const DefaultPrefix = "gw"

// WorkerQueue is the queue group workers share on the events subject.
const WorkerQueue = "workers"

// ErrInvalidToken means a string is not a token that [EncodeToken] produced.
var ErrInvalidToken = errors.New("bus: invalid subject token")

// Subjects builds the subject names of one deployment. The zero value uses
// [DefaultPrefix].
type Subjects struct {
	prefix string
}

// NewSubjects returns the subjects under prefix ("" means [DefaultPrefix]).
// The prefix may hold several tokens ("tenant1.gw") so tenants can share a
// NATS account; it may not hold wildcards or spaces.
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		return Subjects{prefix: DefaultPrefix}, nil
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return Subjects{}, fmt.Errorf("bus: subject prefix %q: tokens must be non-empty, without wildcards or spaces", prefix)
		}
	}
	return Subjects{prefix: prefix}, nil
}

func (s Subjects) p() string {
	if s.prefix == "" {
		return DefaultPrefix
	}
	return s.prefix
}

// Events is where gateways send client events to the [WorkerQueue] group.
func (s Subjects) Events() string { return s.p() + ".ev" }

// Gateway is the command subject of one gateway.
func (s Subjects) Gateway(id string) string { return s.p() + "." + id + ".cmd" }

// Group is listened to by every gateway with a member of group.
func (s Subjects) Group(group string) string { return s.p() + ".grp." + EncodeToken(group) }

// UID is listened to by every gateway with a client bound to uid.
func (s Subjects) UID(uid string) string { return s.p() + ".uid." + EncodeToken(uid) }

// All is listened to by every gateway.
func (s Subjects) All() string { return s.p() + ".all" }

// Query is the scatter-gather subject of one query, answered by every gateway.
func (s Subjects) Query(op string) string { return s.p() + ".q." + op }

// Heartbeat carries gateway presence beats (see [Beat]).
func (s Subjects) Heartbeat() string { return s.p() + ".hb" }

// Member is the group or uid that subject, a [Subjects.Group] or
// [Subjects.UID] subject, is for; uid tells which. Any other subject is
// an [ErrInvalidToken].
func (s Subjects) Member(subject string) (name string, uid bool, err error) {
	p := s.p()
	if len(subject) > len(p)+5 && subject[:len(p)] == p && subject[len(p)] == '.' {
		kind, tok := subject[len(p)+1:len(p)+5], subject[len(p)+5:]
		if kind == "grp." || kind == "uid." {
			name, err = DecodeToken(tok)
			return name, kind == "uid.", err
		}
	}
	return "", false, fmt.Errorf("%w: %q is not a group or uid subject", ErrInvalidToken, subject)
}

// tokenPrefix marks an encoded token. It is outside the plain alphabet, so a
// plain token and an encoded one never collide.
const tokenPrefix = '~'

// EncodeToken maps any string to one NATS subject token, injectively: strings
// of 1 to 64 characters from [A-Za-z0-9_-] stay as they are (readable in
// monitoring); every other string becomes "~" + unpadded base64url of its
// bytes. So "a.b", "*", ">", "" and "héllo" can never match other subjects.
func EncodeToken(s string) string {
	if plainToken(s) {
		return s
	}
	return string(tokenPrefix) + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// DecodeToken reverses [EncodeToken].
func DecodeToken(tok string) (string, error) {
	if tok != "" && tok[0] == tokenPrefix {
		b, err := base64.RawURLEncoding.DecodeString(tok[1:])
		if err != nil || EncodeToken(string(b)) != tok {
			return "", fmt.Errorf("%w: %q", ErrInvalidToken, tok)
		}
		return string(b), nil
	}
	if !plainToken(tok) {
		return "", fmt.Errorf("%w: %q", ErrInvalidToken, tok)
	}
	return tok, nil
}

func plainToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Query operations: the last token of a [Subjects.Query] subject. Every
// gateway answers each with one [Reply], or with several when the answer is
// large: all but the last have Reply.More set. Command.Name names the group
// or uid of the queries that take one.
const (
	// QueryPing: Count is the gateway's uptime in milliseconds.
	QueryPing = "ping"
	// QueryInfo: Body is the gateway's [GatewayInfo].
	QueryInfo = "info"
	// QueryClientCount: Count is the number of connected clients.
	QueryClientCount = "client_count"
	// QueryClientList: Items are the connected clients' ids.
	QueryClientList = "client_list"
	// QueryClientSessions: Sessions holds every connected client's session.
	QueryClientSessions = "client_sessions"
	// QueryUIDClients: Items are the ids of the clients bound to uid Name.
	QueryUIDClients = "uid_clients"
	// QueryUIDList: Items are the uids with a client here.
	QueryUIDList = "uid_list"
	// QueryGroupCount: Count is the number of members of group Name here.
	QueryGroupCount = "group_count"
	// QueryGroupClients: Items are the ids of group Name's members.
	QueryGroupClients = "group_clients"
	// QueryGroupSessions: Sessions holds the sessions of group Name's members.
	QueryGroupSessions = "group_sessions"
	// QueryGroupUIDs: Items are the uids bound to members of group Name.
	QueryGroupUIDs = "group_uids"
	// QueryGroupList: Items are the groups with a member here.
	QueryGroupList = "group_list"
)

// WorkerInfo is the subject every worker answers status requests on, with
// a [WorkerInfo] in Reply.Body.
func (s Subjects) WorkerInfo() string { return s.p() + ".wk.info" }

// Presence carries a gateway's connects and closes ([Presence]), so that
// workers know the clients of a gateway that dies without a word.
func (s Subjects) Presence(gateway string) string { return s.p() + ".pr." + gateway }

// AllPresence matches every gateway's [Subjects.Presence].
func (s Subjects) AllPresence() string { return s.p() + ".pr.*" }

// WorkerEvents is where gateways send the event batches of the clients
// that stick to one worker process (Ack.Worker): only that process
// subscribes, without a queue group.
func (s Subjects) WorkerEvents(worker string) string { return s.p() + ".ev." + worker }

// AllWorkerEvents matches every [Subjects.WorkerEvents], for permissions.
func (s Subjects) AllWorkerEvents() string { return s.p() + ".ev.*" }

// ValidWorkerID reports whether id may name a sticky worker: one plain
// subject token of 1 to 64 characters of [A-Za-z0-9_-], never a wildcard.
func ValidWorkerID(id string) bool { return plainToken(id) }

// WorkerBeat carries worker heartbeats ([WorkerBeat]).
func (s Subjects) WorkerBeat() string { return s.p() + ".wk.hb" }

// LostEvents is where workers send, to the [WorkerQueue] group, the close
// events of the clients of a gateway that died.
func (s Subjects) LostEvents() string { return s.p() + ".evl" }

// GatewayClaim is answered by the live gateway with that id, so that a
// gateway starting with an id in use learns of it and refuses to start.
func (s Subjects) GatewayClaim(id string) string { return s.p() + ".id." + id }
