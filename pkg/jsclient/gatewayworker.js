// gatewayworker.js: the browser client of a gatewayworker gateway.
//
// One dependency-free ES module. The gateway binary serves it at
// /gatewayworker.js (beside the chat page); it is also the file
// pkg/jsclient/gatewayworker.js of the repository, to copy or bundle.
// docs/clients.md ("JavaScript client") describes it.
//
//   import { GatewayClient } from '/gatewayworker.js';
//   const gw = new GatewayClient('wss://chat.example.com/', { token: () => fetchToken() });
//   gw.on('open', () => gw.send(JSON.stringify({ type: 'login' })));
//   gw.on('message', (e) => console.log(e.data, e.binary));
//   gw.on('close', (e) => e.willReconnect || showGoodbye(e.code, e.reason));
//   gw.connect();
//
// What it does for an app:
//   - connects with a token in the query (?token=), fetched anew before
//     every attempt when `token` is a function;
//   - reconnects after an exponential backoff with jitter, following the
//     gateway's close codes: 4000-4499 reconnect, 4500-4999 do not (the app
//     must act: new token, ask the user), 1000 does not unless
//     reconnectOnNormalClose, anything else (1006: the connection broke) does;
//   - notices a dead connection: browsers do not show WebSocket pings, so
//     it counts as dead a connection on which nothing arrived for
//     heartbeatTimeout ms; the gateway's --ping-data heartbeat provides the
//     traffic, and pingMessage/pongMessage answer it;
//   - queues up to maxQueue sends while not connected, sent in order once open;
//   - sends strings as text frames and ArrayBuffer, typed arrays, DataView
//     and Blob as binary frames; messages arrive with data a string (text
//     frame) or an ArrayBuffer (binary frame), and binary says which;
//   - with `recover`, keeps the position of each uid and group channel
//     from the gateway's pos frames and sends them on every (re)connect
//     (?recover=), so that the gateway replays the recoverable pushes
//     missed meanwhile, and raises `recovered` per channel.

/** Close codes the gateway sends (docs/clients.md, "Close codes"). */
export const CloseCodes = Object.freeze({
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  GATEWAY_SHUTDOWN: 4000,
  GATEWAY_LOST_NATS: 4001,
  SLOW_CONSUMER: 4002,
  SERVER_FULL: 4003,
  RATE_LIMITED: 4004,
  EVENT_QUEUE_FULL: 4005,
  HEARTBEAT_TIMEOUT: 4006,
  KICKED: 4500,
  TOKEN_EXPIRED: 4501,
  UNAUTHORIZED: 4502,
  MESSAGE_TOO_LARGE: 4503,
});

/** The defaults of GatewayClient's options. */
export const defaults = Object.freeze({
  token: null, // a string, or a function returning one (or a Promise of one); null: none
  reconnect: true, // reconnect after closes that allow it
  reconnectOnNormalClose: false, // treat 1000 from the server as "reconnect"
  initialDelay: 500, // ms before the first reconnect
  maxDelay: 30000, // ms, the backoff's ceiling
  factor: 2, // each further attempt waits this much longer
  jitter: 0.5, // each wait is multiplied by a random factor in [1-jitter, 1+jitter)
  maxRetries: Infinity, // attempts in a row before giving up
  minUptime: 5000, // ms a connection must stay open to start the backoff again from initialDelay
  connectTimeout: 10000, // ms a connection may take to open
  heartbeatTimeout: 0, // ms without any message before the connection counts as dead; 0: off
  pingMessage: null, // a text message that is the gateway's heartbeat (--ping-data)
  pongMessage: null, // the answer to pingMessage; null: none
  maxQueue: 100, // sends kept while not connected; beyond it send() returns false
  binaryType: 'arraybuffer', // or 'blob'
  protocols: undefined, // WebSocket subprotocols
  WebSocket: undefined, // the WebSocket class; default: globalThis.WebSocket
  recover: false, // true, or an object of initial positions {"u:ann": "mjx3k2:1457", ...}: recover missed pushes
  maxRecoverBytes: 8192, // the ?recover= value's bound, URL-encoded (within the gateway's --max-header-bytes); at most MAX_RECOVER_BYTES
});

/** How many channel positions ?recover= carries at most (the newest). */
export const MAX_RECOVER_CHANNELS = 256;
/** The longest ?recover= JSON the gateway takes, in bytes: maxRecoverBytes cannot pass it. */
export const MAX_RECOVER_BYTES = 16384;

// Whether a close with code may be followed by a reconnect.
export function reconnectable(code, reconnectOnNormalClose = false) {
  if (code >= 4000 && code <= 4499) return true;
  if (code >= 4500 && code <= 4999) return false;
  if (code === 1000) return reconnectOnNormalClose;
  return true; // 1001, 1002, 1006, 1011, 1012, ...: a broken or restarting server
}

export class GatewayClient {
  /**
   * @param {string} url ws:// or wss:// URL of a gateway.
   * @param {object} [options] see `defaults`.
   */
  constructor(url, options = {}) {
    const u = new URL(url, typeof location !== 'undefined' ? location.href : undefined);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError('gatewayworker: not a ws:// or wss:// URL: ' + url);
    for (const k of Object.keys(options)) {
      if (!(k in defaults)) throw new TypeError('gatewayworker: unknown option ' + k);
    }
    this.url = u.href;
    this.options = Object.assign({}, defaults, options);
    // channel -> position, oldest update first (a Map keeps insertion order).
    this._positions = new Map();
    this._pendingPos = null; // {ch, pos} of a pos frame whose push has not arrived yet
    const rec = this.options.recover;
    if (rec !== false && rec !== true) {
      if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new TypeError('gatewayworker: recover must be true, false or an object of positions');
      for (const [ch, pos] of Object.entries(rec)) {
        if (typeof pos !== 'string') throw new TypeError('gatewayworker: recover: the position of ' + ch + ' is not a string');
        // One the gateway would refuse (HTTP 400) would fail every connection: skip it.
        if (validChannel(ch) && /^[0-9a-z]{1,13}:(0|[1-9][0-9]{0,18})$/.test(pos)) this._commit(ch, pos);
      }
    }
    this._listeners = new Map();
    this._queue = [];
    this._ws = null;
    this._state = 'idle'; // idle, connecting, open, reconnecting, closed
    this._attempt = 0; // failed attempts in a row
    // The backoff's step: reset only by a connection that stayed open
    // minUptime, so that a gateway that accepts and closes at once (4003
    // server full) is not retried every initialDelay by all its clients.
    this._backoff = 0;
    this._openedAt = 0;
    this._timer = 0; // reconnect, connect timeout
    this._heartbeat = 0;
    this._lastSeen = 0;
    this._gen = 0; // bumped by connect() and close(): stale sockets' events are ignored
    this._onOnline = () => {
      if (this._state === 'reconnecting') this._open();
    };
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
  }

  /** idle, connecting, open, reconnecting or closed. */
  get state() { return this._state; }

  /** Sends waiting for the connection. */
  get queued() { return this._queue.length; }

  /** Failed attempts since the last open connection. */
  get attempts() { return this._attempt; }

  /**
   * With `recover`: channel ("u:<uid>", "g:<group>") -> the position of
   * the last recoverable push received on it, a new object each time
   * (oldest update first; the newest MAX_RECOVER_CHANNELS are kept).
   * Persist it to recover across page loads.
   */
  get positions() { return Object.fromEntries(this._positions); }

  /** Adds a listener of type (open, message, close, reconnecting, error, ping, recovered); returns a function removing it. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, detail) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(detail); } catch (e) { setTimeout(() => { throw e; }); } // report, but do not break the client
    }
  }

  /** Connects, or reconnects now if waiting to. A closed client may connect again. */
  connect() {
    if (this._state === 'open' || this._state === 'connecting') return;
    this._attempt = 0;
    this._backoff = 0;
    this._open();
  }

  /**
   * Closes the connection (code 1000 unless given) and stops reconnecting.
   * Sends still queued are dropped.
   */
  close(code = 1000, reason = '') {
    this._gen++;
    this._clearTimers();
    this._queue = [];
    const ws = this._ws;
    this._ws = null;
    const was = this._state;
    this._state = 'closed';
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch (e) { try { ws.close(); } catch (_) { /* closed already */ } }
    }
    if (was !== 'closed' && was !== 'idle') {
      this._emit('close', { code, reason, wasClean: true, willReconnect: false, byClient: true });
    }
  }

  /**
   * Sends data: a string as a text frame, an ArrayBuffer, typed array,
   * DataView or Blob as a binary frame. While not connected, it is queued
   * (up to maxQueue) and sent once connected. Returns false when it was
   * neither sent nor queued (queue full, or the client is closed).
   */
  send(data) {
    if (typeof data !== 'string' && !isBinary(data)) throw new TypeError('gatewayworker: send takes a string or binary data');
    if (this._state === 'open' && this._ws) {
      this._ws.send(data);
      return true;
    }
    if (this._state === 'closed' || this._queue.length >= this.options.maxQueue) return false;
    this._queue.push(data);
    return true;
  }

  /**
   * Sends a fresh token on the open connection ({"token":"..."}), which the
   * gateway takes instead of closing with 4501 at the old one's expiry.
   */
  refreshToken(jwt) {
    if (this._state !== 'open' || !this._ws) return false;
    this._ws.send(JSON.stringify({ token: String(jwt) }));
    return true;
  }

  async _open() {
    this._clearTimers();
    const gen = ++this._gen;
    this._state = 'connecting';
    let url = this.url;
    try {
      const token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
      if (gen !== this._gen) return;
      if (token != null && token !== '') {
        const u = new URL(url);
        u.searchParams.set('token', String(token));
        url = u.href;
      }
      if (this.options.recover !== false) url = withRecover(url, this._recoverQuery());
    } catch (error) {
      if (gen !== this._gen) return;
      this._emit('error', { error });
      this._afterClose({ code: 1006, reason: 'token: ' + (error && error.message || error), wasClean: false });
      return;
    }
    const WS = this.options.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = this.options.protocols === undefined ? new WS(url) : new WS(url, this.options.protocols);
    } catch (error) {
      this._emit('error', { error });
      this._afterClose({ code: 1006, reason: String(error && error.message || error), wasClean: false });
      return;
    }
    ws.binaryType = this.options.binaryType;
    this._ws = ws;
    this._pendingPos = null;
    this._timer = setTimeout(() => {
      if (gen === this._gen && ws.readyState !== 1) this._drop(ws, 'connect timeout');
    }, this.options.connectTimeout);

    ws.onopen = () => {
      if (gen !== this._gen) return;
      clearTimeout(this._timer);
      this._state = 'open';
      this._attempt = 0;
      this._openedAt = Date.now();
      this._seen();
      this._startHeartbeat(ws, gen);
      this._emit('open', { url: this.url });
      // After the listeners, so that what they send (a login) goes first.
      while (this._queue.length > 0 && this._ws === ws && ws.readyState === 1) ws.send(this._queue.shift());
    };
    ws.onmessage = (ev) => {
      if (gen !== this._gen) return;
      this._seen();
      const data = ev.data;
      if (typeof data === 'string' && this.options.pingMessage !== null && data === this.options.pingMessage) {
        if (this.options.pongMessage !== null && ws.readyState === 1) ws.send(this.options.pongMessage);
        this._emit('ping', { data });
        return;
      }
      if (this.options.recover !== false) {
        const f = typeof data === 'string' && data.startsWith('{"gw":"') ? gwFrame(data) : null;
        if (f !== null) {
          this._onGwFrame(f);
          return;
        }
        const p = this._pendingPos;
        if (p !== null) {
          // The push its pos frame announced: only now is the position the client's.
          this._pendingPos = null;
          this._commit(p.ch, p.pos);
          this._emit('message', { data, binary: typeof data !== 'string', channel: p.ch, pos: p.pos });
          return;
        }
      }
      this._emit('message', { data, binary: typeof data !== 'string' });
    };
    ws.onerror = () => {
      if (gen === this._gen) this._emit('error', { error: new Error('WebSocket error') });
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._ws = null;
      this._afterClose({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    };
  }

  _onGwFrame(f) {
    if (f.gw === 'pos') {
      this._pendingPos = { ch: f.ch, pos: f.pos };
      return;
    }
    // recovered: what was missed has been replayed (complete), or could not be
    // (the app reloads its state); either way pos, if any, is where the channel
    // stands now, and without one the old position is useless.
    this._pendingPos = null;
    if (f.pos !== '') this._commit(f.ch, f.pos);
    else this._positions.delete(f.ch);
    this._emit('recovered', { channel: f.ch, complete: f.complete, pos: f.pos });
  }

  _commit(ch, pos) {
    this._positions.delete(ch); // to the end: the newest are kept when there are too many
    this._positions.set(ch, pos);
    if (this._positions.size > MAX_RECOVER_CHANNELS) this._positions.delete(this._positions.keys().next().value);
  }

  // The ?recover= JSON: the newest positions that fit in maxRecoverBytes
  // once URL-encoded (so the JSON does too).
  _recoverQuery() {
    const limit = Math.min(this.options.maxRecoverBytes, MAX_RECOVER_BYTES);
    const entries = [...this._positions];
    let size = 6; // %7B%7D
    let from = entries.length;
    while (from > 0) {
      const [ch, pos] = entries[from - 1];
      const add = encodeURIComponent(JSON.stringify(ch) + ':' + JSON.stringify(pos)).length + (from < entries.length ? 3 : 0); // %2C
      if (size + add > limit) break;
      size += add;
      from--;
    }
    return JSON.stringify(Object.fromEntries(entries.slice(from)));
  }

  // _drop gives up on ws (connect timeout, missed heartbeats) as if it had
  // broken: 1006 for the app, a reconnect after the backoff.
  _drop(ws, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try { ws.close(); } catch (e) { /* closing anyway */ }
    if (this._ws === ws) this._ws = null;
    this._afterClose({ code: 1006, reason, wasClean: false });
  }

  _afterClose({ code, reason, wasClean }) {
    this._clearTimers();
    const o = this.options;
    const retry = o.reconnect && reconnectable(code, o.reconnectOnNormalClose) && this._attempt < o.maxRetries;
    this._emit('close', { code, reason, wasClean, willReconnect: retry, byClient: false });
    if (!retry) {
      this._state = 'closed';
      this._queue = [];
      return;
    }
    if (this._openedAt !== 0 && Date.now() - this._openedAt >= o.minUptime) this._backoff = 0;
    this._openedAt = 0;
    const base = Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, this._backoff));
    // Jitter spreads the clients, but never past the ceiling.
    const delay = Math.min(o.maxDelay, Math.max(0, Math.round(base * (1 - o.jitter + Math.random() * 2 * o.jitter))));
    this._attempt++;
    this._backoff++;
    this._state = 'reconnecting';
    const gen = this._gen;
    this._emit('reconnecting', { attempt: this._attempt, delay, code, reason });
    if (this._gen !== gen || this._state !== 'reconnecting') return; // a listener called connect() or close()
    this._timer = setTimeout(() => this._open(), delay);
  }

  _seen() { this._lastSeen = Date.now(); }

  _startHeartbeat(ws, gen) {
    const limit = this.options.heartbeatTimeout;
    if (!(limit > 0)) return;
    const check = () => {
      if (gen !== this._gen || this._ws !== ws) return;
      const idle = Date.now() - this._lastSeen;
      if (idle >= limit) {
        this._drop(ws, 'heartbeat timeout');
        return;
      }
      this._heartbeat = setTimeout(check, limit - idle);
    };
    this._heartbeat = setTimeout(check, limit);
  }

  _clearTimers() {
    clearTimeout(this._timer);
    clearTimeout(this._heartbeat);
    this._timer = this._heartbeat = 0;
  }
}

// withRecover returns url with ?recover=json, percent-encoded (not form-encoded:
// a + stays a +).
function withRecover(url, json) {
  const u = new URL(url);
  if (u.searchParams.has('recover')) u.searchParams.delete('recover');
  u.search = (u.search.length > 1 ? u.search + '&' : '?') + 'recover=' + encodeURIComponent(json);
  return u.href;
}

// validChannel: "u:<uid>" or "g:<group>", names of 1 to 256 bytes.
function validChannel(ch) {
  if (!/^[ug]:./s.test(ch)) return false;
  return new TextEncoder().encode(ch).length <= 258;
}

// gwFrame returns the gateway's pos or recovered frame in data, or null
// when data is something else (an app's message that merely looks alike).
function gwFrame(data) {
  let f;
  try { f = JSON.parse(data); } catch (e) { return null; }
  if (f === null || typeof f.ch !== 'string') return null;
  if (f.gw === 'pos' && typeof f.pos === 'string') return f;
  if (f.gw === 'recovered' && typeof f.complete === 'boolean') return { gw: f.gw, ch: f.ch, complete: f.complete, pos: typeof f.pos === 'string' ? f.pos : '' };
  return null;
}

function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data) ||
    (typeof Blob !== 'undefined' && data instanceof Blob);
}
