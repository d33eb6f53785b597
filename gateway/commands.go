package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// onCommand executes a command sent to this gateway's own subject and
// answers it when it came as a request. It never waits on the network: an
// answer that must wait for a subscription is sent by the syncer.
func (g *Gateway) onCommand(m bus.Msg) {
	var cmd bus.Command
	var rep bus.Reply
	var subscribed string
	switch err := decodeCommand(m.Data, &cmd); {
	case err != nil:
		rep = bus.Reply{Code: bus.ReplyBadRequest, Message: err.Error()}
	case cmd.Op == bus.OpClientList:
		if m.Reply != "" {
			g.replyClientList(m.Reply)
		}
		return
	default:
		rep, subscribed = g.execClientCommand(cmd)
	}
	switch {
	case m.Reply == "":
	case subscribed != "" && rep.Code == bus.ReplyOK:
		g.replyWhenSubscribed(subscribed, m.Reply, rep)
	default:
		g.reply(m.Reply, rep)
	}
}

// decodeCommand is bus.UnmarshalCommand, refusing a frame type that is
// none of bus.Frame's constants: it would otherwise go out as if nobody
// had chosen, silently (the codec itself keeps any value, as msgpack does).
func decodeCommand(data []byte, cmd *bus.Command) error {
	if err := bus.UnmarshalCommand(data, cmd); err != nil {
		return err
	}
	if cmd.Frame > bus.FrameBinary {
		return fmt.Errorf("gateway: %w: %d (want 0 default, 1 text, 2 binary)", bus.ErrBadFrame, cmd.Frame)
	}
	return nil
}

func (g *Gateway) reply(subject string, rep bus.Reply) {
	rep.Gateway = g.cfg.ID
	data, err := bus.Marshal(&rep)
	if err == nil {
		err = g.bus.Publish(subject, data)
	}
	if err != nil {
		g.warnRateLimited("reply not sent", "subject", subject, "err", err)
	}
}

func errReply(err error) bus.Reply {
	code := bus.ReplyBadRequest
	switch {
	case errors.Is(err, ErrClientNotFound):
		code = bus.ReplyNotFound
	case errors.Is(err, ErrTooManyGroups):
		code = bus.ReplyLimit
	}
	return bus.Reply{Code: code, Message: err.Error()}
}

// execClientCommand runs a command that names clients of this gateway.
// subscribed is the subject a JoinGroup or BindUID added a member to: its
// answer waits until the subject's subscription is confirmed.
func (g *Gateway) execClientCommand(cmd bus.Command) (rep bus.Reply, subscribed string) {
	if len(cmd.Clients) == 0 {
		return bus.Reply{Code: bus.ReplyBadRequest, Message: "gateway: command names no client"}, ""
	}
	switch cmd.Op {
	case bus.OpBindUID, bus.OpJoinGroup, bus.OpAccept:
		if len(cmd.Name) > MaxNameLen {
			// The API cannot name it, and a longer uid breaks EnvelopeOverhead.
			return bus.Reply{Code: bus.ReplyBadRequest, Message: fmt.Sprintf("gateway: a name of %d bytes, at most %d", len(cmd.Name), MaxNameLen)}, ""
		}
	}
	var found int64
	var last bus.Reply
	for _, id := range cmd.Clients {
		c := g.reg.getLive(id)
		if c == nil {
			continue
		}
		found++
		if last = g.execOne(c, cmd); last.Code != bus.ReplyOK {
			return last, ""
		}
	}
	if found == 0 {
		if cmd.Op == bus.OpIsOnline {
			return bus.Reply{}, ""
		}
		return bus.Reply{Code: bus.ReplyNotFound, Message: fmt.Sprintf("gateway: client %s not found", cmd.Clients[0])}, ""
	}
	last.Count = found
	switch cmd.Op {
	case bus.OpJoinGroup:
		subscribed = g.subj.Group(cmd.Name)
	case bus.OpBindUID:
		subscribed = g.subj.UID(cmd.Name)
	case bus.OpAccept:
		if cmd.Name != "" {
			subscribed = g.subj.UID(cmd.Name)
		}
	}
	return last, subscribed
}

func (g *Gateway) execOne(c *client, cmd bus.Command) bus.Reply {
	switch cmd.Op {
	case bus.OpSend:
		if c.t.queued()+len(cmd.Body)+maxFrameHeader > g.cfg.SendQueueLimit {
			// nbio would refuse it too, but drop the socket without a word.
			c.end(bus.CloseSlowConsumer, nil)
			return bus.Reply{Code: bus.ReplyNotFound, Message: "gateway: client closed: the message does not fit its send queue (slow consumer)"}
		}
		g.stats.pushesOut.Add(1)
		g.stats.bytesOut.Add(uint64(len(cmd.Body)))
		fr := newFraming(cmd.Body, cmd.Frame, g.cfg.WebSocketType)
		if err := c.t.send(cmd.Body, fr.text(c)); err != nil {
			return bus.Reply{Code: bus.ReplyNotFound, Message: "gateway: client is closing: " + err.Error()}
		}
	case bus.OpClose, bus.OpDestroy:
		if cmd.Op == bus.OpDestroy {
			c.end(bus.ClosedByAPI, nil)
		} else {
			c.end(bus.ClosedByAPI, cmd.Body)
		}
	case bus.OpAccept:
		if c.awaiting.Load() {
			// Its token decides: accepting it would let a client that
			// never authenticated receive broadcasts.
			return bus.Reply{Code: bus.ReplyBadRequest, Message: "gateway: client has not sent its token yet"}
		}
		if g.reg.accept(c) {
			stopAuthTimer(c)
		}
		if cmd.Name != "" {
			return g.execOne(c, bus.Command{Op: bus.OpBindUID, Name: cmd.Name})
		}
	case bus.OpReject:
		if g.auth != nil {
			g.auth.failures[causeRejected].Add(1)
		}
		c.end(bus.CloseUnauthorized, cmd.Body)
	case bus.OpIsOnline:
		return bus.Reply{OK: true}
	case bus.OpGetUID:
		if uid := g.reg.uidOf(c); uid != "" {
			return bus.Reply{Items: []string{uid}}
		}
	case bus.OpJoinGroup:
		ch := bus.Channel{Name: cmd.Name}
		p, recover := g.claimPosition(c, ch)
		first, err := g.reg.join(c, cmd.Name, g.cfg.MaxGroupsPerClient)
		if err != nil {
			if recover {
				g.membershipFailed(c, ch)
			}
			return errReply(err)
		}
		if first {
			g.syncGroupSub(cmd.Name)
		}
		if recover {
			g.startRecovery(c, ch, p)
		}
	case bus.OpLeaveGroup:
		if g.reg.leave(c, cmd.Name) {
			g.syncGroupSub(cmd.Name)
		}
	case bus.OpBindUID:
		ch := bus.Channel{UID: true, Name: cmd.Name}
		p, recover := g.claimPosition(c, ch)
		first, lost, err := g.reg.bind(c, cmd.Name)
		if err != nil {
			if recover {
				g.membershipFailed(c, ch)
			}
			return errReply(err)
		}
		if lost != "" {
			g.syncUIDSub(lost)
		}
		if first {
			g.syncUIDSub(cmd.Name)
		}
		if recover {
			g.startRecovery(c, ch, p)
		}
	case bus.OpUnbindUID:
		if g.reg.unbind(c, cmd.Name) {
			g.syncUIDSub(cmd.Name)
		}
	case bus.OpGetSession:
		c.mu.Lock()
		s := c.session
		c.mu.Unlock()
		return bus.Reply{Body: s}
	case bus.OpSetSession:
		if _, err := bus.DecodeSession(cmd.Body); err != nil {
			return errReply(err)
		}
		if len(cmd.Body) > MaxSessionBytes {
			return bus.Reply{Code: bus.ReplyLimit, Message: fmt.Sprintf("gateway: session of %d bytes, limit %d", len(cmd.Body), MaxSessionBytes)}
		}
		c.mu.Lock()
		c.session = cmd.Body
		c.mu.Unlock()
	case bus.OpUpdateSession:
		return g.updateSession(c, cmd.Body)
	case bus.OpSetFrame:
		if cmd.Frame > bus.FrameBinary {
			return bus.Reply{Code: bus.ReplyBadRequest, Message: fmt.Sprintf("gateway: unknown frame type %d", cmd.Frame)}
		}
		c.frame.Store(uint32(cmd.Frame))
	default:
		return bus.Reply{Code: bus.ReplyBadRequest, Message: fmt.Sprintf("gateway: unknown op %d", cmd.Op)}
	}
	return bus.Reply{}
}

// updateSession merges upd into c's session: keys in upd replace the old
// ones, and keys whose value is nil are deleted.
func (g *Gateway) updateSession(c *client, upd []byte) bus.Reply {
	changes, err := bus.DecodeSession(upd)
	if err != nil {
		return errReply(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := bus.DecodeSession(c.session)
	if err != nil {
		return errReply(err)
	}
	for k, v := range changes {
		if v == nil {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	b, err := bus.EncodeSession(s)
	if err != nil {
		return errReply(err)
	}
	if len(b) > MaxSessionBytes {
		return bus.Reply{Code: bus.ReplyLimit, Message: fmt.Sprintf("gateway: session of %d bytes, limit %d", len(b), MaxSessionBytes)}
	}
	c.session = b
	return bus.Reply{}
}

// onMemberPush handles a push to a group or uid subject.
func (g *Gateway) onMemberPush(m bus.Msg, name string, members func(string, []*client) []*client) {
	var cmd bus.Command
	if err := decodeCommand(m.Data, &cmd); err != nil {
		g.warnRateLimited("bad push", "subject", m.Subject, "err", err)
		return
	}
	switch cmd.Op {
	case bus.OpSend:
		g.fanOut(members(name, nil), cmd)
	case bus.OpUngroup:
		if g.reg.ungroup(name) {
			g.syncGroupSub(name)
		}
	default:
		g.warnRateLimited("unknown push op", "subject", m.Subject, "op", cmd.Op)
	}
}

// onBroadcast handles a push to every client.
func (g *Gateway) onBroadcast(m bus.Msg) {
	var cmd bus.Command
	if err := decodeCommand(m.Data, &cmd); err != nil || cmd.Op != bus.OpSend {
		g.warnRateLimited("bad broadcast", "subject", m.Subject, "err", err)
		return
	}
	g.fanOut(g.reg.acceptedClients(nil), cmd)
}

// Query answers are cut into parts of at most queryPartItems ids or
// queryPartBytes of sessions, far below NATS's 1 MiB default payload, so
// 100k clients never make one giant message.
const (
	queryPartItems = 4096
	queryPartBytes = 256 << 10
)

// onQuery answers a scatter-gather query about this gateway's clients.
func (g *Gateway) onQuery(m bus.Msg) {
	if m.Reply == "" {
		return
	}
	op := m.Subject[len(g.subj.Query("")):]
	var cmd bus.Command
	if len(m.Data) > 0 {
		if err := bus.UnmarshalCommand(m.Data, &cmd); err != nil {
			g.reply(m.Reply, bus.Reply{Code: bus.ReplyBadRequest, Message: err.Error()})
			return
		}
	}
	switch op {
	case bus.QueryPing:
		g.reply(m.Reply, bus.Reply{Count: int64(time.Since(g.boot) / time.Millisecond)})
	case bus.QueryInfo:
		g.replyInfo(m.Reply)
	case bus.QueryClientCount:
		live, _, _, _ := g.reg.counts()
		g.reply(m.Reply, bus.Reply{Count: int64(live)})
	case bus.QueryGroupCount:
		g.reply(m.Reply, bus.Reply{Count: int64(g.reg.groupCount(cmd.Name))})
	case bus.QueryClientList:
		g.replyItems(m.Reply, clientIDs(g.reg.liveClients(nil)))
	case bus.QueryUIDClients:
		g.replyItems(m.Reply, clientIDs(g.reg.uidMembers(cmd.Name, nil)))
	case bus.QueryGroupClients:
		g.replyItems(m.Reply, clientIDs(g.reg.groupMembers(cmd.Name, nil)))
	case bus.QueryUIDList:
		g.replyItems(m.Reply, g.reg.uidList())
	case bus.QueryGroupUIDs:
		g.replyItems(m.Reply, g.reg.groupUIDs(cmd.Name))
	case bus.QueryGroupList:
		g.replyItems(m.Reply, g.reg.groupList())
	case bus.QueryClientSessions:
		g.replySessions(m.Reply, g.reg.liveClients(nil))
	case bus.QueryGroupSessions:
		g.replySessions(m.Reply, g.reg.groupMembers(cmd.Name, nil))
	default:
		g.reply(m.Reply, bus.Reply{Code: bus.ReplyBadRequest, Message: fmt.Sprintf("gateway: unknown query %q", op)})
	}
}

func clientIDs(cs []*client) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id
	}
	return ids
}

// replyItems answers with items, in parts.
func (g *Gateway) replyItems(subject string, items []string) {
	for {
		n := min(len(items), queryPartItems)
		rest := items[n:]
		g.reply(subject, bus.Reply{Items: items[:n], Count: int64(n), More: len(rest) > 0})
		if len(rest) == 0 {
			return
		}
		items = rest
	}
}

// replySessions answers with the sessions of cs, in parts.
func (g *Gateway) replySessions(subject string, cs []*client) {
	part, size := map[string][]byte{}, 0
	for i, c := range cs {
		c.mu.Lock()
		s := c.session
		c.mu.Unlock()
		part[c.id] = s
		size += len(s) + len(c.id) + 8
		if last := i == len(cs)-1; last || size >= queryPartBytes || len(part) >= queryPartItems {
			g.reply(subject, bus.Reply{Sessions: part, Count: int64(len(part)), More: !last})
			part, size = map[string][]byte{}, 0
		}
	}
	if len(cs) == 0 {
		g.reply(subject, bus.Reply{})
	}
}

func (g *Gateway) replyInfo(subject string) {
	live, _, groups, uids := g.reg.counts()
	info := bus.GatewayInfo{
		ID: g.cfg.ID, Boot: g.boot.UnixMilli(), Addrs: g.AdvertisedAddrs(),
		Connections: int64(live), Groups: int64(groups), UIDs: int64(uids),
		MessagesIn: g.stats.messagesIn.Load(), BytesIn: g.stats.bytesIn.Load(),
		PushesOut: g.stats.pushesOut.Load(), BytesOut: g.stats.bytesOut.Load(),
	}
	body, err := bus.Marshal(&info)
	if err != nil {
		g.reply(subject, bus.Reply{Code: bus.ReplyBadRequest, Message: err.Error()})
		return
	}
	g.reply(subject, bus.Reply{Body: body})
}
