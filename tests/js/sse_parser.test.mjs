// The incremental text/event-stream parser of qrevents.js, against the WHATWG rules.
import assert from 'node:assert/strict';
import test from 'node:test';

import { SseParser } from '../../qrevents/static/qrevents.js';

function parse(chunks, lastEventId = '') {
  const events = [];
  const retries = [];
  const parser = new SseParser({
    lastEventId,
    onEvent: (event) => events.push(event),
    onRetry: (ms) => retries.push(ms),
  });
  for (const chunk of chunks) parser.push(chunk);
  return { events, retries };
}

const STREAM =
  'retry: 5000\n\n' +
  'event: connection\ndata: {"resumed":false}\n\n' +
  ': a comment line\n' +
  'id: qr_created_1\nevent: qr_created\ndata: {"qrId":"1"}\n\n' +
  'event: heartbeat\ndata: {"timestamp":"t"}\n\n';

test('events, ids and retry are read as the server writes them', () => {
  const { events, retries } = parse([STREAM]);
  assert.deepEqual(retries, [5000]);
  assert.deepEqual(events, [
    { type: 'connection', data: '{"resumed":false}', lastEventId: '' },
    { type: 'qr_created', data: '{"qrId":"1"}', lastEventId: 'qr_created_1' },
    // a frame without id keeps the last one, so a resume never names a heartbeat
    { type: 'heartbeat', data: '{"timestamp":"t"}', lastEventId: 'qr_created_1' },
  ]);
});

test('any split into chunks gives the same events, for LF, CRLF and CR line ends', () => {
  for (const newline of ['\n', '\r\n', '\r']) {
    const text = STREAM.replaceAll('\n', newline);
    const whole = parse([text]);
    for (let cut = 1; cut < text.length; cut += 1) {
      const split = parse([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(split, whole, `newline ${JSON.stringify(newline)}, cut at ${cut}`);
    }
    const byChar = parse([...text]);
    assert.deepEqual(byChar, whole);
  }
});

test('multi-line data is joined with newlines and one leading space is dropped', () => {
  const { events } = parse(['data:first\ndata:  second\ndata\n\n']);
  assert.equal(events[0].data, 'first\n second\n');
  assert.equal(events[0].type, 'message');
});

test('a frame without data is not dispatched but its id still counts', () => {
  const { events } = parse(['id: seen\nevent: nothing\n\ndata: x\n\n']);
  assert.deepEqual(events, [{ type: 'message', data: 'x', lastEventId: 'seen' }]);
});

test('an unfinished frame waits for its blank line', () => {
  const { events } = parse(['event: qr_payment\ndata: {}\n']);
  assert.deepEqual(events, []);
});

test('a retry that is not a number and an id with NUL are ignored', () => {
  const { events, retries } = parse(['retry: soon\nid: a\0b\ndata: x\n\n'], 'before');
  assert.deepEqual(retries, []);
  assert.equal(events[0].lastEventId, 'before');
});
