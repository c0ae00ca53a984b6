/**
 * qrevents.js: the browser client of the qrevents event stream (GET /events/stream).
 *
 * No dependencies, no build step: an ES module for browsers (and Node 20+ for tests).
 *
 *   import { QrEventsClient } from '/static/qrevents.js';
 *   const client = new QrEventsClient({ credential: token });
 *   client.on('qr_payment', (payment) => showPaymentNotification(payment));
 *   client.on('state', (state) => indicator.dataset.state = state);
 *   client.start();
 *
 * What it does that a bare EventSource does not:
 * - sends the credential in an `Authorization` header (fetch streaming); or, with
 *   `transport: 'cookie'`, trades it (POST /events/ticket) for the stream cookie and opens a native
 *   EventSource that reconnects by itself, through restarts, with that cookie; or, with
 *   `transport: 'eventsource'`, for a single-use ticket per connection. Either way a long-lived
 *   key or JWT never sits in a URL;
 * - reconnects by itself with exponential backoff and jitter, resuming from the last durable event
 *   (`Last-Event-ID`), and drops a durable event it has already delivered;
 * - tells when the resume was not possible (`resync`: reload state over REST);
 * - stops, instead of reconnecting forever, when the credential stops being valid (`signed_out`).
 */

/** Every event type the server sends, as docs/CONTRACT.md names them. */
export const EVENT_TYPES = Object.freeze([
  'connection',
  'heartbeat',
  'qr_created',
  'qr_payment',
  'qr_status_change',
  'account_balance_update',
  'stream_closed',
  'resync_required',
]);

/** Events with an SSE id: logged by the server, replayed on resume, delivered once. */
export const DURABLE_TYPES = Object.freeze([
  'qr_created',
  'qr_payment',
  'qr_status_change',
  'account_balance_update',
]);

/** Connection states, in the order a session usually goes through them. */
export const STATES = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  SIGNED_OUT: 'signed_out',
  CLOSED: 'closed',
});

/** `stream_closed` reasons after which reconnecting with the same credential is pointless. */
const CREDENTIAL_REASONS = new Set(['token_expired', 'key_revoked']);
const CLIENT_EVENTS = new Set(['state', 'resync', 'signed_out', 'error', '*']);
const DURABLE = new Set(DURABLE_TYPES);

/**
 * @typedef {{message: string, accountId: number, userId: number|null, connectionId: string,
 *   authType: 'apikey'|'jwt', tokenSource: 'query'|'header', timestamp: string,
 *   resumed: boolean, replayed: number}} ConnectionData
 * @typedef {{timestamp: string, connectionId: string}} HeartbeatData
 * @typedef {'active'|'used'|'completed'|'expired'|'cancelled'} QrStatus
 * @typedef {{qrId: string, transactionId: string, amount: number, currency: string,
 *   description: string, dueDate: string, singleUse: boolean, modifyAmount: boolean,
 *   status: QrStatus}} QrCreatedData
 * @typedef {{qrId: string, transactionId: string, amount: number, currency: string,
 *   senderName: string, senderDocumentId: string, senderAccount: string,
 *   senderBankCode: string, description: string, paymentDate: string,
 *   paymentTime: string|null, singleUse: boolean, newStatus: QrStatus, review: boolean,
 *   reviewReason: string|null}} QrPaymentData
 * @typedef {{qrId: string, previousStatus: QrStatus, newStatus: QrStatus, amount: number,
 *   currency: string, description: string, singleUse: boolean, dueDate: string,
 *   syncSource: string}} QrStatusChangeData
 * @typedef {{accountId: number, movementType: string, amount: number,
 *   previousBalance: number, newBalance: number, previousAvailableBalance: number,
 *   newAvailableBalance: number, description: string, qrId: string|null,
 *   transactionId: string|null, currency: string}} AccountBalanceUpdateData
 * @typedef {{reason: 'token_expired'|'key_revoked'|'server_shutdown'|'slow_consumer'|
 *   'overloaded'|'too_many_streams'|'replay_failed', timestamp: string}} StreamClosedData
 * @typedef {{lastEventId: string, reason: 'unknown'|'expired'}} ResyncRequiredData
 * @typedef {{type: string, id: string|null, lastEventId: string|null}} EventMeta
 *
 * @typedef {object} EventDataMap
 * @property {ConnectionData} connection
 * @property {HeartbeatData} heartbeat
 * @property {QrCreatedData} qr_created
 * @property {QrPaymentData} qr_payment
 * @property {QrStatusChangeData} qr_status_change
 * @property {AccountBalanceUpdateData} account_balance_update
 * @property {StreamClosedData} stream_closed
 * @property {ResyncRequiredData} resync_required
 * @property {string} state  the new state (a value of STATES)
 * @property {ConnectionData} resync  resume was not possible: reload state over REST
 * @property {{reason: string}} signed_out  the credential is no longer valid
 * @property {Error} error  a listener threw, or a frame could not be read
 * @property {any} *  every server event; `meta.type` tells which
 */

/**
 * The delay before reconnection attempt `attempt` (0-based): exponential, capped, with "equal
 * jitter" (half fixed, half random) so that a fleet of dashboards dropped by one restart does
 * not come back in one burst, yet none retries at once.
 */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * An incremental parser of `text/event-stream` (WHATWG HTML, "Interpreting an event stream"):
 * feed it decoded text in chunks of any size; it calls `onEvent({type, data, lastEventId})` for
 * every dispatched event and `onRetry(ms)` for a `retry:` field.
 */
export class SseParser {
  constructor({ onEvent, onRetry = () => {}, lastEventId = '' }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.lastEventId = lastEventId;
    this.pending = '';
    this.skipLineFeed = false;
    this.resetEvent();
  }

  resetEvent() {
    this.type = '';
    this.data = [];
  }

  push(chunk) {
    let text = chunk;
    if (this.skipLineFeed && text.startsWith('\n')) text = text.slice(1);
    this.skipLineFeed = false;
    const buffer = this.pending + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i += 1) {
      const char = buffer[i];
      if (char !== '\n' && char !== '\r') continue;
      this.line(buffer.slice(start, i));
      if (char === '\r') {
        // CRLF is one line end, even when the LF comes in the next chunk.
        if (i + 1 === buffer.length) this.skipLineFeed = true;
        else if (buffer[i + 1] === '\n') i += 1;
      }
      start = i + 1;
    }
    this.pending = buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // a comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.onRetry(Number(value));
  }

  dispatch() {
    const { type, data } = this;
    this.resetEvent();
    if (data.length === 0) return;
    this.onEvent({ type: type || 'message', data: data.join('\n'), lastEventId: this.lastEventId });
  }
}

/** Seconds of a `Retry-After` header as milliseconds (0 when absent or a date). */
function retryAfterMs(response) {
  const seconds = Number(response.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** The `error.code` of a JSON error envelope, or a fallback. */
async function errorCode(response, fallback) {
  try {
    const body = await response.json();
    return body?.error?.code || fallback;
  } catch {
    return fallback;
  }
}

/**
 * A live, self-healing subscription to one account's events.
 *
 * Options:
 * - `credential` (required): an API key or JWT, or a function (sync or async) returning one,
 *   called before every connection (so a caller can hand over a refreshed token). With a
 *   function, a stream ended at the token's expiry (`token_expired`) is resumed at once with
 *   the function's next token: a session that renews its token never sees a sign-out, nor a
 *   gap; only a refused next token signs out.
 * - `baseUrl`: the server's root (default: this page's origin).
 * - `transport`: `'fetch'` (default: the credential in an Authorization header), `'cookie'` (a
 *   native EventSource with the stream cookie; same origin only) or `'eventsource'` (a native
 *   EventSource opened with a single-use `?ticket=`).
 * - `lastEventId`: where to resume from (e.g. kept from an earlier session).
 * - `retryMs`: the base reconnection delay; by default the server's `retry:` value.
 * - `maxRetryMs` (30000): the cap of the backoff.
 * - `idleTimeoutMs` (90000): reconnect when nothing, not even a heartbeat, arrived for this long.
 * - `rememberIds` (2000): how many recent durable ids are kept to drop a repeat.
 * - `fetch`, `EventSource`, `random`: injectable for tests.
 */
export class QrEventsClient {
  constructor(options) {
    if (!options || !options.credential) throw new TypeError('QrEventsClient needs a credential');
    this.options = {
      baseUrl: globalThis.location ? globalThis.location.origin : '',
      transport: 'fetch',
      retryMs: null,
      maxRetryMs: 30000,
      idleTimeoutMs: 90000,
      rememberIds: 2000,
      fetch: (...args) => globalThis.fetch(...args),
      EventSource: globalThis.EventSource,
      random: Math.random,
      ...options,
    };
    this.state = STATES.IDLE;
    this.lastEventId = options.lastEventId || null;
    this.connectionId = null;
    this.serverRetryMs = null;
    this.attempt = 0;
    this.stats = { connections: 0, replayed: 0, duplicatesDropped: 0 };
    this.listeners = new Map();
    this.seenIds = new Set();
    this.stopped = true;
    this.closeCurrent = null; // ends the open connection, which then counts as dropped
    this.wake = null; // ends the backoff wait early
  }

  /**
   * Listen to a server event type (see EVENT_TYPES) or a client event (`state`, `resync`,
   * `signed_out`, `error`, `*` for every server event). Returns a function that unsubscribes.
   *
   * @template {keyof EventDataMap} K
   * @param {K} type
   * @param {(data: EventDataMap[K], meta: EventMeta) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    if (!EVENT_TYPES.includes(type) && !CLIENT_EVENTS.has(type)) {
      throw new TypeError(`unknown qrevents event type: ${type}`);
    }
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.listeners.get(type)?.delete(listener);
  }

  /** Open the stream and keep it open until `close()` or until signed out. */
  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    this.setState(STATES.CONNECTING);
    this.loop();
    return this;
  }

  /** Stop for good: close the stream, cancel any pending reconnection. */
  close() {
    this.stopped = true;
    this.closeCurrent?.();
    this.wake?.();
    this.setState(STATES.CLOSED);
  }

  /**
   * With the cookie transport, trade the current credential for a fresh stream cookie (call
   * it after renewing a token): the browser's own reconnections then carry a cookie that
   * lives as long as the new token. False when the server refused.
   */
  async renewStreamCookie() {
    if (this.options.transport !== 'cookie' || this.stopped) return false;
    const credential = await this.credential();
    try {
      const response = await this.options.fetch(this.url('events/ticket'), {
        method: 'POST',
        headers: { Authorization: `Bearer ${credential}` },
        cache: 'no-store',
        credentials: 'same-origin',
      });
      return response.ok;
    } catch {
      return false;
    }
  }

  /** Skip the backoff wait (e.g. on the browser's `online` event). */
  reconnectNow() {
    this.attempt = 0;
    this.wake?.();
  }

  emit(type, data, meta) {
    for (const listener of [...(this.listeners.get(type) || [])]) {
      try {
        listener(data, meta);
      } catch (error) {
        if (type === 'error') throw error;
        this.emit('error', error, { type: 'error', id: null, lastEventId: this.lastEventId });
      }
    }
  }

  setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    const meta = { type: 'state', id: null, lastEventId: this.lastEventId, ...detail };
    this.emit('state', state, meta);
  }

  signOut(reason) {
    this.stopped = true;
    this.closeCurrent?.();
    this.setState(STATES.SIGNED_OUT, { reason });
    this.emit('signed_out', { reason }, { type: 'signed_out', id: null, lastEventId: null });
  }

  async loop() {
    while (!this.stopped) {
      let outcome;
      try {
        outcome = await this.connectOnce();
      } catch (error) {
        outcome = { retry: true };
        if (error?.name !== 'AbortError') this.emit('error', error, { type: 'error', id: null });
      }
      if (this.stopped || !outcome.retry) return;
      if (outcome.renewed) continue; // the same session, with its next token: no wait
      this.setState(STATES.RECONNECTING, { reason: outcome.reason });
      const base = this.options.retryMs ?? this.serverRetryMs ?? 1000;
      const delay = Math.max(
        outcome.minDelayMs || 0,
        backoffDelay(this.attempt, base, this.options.maxRetryMs, this.options.random),
      );
      this.attempt += 1;
      await this.sleep(delay);
    }
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  async credential() {
    const { credential } = this.options;
    return typeof credential === 'function' ? credential() : credential;
  }

  url(path) {
    return new URL(path, this.options.baseUrl || globalThis.location?.href).toString();
  }

  /** One connection, to its end: `{retry, reason?, minDelayMs?}`. */
  async connectOnce() {
    const credential = await this.credential();
    if (this.stopped) return { retry: false }; // closed while the credential was awaited
    if (!credential) {
      this.signOut('missing_credentials');
      return { retry: false };
    }
    this.closedFor = null;
    if (this.options.transport === 'cookie') return this.connectCookie(credential);
    return this.options.transport === 'eventsource'
      ? this.connectEventSource(credential)
      : this.connectFetch(credential);
  }

  async connectFetch(credential) {
    const controller = new AbortController();
    this.closeCurrent = () => controller.abort();
    const headers = { Authorization: `Bearer ${credential}`, Accept: 'text/event-stream' };
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    let response;
    try {
      response = await this.options.fetch(this.url('events/stream'), {
        headers,
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch {
      return { retry: true, reason: 'network' };
    }
    if (response.status === 401) {
      this.signOut(await errorCode(response, 'invalid_credentials'));
      return { retry: false };
    }
    const type = response.headers.get('Content-Type') || '';
    if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
      const minDelayMs = retryAfterMs(response);
      controller.abort();
      return { retry: true, reason: `http_${response.status}`, minDelayMs };
    }
    const parser = new SseParser({
      lastEventId: this.lastEventId || '',
      onRetry: (ms) => {
        this.serverRetryMs = ms;
      },
      onEvent: (event) => this.receive(event.type, event.data, event.lastEventId || null),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let idleTimer = null;
    const armIdleTimer = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => controller.abort(), this.options.idleTimeoutMs);
    };
    try {
      armIdleTimer();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armIdleTimer();
        parser.push(decoder.decode(value, { stream: true }));
        if (this.closedFor) break;
      }
    } catch {
      // a dropped connection or our own abort: decided below
    } finally {
      clearTimeout(idleTimer);
      controller.abort();
    }
    return this.afterStream();
  }

  async connectEventSource(credential) {
    let response;
    try {
      response = await this.options.fetch(this.url('events/ticket'), {
        method: 'POST',
        headers: { Authorization: `Bearer ${credential}` },
        cache: 'no-store',
      });
    } catch {
      return { retry: true, reason: 'network' };
    }
    if (response.status === 401) {
      this.signOut(await errorCode(response, 'invalid_credentials'));
      return { retry: false };
    }
    if (!response.ok) return { retry: true, reason: `http_${response.status}` };
    const { ticket } = (await response.json()).data;
    if (this.stopped) return { retry: false };
    const url = new URL(this.url('events/stream'));
    url.searchParams.set('ticket', ticket);
    if (this.lastEventId) url.searchParams.set('lastEventId', this.lastEventId);
    const source = new this.options.EventSource(url.toString());
    await new Promise((resolve) => {
      let idleTimer = null;
      const finish = () => {
        clearTimeout(idleTimer);
        source.close();
        this.closeCurrent = null;
        resolve();
      };
      const armIdleTimer = () => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(finish, this.options.idleTimeoutMs);
      };
      this.closeCurrent = finish;
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (event) => {
          armIdleTimer();
          this.receive(type, event.data, event.lastEventId || null);
          if (this.closedFor) finish();
        });
      }
      // The ticket is spent: the browser's own retry with the same URL would be refused.
      source.onerror = finish;
      armIdleTimer();
    });
    return this.afterStream();
  }

  /**
   * The stream cookie: one POST /events/ticket sets it, then one native EventSource that the
   * browser itself reconnects (with Last-Event-ID) after every passing end of the stream. Back
   * here only when the browser gives up (a 401: the cookie expired or its credential is no
   * longer valid; the next POST tells which), on a credential reason, or when idle too long.
   */
  async connectCookie(credential) {
    let response;
    try {
      response = await this.options.fetch(this.url('events/ticket'), {
        method: 'POST',
        headers: { Authorization: `Bearer ${credential}` },
        cache: 'no-store',
        credentials: 'same-origin',
      });
    } catch {
      return { retry: true, reason: 'network' };
    }
    if (response.status === 401) {
      this.signOut(await errorCode(response, 'invalid_credentials'));
      return { retry: false };
    }
    if (!response.ok) return { retry: true, reason: `http_${response.status}` };
    const { accountId } = (await response.json()).data;
    if (this.stopped) return { retry: false };
    const url = new URL(this.url('events/stream'));
    url.searchParams.set('accountId', accountId); // the cookie of this account, of several
    if (this.lastEventId) url.searchParams.set('lastEventId', this.lastEventId);
    const source = new this.options.EventSource(url.toString(), { withCredentials: true });
    await new Promise((resolve) => {
      let idleTimer = null;
      const finish = () => {
        clearTimeout(idleTimer);
        source.close();
        this.closeCurrent = null;
        resolve();
      };
      const armIdleTimer = () => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(finish, this.options.idleTimeoutMs);
      };
      this.closeCurrent = finish;
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (event) => {
          armIdleTimer();
          this.receive(type, event.data, event.lastEventId || null);
          if (CREDENTIAL_REASONS.has(this.closedFor)) finish();
        });
      }
      source.onerror = () => {
        if (source.readyState === 2) finish(); // CLOSED: the browser will not retry
        else this.setState(STATES.RECONNECTING, { reason: this.closedFor || 'disconnected' });
      };
      armIdleTimer();
    });
    return this.afterStream();
  }

  afterStream() {
    this.closeCurrent = null;
    if (this.stopped) return { retry: false };
    const reason = this.closedFor;
    this.closedFor = null; // said of this stream only
    if (reason === 'token_expired' && typeof this.options.credential === 'function') {
      this.attempt = 0;
      return { retry: true, reason, renewed: true };
    }
    if (CREDENTIAL_REASONS.has(reason)) {
      this.signOut(reason);
      return { retry: false };
    }
    return { retry: true, reason: reason || 'disconnected' };
  }

  /** One server event: parse, drop a repeat, track the resume point, tell the listeners. */
  receive(type, text, lastEventId) {
    if (this.stopped) return;
    let data;
    try {
      data = JSON.parse(text);
    } catch (error) {
      this.emit('error', error, { type, id: null, lastEventId: this.lastEventId });
      return;
    }
    const id = DURABLE.has(type) ? lastEventId : null;
    if (id) {
      if (this.seenIds.has(id)) {
        this.stats.duplicatesDropped += 1;
        return;
      }
      this.remember(id);
      this.lastEventId = id;
    }
    const meta = { type, id, lastEventId: this.lastEventId };
    if (type === 'connection') {
      this.closedFor = null; // a native EventSource reconnected by itself
      this.connectionId = data.connectionId;
      this.attempt = 0;
      this.stats.connections += 1;
      this.stats.replayed += data.replayed || 0;
      this.setState(STATES.CONNECTED);
    } else if (type === 'stream_closed') {
      this.closedFor = data.reason;
    }
    this.emit(type, data, meta);
    this.emit('*', data, meta);
    if (type === 'connection' && data.resumed === false) this.emit('resync', data, meta);
  }

  remember(id) {
    this.seenIds.add(id);
    if (this.seenIds.size > this.options.rememberIds) {
      this.seenIds.delete(this.seenIds.values().next().value);
    }
  }
}
