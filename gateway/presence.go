package gateway

import (
	"sync"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// presence collects the clients workers have heard of (connect event sent)
// and those they are done with (close event acknowledged), and reports them
// on bus.Subjects.Presence every sweep. Workers keep the list, so when this
// gateway dies without a word they can still tell its clients' handlers
// (docs/architecture.md, G5). Lock order: presence.mu before registry.mu and
// client.mu; nothing holds client.mu while calling presence.
type presence struct {
	mu             sync.Mutex
	seq            uint64
	added, removed []string
}

func (p *presence) add(id string) {
	p.mu.Lock()
	p.added = append(p.added, id)
	p.mu.Unlock()
}

func (p *presence) remove(id string) {
	p.mu.Lock()
	p.removed = append(p.removed, id)
	p.mu.Unlock()
}

// flush publishes what changed since the last report, if anything did.
func (g *Gateway) flushPresence() {
	g.presence.mu.Lock()
	if len(g.presence.added) == 0 && len(g.presence.removed) == 0 {
		g.presence.mu.Unlock()
		return
	}
	g.presence.seq++
	report := bus.Presence{Gateway: g.cfg.ID, Boot: g.boot.UnixMilli(), Seq: g.presence.seq,
		Added: g.presence.added, Removed: g.presence.removed}
	g.presence.added, g.presence.removed = nil, nil
	g.presence.mu.Unlock()
	data, err := bus.Marshal(&report)
	if err == nil {
		err = g.ctl.Publish(g.subj.Presence(g.cfg.ID), data)
	}
	if err != nil {
		g.warnRateLimited("presence report not published", "err", err)
	}
}

// replyClientList answers OpClientList: the clients workers know of now,
// with the sequence of the last presence report the list includes.
func (g *Gateway) replyClientList(subject string) {
	g.presence.mu.Lock()
	seq := g.presence.seq // pending changes are in the registry already
	var ids []string
	for _, c := range g.reg.registered(nil) {
		c.mu.Lock()
		if c.announced && !c.finished {
			ids = append(ids, c.id)
		}
		c.mu.Unlock()
	}
	g.presence.mu.Unlock()
	for {
		n := min(len(ids), queryPartItems)
		rest := ids[n:]
		g.reply(subject, bus.Reply{Items: ids[:n], Count: int64(n), More: len(rest) > 0, Seq: seq})
		if len(rest) == 0 {
			return
		}
		ids = rest
	}
}
