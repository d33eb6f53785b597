package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayworker/gatewayworker/internal/bus"
)

// History and recovery (docs/protocol.md, "History"; docs/architecture.md).
//
// With history on, the gateway subscribes, beside a group's or uid's plain
// subject, to its live subject, where the history stream republishes the
// recoverable pushes it stored, each with its sequence and the previous
// sequence of its subject. Per live subscription (liveSub) the gateway
// delivers those in sequence order, once: a message whose previous
// sequence is not the last one delivered reveals a gap (a NATS reconnect,
// a stream leader that died before republishing), and the subject's
// pushes wait while the gap is read from the stream.
//
// A client that opted in (the recover query parameter) carries positions
// (client.rec). When it becomes a member of a channel it has a position
// for, live pushes of that channel are kept aside for it while the stream
// is read from the position on; it gets those, then the kept ones newer
// than the last one read, then a recovered frame, and only then live
// pushes again: in order, once.

// Bounds of history reads.
const (
	// maxConcurrentReads bounds the stream reads (recoveries, gap repairs)
	// a gateway runs at once; more wait for a slot.
	maxConcurrentReads = 16
	// maxKeptBytes bounds the live pushes kept aside for one client's
	// channel, or one subject, while the stream is read; past it they are
	// dropped and read from the stream again.
	maxKeptBytes = 1 << 20
	// recoveryStall closes, as a slow consumer, a recovering client that
	// took nothing of its replay for this long.
	recoveryStall = 10 * time.Second
	// historyRefresh is how often the gateway reads the stream's epoch
	// (and recreates a deleted stream).
	historyRefresh = 5 * time.Second
	// repairAttempts bounds the reads of one gap before the gateway gives
	// up on it (counted in Stats.HistoryGapsLost) and delivers what came.
	repairAttempts = 10
)

// history is the gateway's side of the history stream.
type history struct {
	// on is set by Run before the listeners start, when the stream exists.
	on    bool
	epoch atomic.Pointer[string]
	reads chan struct{}
	// wg counts the reading goroutines, waited for when Run ends.
	wg sync.WaitGroup
}

// startHistory creates or updates the stream when Config.History asks for
// history. Without JetStream it warns once and the gateway runs without;
// another failure (a cluster still electing its JetStream leader) is
// retried for 30 s, then Run fails.
func (g *Gateway) startHistory(ctx context.Context) error {
	if g.cfg.History == nil {
		return nil
	}
	g.hist.reads = make(chan struct{}, maxConcurrentReads)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := g.bus.EnsureHistory(cctx, g.subj, *g.cfg.History)
		cancel()
		switch {
		case err == nil:
			g.hist.on = true
			g.hist.epoch.Store(&info.Epoch)
			g.log.Info("history on", "stream", g.subj.HistoryStream(), "epoch", info.Epoch)
			return nil
		case errors.Is(err, bus.ErrNoHistory):
			g.log.Warn("history off: the NATS server has no JetStream; recoverable pushes do not reach this gateway's clients and reconnecting clients are told recovery is incomplete", "err", err)
			return nil
		case time.Now().After(deadline) || ctx.Err() != nil:
			return err
		}
		g.log.Warn("history stream not ready; retrying", "err", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// refreshHistory reads the stream's epoch, recreating the stream if it was
// deleted (its epoch changes: clients' positions then recover incompletely).
func (g *Gateway) refreshHistory(time.Time) {
	ctx, cancel := context.WithTimeout(g.life, 2*time.Second)
	defer cancel()
	info, err := g.bus.HistoryInfo(ctx, g.subj)
	if errors.Is(err, bus.ErrNoHistory) {
		info, err = g.bus.EnsureHistory(ctx, g.subj, *g.cfg.History)
	}
	if err != nil {
		g.warnRateLimited("history stream not readable", "err", err)
		return
	}
	g.noteEpoch(info.Epoch)
}

// noteEpoch keeps the stream's epoch as last read.
func (g *Gateway) noteEpoch(epoch string) {
	if old := g.hist.epoch.Load(); old == nil || *old != epoch {
		g.hist.epoch.Store(&epoch)
	}
}

// takeRead waits for a read slot; false when the gateway stops first.
func (g *Gateway) takeRead() bool {
	select {
	case g.hist.reads <- struct{}{}:
		return true
	case <-g.life.Done():
		return false
	}
}

func (g *Gateway) endRead() { <-g.hist.reads }

// liveSub is the state of one live subscription: the last sequence
// delivered, and while a gap is read, the pushes that wait.
type liveSub struct {
	ch        bus.Channel
	mu        sync.Mutex
	last      uint64
	repairing bool
	kept      keptPushes
}

// keptPushes are live pushes kept aside while the stream is read, at most
// maxKeptBytes; past that they are dropped and overflow is set, so the
// reader reads the stream again instead.
type keptPushes struct {
	msgs     []bus.HistoryMsg
	bytes    int
	overflow bool
}

func (k *keptPushes) add(m bus.HistoryMsg) {
	if k.overflow {
		return
	}
	if k.bytes+len(m.Data) > maxKeptBytes {
		k.msgs, k.bytes, k.overflow = nil, 0, true
		return
	}
	k.msgs = append(k.msgs, m)
	k.bytes += len(m.Data)
}

func (k *keptPushes) take() (msgs []bus.HistoryMsg, overflow bool) {
	msgs, overflow = k.msgs, k.overflow
	*k = keptPushes{}
	return msgs, overflow
}

// onLive handles a push the stream republished on ls's subject.
func (g *Gateway) onLive(ls *liveSub, m bus.HistoryMsg) {
	ls.mu.Lock()
	switch {
	case ls.repairing:
		ls.kept.add(m)
		ls.mu.Unlock()
		return
	case m.Seq <= ls.last:
		ls.mu.Unlock()
		return // delivered already (by a repair)
	case ls.last != 0 && m.Prev > ls.last:
		ls.repairing = true
		ls.kept.add(m)
		ls.mu.Unlock()
		if g.life.Err() != nil {
			return // stopping: no reader may start
		}
		g.hist.wg.Add(1)
		go g.repairGap(ls)
		return
	}
	ls.last = m.Seq
	ls.mu.Unlock()
	g.deliverLive(ls.ch, m)
}

// repairGap reads from the stream what ls's subject missed, delivers it,
// then the pushes kept meanwhile, and lets live pushes through again.
func (g *Gateway) repairGap(ls *liveSub) {
	defer g.hist.wg.Done()
	if !g.takeRead() {
		return
	}
	defer g.endRead()
	g.stats.historyGaps.Add(1)
	ls.mu.Lock()
	last := ls.last
	ls.mu.Unlock()
	read := true
	for {
		if read {
			var err error
			for attempt := 0; attempt < repairAttempts; attempt++ {
				err = g.bus.ReadHistory(g.life, g.subj, ls.ch.Stored(g.subj), last+1, 0, func(m bus.HistoryMsg) bool {
					g.deliverLive(ls.ch, m)
					last = m.Seq
					return true
				})
				if err == nil || g.life.Err() != nil {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				g.stats.historyGapsLost.Add(1)
				g.warnRateLimited("history gap not repaired: pushes lost for this gateway's clients", "channel", ls.ch.String(), "err", err)
			}
		}
		ls.mu.Lock()
		ls.last = max(ls.last, last)
		msgs, overflow := ls.kept.take()
		if len(msgs) == 0 && !overflow {
			ls.repairing = false
			ls.mu.Unlock()
			return
		}
		ls.mu.Unlock()
		read = overflow
		for _, m := range msgs {
			if m.Seq <= last {
				continue
			}
			if m.Prev > last {
				read = true
				break
			}
			g.deliverLive(ls.ch, m)
			last = m.Seq
		}
	}
}

// deliverLive sends a recoverable push of ch to the members here, each
// opted-in one with its pos frame first, but to those recovering ch (who
// keep it) and those who got it in their replay.
func (g *Gateway) deliverLive(ch bus.Channel, m bus.HistoryMsg) {
	var cmd bus.Command
	if err := decodeCommand(m.Data, &cmd); err != nil || cmd.Op != bus.OpSend {
		g.warnRateLimited("bad recoverable push", "channel", ch.String(), "err", err)
		return
	}
	var targets []*client
	if ch.UID {
		targets = g.reg.uidMembers(ch.Name, nil)
	} else {
		targets = g.reg.groupMembers(ch.Name, nil)
	}
	n := 0
	for _, c := range targets {
		if c.rec == nil || c.rec.admitLive(ch, m) {
			targets[n] = c
			n++
		}
	}
	var pos []byte
	if e := g.hist.epoch.Load(); e != nil {
		pos = posFrame(ch, bus.Position{Epoch: *e, Seq: m.Seq})
	}
	g.fanOutWith(targets[:n], cmd, pos)
}

// posFrame is {"gw":"pos","ch":<ch>,"pos":"<epoch>:<seq>"}.
func posFrame(ch bus.Channel, p bus.Position) []byte {
	name, _ := json.Marshal(ch.String()) // a string always encodes
	b := make([]byte, 0, 32+len(name))
	b = append(b, `{"gw":"pos","ch":`...)
	b = append(b, name...)
	b = append(b, `,"pos":`...)
	b = p.AppendJSON(b)
	return append(b, '}')
}

// recoveredFrame is {"gw":"recovered","ch":<ch>,"complete":<bool>,"pos":...}
// (no pos when nothing is known of the stream).
func recoveredFrame(ch bus.Channel, complete bool, p *bus.Position) []byte {
	name, _ := json.Marshal(ch.String())
	b := append([]byte(`{"gw":"recovered","ch":`), name...)
	if complete {
		b = append(b, `,"complete":true`...)
	} else {
		b = append(b, `,"complete":false`...)
	}
	if p != nil {
		b = append(b, `,"pos":`...)
		b = p.AppendJSON(b)
	}
	return append(b, '}')
}

// recovery is the state of a client that opted in (client.rec).
type recovery struct {
	mu sync.Mutex
	// positions are those the client gave and no membership used yet.
	positions map[bus.Channel]bus.Position
	// chans are the channels being recovered, or recovered whose live
	// pushes may still repeat what the replay sent.
	chans map[bus.Channel]*chanRecovery
}

type chanRecovery struct {
	recovering bool
	kept       keptPushes
	// last is the last sequence sent; a live push up to it is a duplicate.
	last uint64
}

// admitLive reports whether live push m of ch goes to the client now: not
// while ch is recovered (it is kept) nor when the replay sent it.
func (r *recovery) admitLive(ch bus.Channel, m bus.HistoryMsg) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.chans[ch]
	switch {
	case st == nil:
		return true
	case st.recovering:
		st.kept.add(m)
		return false
	case m.Seq <= st.last:
		return false
	}
	// Live pushes of a subject come in order: none after this one repeats.
	delete(r.chans, ch)
	return true
}

// claimPosition is called before c becomes a member of ch: when c has a
// position for ch, it marks ch recovering (live pushes are kept from now
// on) and returns the position.
func (g *Gateway) claimPosition(c *client, ch bus.Channel) (bus.Position, bool) {
	r := c.rec
	if r == nil {
		return bus.Position{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.positions[ch]
	if !ok {
		return bus.Position{}, false
	}
	delete(r.positions, ch)
	if r.chans == nil {
		r.chans = map[bus.Channel]*chanRecovery{}
	}
	r.chans[ch] = &chanRecovery{recovering: true}
	return p, true
}

// membershipFailed undoes claimPosition when c could not become a member.
func (g *Gateway) membershipFailed(c *client, ch bus.Channel) {
	c.rec.mu.Lock()
	delete(c.rec.chans, ch)
	c.rec.mu.Unlock()
}

// startRecovery recovers ch for c from p once the subscriptions are
// confirmed (so that no live push falls between the read and them).
func (g *Gateway) startRecovery(c *client, ch bus.Channel, p bus.Position) {
	g.afterSubscribed(func() {
		g.hist.wg.Add(1)
		go g.recoverChannel(c, ch, p)
	})
}

// recoverChannel replays to c what ch's stream holds after p, then what
// was kept meanwhile, then says recovered; or says recovery is incomplete
// and lets the live pushes newer than the stream's last through.
func (g *Gateway) recoverChannel(c *client, ch bus.Channel, p bus.Position) {
	defer g.hist.wg.Done()
	if !g.hist.on {
		g.finishRecovery(&replayer{g: g, c: c, ch: ch}, 0, recoveredFrame(ch, false, nil))
		return
	}
	if !g.takeRead() {
		return
	}
	defer g.endRead()
	ctx, cancel := context.WithCancel(g.life)
	defer cancel()
	info, err := g.bus.HistoryInfo(ctx, g.subj)
	if err != nil {
		g.warnRateLimited("recovery: history not readable", "err", err)
		g.finishRecovery(&replayer{g: g, c: c, ch: ch}, 0, recoveredFrame(ch, false, nil))
		return
	}
	g.noteEpoch(info.Epoch)
	r := &replayer{g: g, c: c, ch: ch, epoch: info.Epoch}
	from, ok := info.Resume(p)
	if !ok {
		g.stats.recoveriesIncomplete.Add(1)
		last := info.Last()
		g.finishRecovery(r, last.Seq, recoveredFrame(ch, false, &last))
		return
	}
	last := from - 1
	err = r.read(ctx, &last)
	if !r.flush() || c.closing() {
		return
	}
	if err != nil {
		g.stats.recoveriesIncomplete.Add(1)
		g.warnRateLimited("recovery: history read failed", "channel", ch.String(), "err", err)
		at := bus.Position{Epoch: info.Epoch, Seq: last}
		g.finishRecovery(r, last, recoveredFrame(ch, false, &at))
		return
	}
	g.stats.recoveries.Add(1)
	g.finishRecovery(r, last, nil)
}

// finishRecovery sends r's client the live pushes of its channel kept
// during its recovery that are newer than last, then the recovered frame
// done (nil: a complete one at the last sequence sent), and lets live
// pushes through again. An incomplete frame goes first: what follows it is
// newer than its pos. The recovered frame and the end of recovering are
// one step under the client's recovery lock, so no live push comes first.
func (g *Gateway) finishRecovery(r *replayer, last uint64, done []byte) {
	c, ch := r.c, r.ch
	if done != nil {
		_ = c.t.send(done, true)
	}
	rec := c.rec
	for {
		if !r.flush() {
			return
		}
		rec.mu.Lock()
		st := rec.chans[ch]
		msgs, overflow := st.kept.take()
		if len(msgs) == 0 && !overflow {
			if done == nil {
				_ = c.t.send(recoveredFrame(ch, true, &bus.Position{Epoch: r.epoch, Seq: last}), true)
			}
			st.recovering, st.last = false, last
			rec.mu.Unlock()
			return
		}
		rec.mu.Unlock()
		if overflow && r.epoch != "" {
			if err := r.read(g.life, &last); err != nil || c.closing() {
				return
			}
		}
		for _, m := range msgs {
			if m.Seq <= last {
				continue
			}
			if !r.add(m) {
				return
			}
			last = m.Seq
		}
	}
}

// replayWrite is how many bytes of replayed frames go out in one write.
const replayWrite = 32 << 10

// replayer sends stored pushes of one channel to a recovering client,
// each with its pos frame, many to a write, at the pace the client reads
// (it waits while half of SendQueueLimit is unsent; a client that takes
// nothing for recoveryStall is closed as slow).
type replayer struct {
	g     *Gateway
	c     *client
	ch    bus.Channel
	epoch string
	buf   []byte
	n     int
}

// read replays what the stream holds of r's channel after *last, moving
// *last to each push framed.
func (r *replayer) read(ctx context.Context, last *uint64) error {
	return r.g.bus.ReadHistory(ctx, r.g.subj, r.ch.Stored(r.g.subj), *last+1, 0, func(m bus.HistoryMsg) bool {
		if !r.add(m) {
			return false
		}
		*last = m.Seq
		return true
	})
}

// add frames one stored push; false when the client is gone.
func (r *replayer) add(m bus.HistoryMsg) bool {
	var cmd bus.Command
	if err := decodeCommand(m.Data, &cmd); err != nil || cmd.Op != bus.OpSend {
		return true // as deliverLive: skipped
	}
	pos := posFrame(r.ch, bus.Position{Epoch: r.epoch, Seq: m.Seq})
	fr := newFraming(cmd.Body, cmd.Frame, r.g.cfg.WebSocketType)
	text := fr.text(r.c)
	if len(r.buf) > 0 && len(r.buf)+len(pos)+len(cmd.Body)+2*maxFrameHeader > replayWrite && !r.flush() {
		return false
	}
	built, ok := appendWithPos(r.c, r.buf, pos, cmd.Body, text)
	if !ok { // a compressed WebSocket: one by one
		if !r.waitRoom(len(pos) + len(cmd.Body) + 2*maxFrameHeader) {
			return false
		}
		sendWithPos(r.c, pos, cmd.Body, text)
		r.g.stats.historyReplayed.Add(1)
		return true
	}
	r.buf, r.n = built, r.n+1
	return len(r.buf) < replayWrite || r.flush()
}

// flush writes what add framed; false when the client is gone.
func (r *replayer) flush() bool {
	if len(r.buf) == 0 {
		return !r.c.closing()
	}
	if !r.waitRoom(len(r.buf)) {
		return false
	}
	_ = r.c.t.writeFrames(r.buf)
	r.g.stats.historyReplayed.Add(uint64(r.n))
	r.buf, r.n = r.buf[:0], 0
	return true
}

// waitRoom waits until the client's send queue has room for need bytes
// within half of SendQueueLimit (or is empty); false when it closed.
func (r *replayer) waitRoom(need int) bool {
	c := r.c
	room := max(r.g.cfg.SendQueueLimit/2, need)
	stalled, last := time.Now(), c.t.queued()
	for c.t.queued()+need > room {
		if c.closing() {
			return false
		}
		if q := c.t.queued(); q < last {
			stalled, last = time.Now(), q
		} else if time.Since(stalled) > recoveryStall {
			c.end(bus.CloseSlowConsumer, nil)
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return !c.closing()
}
