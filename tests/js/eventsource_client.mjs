/**
 * The npm `eventsource` package as a user runs it, for tests/test_real_clients.py.
 *
 *   node eventsource_client.mjs URL [COOKIE]
 *
 * Opens one EventSource on URL (sending COOKIE, if given, as a browser would send the stream
 * cookie) and lets it reconnect by itself. Prints one JSON line per happening on stdout:
 * {kind: 'open'|'event'|'error', type?, id?, readyState}. Runs until killed.
 */

import { EventSource } from 'eventsource';

const [url, cookie] = process.argv.slice(2);
const TYPES = [
  'connection',
  'qr_created',
  'qr_payment',
  'qr_status_change',
  'account_balance_update',
  'stream_closed',
  'resync_required',
];

const options = {};
if (cookie) {
  // Node has no cookie jar: the cookie goes in by hand, on every (re)connection.
  options.fetch = (input, init) =>
    fetch(input, { ...init, headers: { ...init.headers, Cookie: cookie } });
}
const source = new EventSource(url, options);
const report = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

source.addEventListener('open', () => report({ kind: 'open', readyState: source.readyState }));
source.addEventListener('error', () => report({ kind: 'error', readyState: source.readyState }));
for (const type of TYPES) {
  source.addEventListener(type, (event) =>
    report({
      kind: 'event',
      type,
      id: event.lastEventId || null,
      data: JSON.parse(event.data),
      readyState: source.readyState,
    }),
  );
}
