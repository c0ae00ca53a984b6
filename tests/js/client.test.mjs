// QrEventsClient against a scripted server: resume, repeats, backoff, sign-out, transports.
import assert from 'node:assert/strict';
import test from 'node:test';

import { QrEventsClient, STATES, backoffDelay } from '../../qrevents/static/qrevents.js';

const BASE = 'http://qrevents.test/';

function frame(type, data, id) {
  return `${id ? `id: ${id}\n` : ''}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

const connection = (resumed, replayed = 0) =>
  frame('connection', { connectionId: 'conn_1_abcdef', resumed, replayed });

/**
 * A fake `fetch` that answers each call with the next scripted reply: `{frames, open}` for a
 * stream (kept open when `open`, ended otherwise), or `{status, body, headers}`. Every request
 * is recorded; an abort errors the stream like a real fetch does.
 */
function scriptedServer(replies) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    requests.push({ url: String(url), method: init.method || 'GET', headers: init.headers || {} });
    const reply = replies.shift() ?? { open: true, frames: [] };
    if (reply.status) {
      return new Response(JSON.stringify(reply.body ?? {}), {
        status: reply.status,
        headers: { 'Content-Type': 'application/json', ...(reply.headers || {}) },
      });
    }
    const encoder = new TextEncoder();
    const body = new ReadableStream({
      start(controller) {
        for (const text of reply.frames) controller.enqueue(encoder.encode(text));
        if (!reply.open) controller.close();
        init.signal?.addEventListener('abort', () => {
          try {
            controller.error(new DOMException('aborted', 'AbortError'));
          } catch {
            // already closed
          }
        });
      },
    });
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  };
  return { fetch, requests };
}

function newClient(server, options = {}) {
  return new QrEventsClient({
    credential: 'qrk_test',
    baseUrl: BASE,
    fetch: server.fetch,
    retryMs: 1,
    random: () => 0,
    ...options,
  });
}

/** Resolves when `predicate()` holds, polling; fails the test after `ms`. */
async function eventually(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test('a dropped stream resumes from the last durable event, not a heartbeat', async () => {
  const server = scriptedServer([
    {
      frames: [
        'retry: 1\n\n',
        connection(false),
        frame('qr_created', { qrId: 'Q1' }, 'qr_created_Q1'),
        frame('heartbeat', { timestamp: 't' }),
      ],
    },
    {
      open: true,
      frames: [connection(true, 1), frame('qr_payment', { qrId: 'Q1' }, 'qr_payment_T1')],
    },
  ]);
  const client = newClient(server);
  const seen = [];
  const states = [];
  client.on('*', (data, meta) => seen.push(meta.type));
  client.on('state', (state) => states.push(state));
  client.start();
  await eventually(() => seen.includes('qr_payment'));
  client.close();
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[0].headers['Last-Event-ID'], undefined);
  assert.equal(server.requests[1].headers['Last-Event-ID'], 'qr_created_Q1');
  assert.equal(server.requests[1].headers.Authorization, 'Bearer qrk_test');
  assert.deepEqual(seen, ['connection', 'qr_created', 'heartbeat', 'connection', 'qr_payment']);
  assert.deepEqual(states, ['connecting', 'connected', 'reconnecting', 'connected', 'closed']);
  assert.equal(client.lastEventId, 'qr_payment_T1');
  assert.equal(client.stats.replayed, 1);
});

test('a durable event delivered again is dropped and counted', async () => {
  const created = frame('qr_created', { qrId: 'Q1' }, 'qr_created_Q1');
  const server = scriptedServer([
    { frames: [connection(false), created] },
    { open: true, frames: [connection(true, 1), created, frame('heartbeat', {})] },
  ]);
  const client = newClient(server);
  const created_ = [];
  let beats = 0;
  client.on('qr_created', (data) => created_.push(data.qrId));
  client.on('heartbeat', () => {
    beats += 1;
  });
  client.start();
  await eventually(() => beats === 1);
  client.close();
  assert.deepEqual(created_, ['Q1']);
  assert.equal(client.stats.duplicatesDropped, 1);
});

test('resync is asked for whenever the server could not resume', async () => {
  const server = scriptedServer([
    { frames: [connection(false)] },
    { open: true, frames: [connection(false)] },
  ]);
  const client = newClient(server, { lastEventId: 'forgotten_1' });
  let resyncs = 0;
  client.on('resync', () => {
    resyncs += 1;
  });
  client.start();
  await eventually(() => resyncs === 2);
  client.close();
  assert.equal(server.requests[0].headers['Last-Event-ID'], 'forgotten_1');
});

for (const reason of ['key_revoked', 'token_expired']) {
  test(`stream_closed with ${reason} signs out and stops reconnecting`, async () => {
    const server = scriptedServer([
      { frames: [connection(false), frame('stream_closed', { reason })] },
    ]);
    const client = newClient(server);
    const signedOut = [];
    client.on('signed_out', (data) => signedOut.push(data.reason));
    client.start();
    await eventually(() => signedOut.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(client.state, STATES.SIGNED_OUT);
    assert.deepEqual(signedOut, [reason]);
    assert.equal(server.requests.length, 1);
  });
}

for (const reason of ['server_shutdown', 'slow_consumer']) {
  test(`stream_closed with ${reason} reconnects and resumes`, async () => {
    const server = scriptedServer([
      {
        frames: [
          connection(false),
          frame('account_balance_update', { newBalance: 1 }, 'balance_update_1_1'),
          frame('stream_closed', { reason }),
        ],
      },
      { open: true, frames: [connection(true)] },
    ]);
    const client = newClient(server);
    client.start();
    await eventually(() => client.stats.connections === 2);
    client.close();
    assert.equal(server.requests[1].headers['Last-Event-ID'], 'balance_update_1_1');
  });
}

test('a refused credential signs out with the server\'s code, without retrying', async () => {
  const server = scriptedServer([
    { status: 401, body: { success: false, error: { code: 'key_revoked' } } },
  ]);
  const client = newClient(server);
  const states = [];
  client.on('state', (state, meta) => states.push([state, meta.reason]));
  client.start();
  await eventually(() => client.state === STATES.SIGNED_OUT);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(server.requests.length, 1);
  assert.deepEqual(states.at(-1), ['signed_out', 'key_revoked']);
});

test('server errors and network failures are retried until a stream opens', async () => {
  const replies = [
    { status: 503, body: {} },
    { status: 429, body: {} },
    { open: true, frames: [connection(false)] },
  ];
  const scripted = scriptedServer(replies);
  let failuresLeft = 1;
  const fetch = (url, init) => {
    if (failuresLeft-- > 0) return Promise.reject(new TypeError('network down'));
    return scripted.fetch(url, init);
  };
  const client = newClient({ fetch });
  client.start();
  await eventually(() => client.state === STATES.CONNECTED);
  client.close();
  assert.equal(scripted.requests.length, 3);
});

test('a silent connection (no heartbeat) is abandoned after the idle timeout', async () => {
  const server = scriptedServer([
    { open: true, frames: [connection(false)] },
    { open: true, frames: [connection(true)] },
  ]);
  const client = newClient(server, { idleTimeoutMs: 40 });
  client.start();
  await eventually(() => client.stats.connections === 2);
  client.close();
});

test('the credential may be a function, asked again before every connection', async () => {
  const server = scriptedServer([
    { frames: [connection(false)] },
    { open: true, frames: [connection(true)] },
  ]);
  const tokens = ['first.jwt.token', 'second.jwt.token'];
  const client = newClient(server, { credential: async () => tokens.shift() });
  client.start();
  await eventually(() => client.stats.connections === 2);
  client.close();
  assert.deepEqual(
    server.requests.map((request) => request.headers.Authorization),
    ['Bearer first.jwt.token', 'Bearer second.jwt.token'],
  );
});

test('close() cancels a pending reconnection', async () => {
  const server = scriptedServer([{ frames: [connection(false)] }]);
  const client = newClient(server, { retryMs: 10000 });
  client.start();
  await eventually(() => client.state === STATES.RECONNECTING);
  client.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(server.requests.length, 1);
  assert.equal(client.state, STATES.CLOSED);
});

test('a throwing listener is reported and does not break the stream', async () => {
  const server = scriptedServer([
    {
      open: true,
      frames: [
        connection(false),
        frame('qr_created', { qrId: 'Q1' }, 'qr_created_Q1'),
        frame('qr_created', { qrId: 'Q2' }, 'qr_created_Q2'),
      ],
    },
  ]);
  const client = newClient(server);
  const errors = [];
  const created = [];
  client.on('error', (error) => errors.push(error.message));
  client.on('qr_created', (data) => {
    created.push(data.qrId);
    if (data.qrId === 'Q1') throw new Error('listener bug');
  });
  client.start();
  await eventually(() => created.length === 2);
  client.close();
  assert.deepEqual(errors, ['listener bug']);
  assert.equal(server.requests.length, 1);
});

test('unknown event names are refused when listening, to catch typos', () => {
  const client = newClient(scriptedServer([]));
  assert.throws(() => client.on('qr_paymnet', () => {}), TypeError);
});

test('the eventsource transport spends a ticket per connection and resumes by query', async () => {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.listeners = {};
      sources.push(this);
    }

    addEventListener(type, listener) {
      this.listeners[type] = listener;
    }

    close() {
      this.closed = true;
    }

    emit(type, data, lastEventId = '') {
      this.listeners[type]?.({ data: JSON.stringify(data), lastEventId });
    }
  }
  const server = scriptedServer([
    { status: 201, body: { success: true, data: { ticket: 'qrt_one', expiresIn: 60 } } },
    { status: 201, body: { success: true, data: { ticket: 'qrt_two', expiresIn: 60 } } },
  ]);
  const client = newClient(server, { transport: 'eventsource', EventSource: FakeEventSource });
  client.start();
  await eventually(() => sources.length === 1);
  sources[0].emit('connection', { resumed: false });
  sources[0].emit('qr_created', { qrId: 'Q1' }, 'qr_created_Q1');
  sources[0].onerror();
  await eventually(() => sources.length === 2);
  client.close();
  assert.ok(sources[0].closed, 'the failed EventSource must not retry with its spent ticket');
  assert.deepEqual(
    server.requests.map((request) => [request.method, request.url, request.headers.Authorization]),
    [
      ['POST', `${BASE}events/ticket`, 'Bearer qrk_test'],
      ['POST', `${BASE}events/ticket`, 'Bearer qrk_test'],
    ],
  );
  const first = new URL(sources[0].url);
  const second = new URL(sources[1].url);
  assert.equal(first.searchParams.get('ticket'), 'qrt_one');
  assert.equal(first.searchParams.get('lastEventId'), null);
  assert.equal(second.searchParams.get('ticket'), 'qrt_two');
  assert.equal(second.searchParams.get('lastEventId'), 'qr_created_Q1');
  assert.ok(!sources[1].url.includes('qrk_test'), 'the credential never goes into a URL');
});

test('the cookie transport lets the browser reconnect its EventSource, and asks again when it gives up', async () => {
  const sources = [];
  class FakeEventSource {
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = 0;
      this.listeners = {};
      sources.push(this);
    }

    addEventListener(type, listener) {
      this.listeners[type] = listener;
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }

    emit(type, data, lastEventId = '') {
      this.readyState = 1;
      this.listeners[type]?.({ data: JSON.stringify(data), lastEventId });
    }
  }
  const issued = { success: true, data: { ticket: 'qrt_x', expiresIn: 60, accountId: 7 } };
  const server = scriptedServer([
    { status: 201, body: issued },
    { status: 201, body: issued },
  ]);
  const client = newClient(server, { transport: 'cookie', EventSource: FakeEventSource });
  client.start();
  await eventually(() => sources.length === 1);
  const [source] = sources;
  assert.deepEqual(source.init, { withCredentials: true });
  source.emit('connection', { resumed: false });
  source.emit('qr_created', { qrId: 'Q1' }, 'qr_created_Q1');
  source.emit('stream_closed', { reason: 'server_shutdown' });
  source.readyState = 0; // the browser reconnects by itself
  source.onerror();
  assert.equal(client.state, STATES.RECONNECTING);
  source.emit('connection', { resumed: true, replayed: 0 });
  assert.equal(client.state, STATES.CONNECTED);
  assert.equal(sources.length, 1, 'a passing end must not open a second EventSource');
  assert.ok(!source.closed);
  source.readyState = 2; // a 401: the browser gave up
  source.onerror();
  await eventually(() => sources.length === 2);
  client.close();
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[1].method, 'POST');
  const second = new URL(sources[1].url);
  assert.equal(second.pathname, '/events/stream');
  assert.equal(second.searchParams.get('accountId'), '7');
  assert.equal(second.searchParams.get('lastEventId'), 'qr_created_Q1');
  assert.equal(second.searchParams.get('ticket'), null);
  assert.ok(!sources[1].url.includes('qrk_test'), 'the credential never goes into a URL');
});

test('the cookie transport signs out on a credential reason', async () => {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.listeners = {};
      sources.push(this);
    }

    addEventListener(type, listener) {
      this.listeners[type] = listener;
    }

    close() {
      this.closed = true;
    }
  }
  const issued = { success: true, data: { ticket: 'qrt_x', expiresIn: 60, accountId: 7 } };
  const client = newClient(scriptedServer([{ status: 201, body: issued }]), {
    transport: 'cookie',
    EventSource: FakeEventSource,
  });
  client.start();
  await eventually(() => sources.length === 1);
  sources[0].listeners.stream_closed({ data: JSON.stringify({ reason: 'key_revoked' }) });
  await eventually(() => client.state === STATES.SIGNED_OUT);
  assert.ok(sources[0].closed);
});

test('backoff doubles from the base up to the cap, jittered between half and all of it', () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.deepEqual(
    [0, 1, 2, 3, 10].map((attempt) => backoffDelay(attempt, 1000, 30000, low)),
    [500, 1000, 2000, 4000, 15000],
  );
  assert.ok(backoffDelay(2, 1000, 30000, high) < 4000);
  assert.ok(backoffDelay(2, 1000, 30000, high) > 3999);
  assert.equal(backoffDelay(50, 1000, 30000, low), 15000);
});

test('close() while the credential is being fetched opens no stream', async () => {
  const server = scriptedServer([{ open: true, frames: [connection(false)] }]);
  let asked = false;
  let release;
  const later = new Promise((resolve) => {
    release = resolve;
  });
  const client = newClient(server, {
    credential: () => {
      asked = true;
      return later;
    },
  });
  client.start();
  await eventually(() => asked);
  client.close();
  release('qrk_late');
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(server.requests.length, 0);
});

test('a stream ended at its token\'s expiry resumes at once with the next token, no sign-out', async () => {
  const expired = frame('stream_closed', { reason: 'token_expired', timestamp: 't' });
  const server = scriptedServer([
    { open: true, frames: [connection(false), frame('qr_created', { qrId: 'Q1' }, 'qr_created_Q1'), expired] },
    { open: true, frames: [connection(true), expired] },
    { open: true, frames: [connection(true)] },
  ]);
  const tokens = ['one.jwt.token', 'two.jwt.token', 'three.jwt.token'];
  const client = newClient(server, { credential: async () => tokens.shift(), retryMs: 10000 });
  const states = [];
  client.on('state', (state) => states.push(state));
  client.start();
  await eventually(() => client.stats.connections === 3, 500); // no 10 s backoff between
  client.close();
  assert.ok(!states.includes(STATES.SIGNED_OUT) && !states.includes(STATES.RECONNECTING));
  assert.deepEqual(
    server.requests.map((request) => [request.headers.Authorization, request.headers['Last-Event-ID']]),
    [
      ['Bearer one.jwt.token', undefined],
      ['Bearer two.jwt.token', 'qr_created_Q1'],
      ['Bearer three.jwt.token', 'qr_created_Q1'],
    ],
  );
});

test('a fixed credential still signs out when its stream ends at the token\'s expiry', async () => {
  const server = scriptedServer([
    { open: true, frames: [connection(false), frame('stream_closed', { reason: 'token_expired' })] },
  ]);
  const client = newClient(server, { credential: 'fixed.jwt.token' });
  client.start();
  await eventually(() => client.state === STATES.SIGNED_OUT);
  assert.equal(server.requests.length, 1);
});

test('after a token expiry, a refused next token signs out instead of looping', async () => {
  const server = scriptedServer([
    { open: true, frames: [connection(false), frame('stream_closed', { reason: 'token_expired' })] },
    { status: 401, body: { success: false, error: { code: 'token_expired' } } },
  ]);
  const client = newClient(server, { credential: async () => 'stale.jwt.token' });
  const reasons = [];
  client.on('signed_out', ({ reason }) => reasons.push(reason));
  client.start();
  await eventually(() => client.state === STATES.SIGNED_OUT);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(server.requests.length, 2);
  assert.deepEqual(reasons, ['token_expired']);
});
