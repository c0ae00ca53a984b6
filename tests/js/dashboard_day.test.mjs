// The dashboard's dates as typed and shown (dd/mm/aaaa on any browser locale), amounts typed
// with a comma or a dot, and the day/week summary kept live by the stream.
import assert from 'node:assert/strict';
import test from 'node:test';

import { formatDate, laPazDate, parseAmount, parseDate } from '../../qrevents/static/dashboard/format.js';
import { PeriodSummary } from '../../qrevents/static/dashboard/summary.js';

test('dates are typed day first, with slashes, dashes or dots', () => {
  assert.equal(parseDate('15/01/2026'), '2026-01-15');
  assert.equal(parseDate(' 5/1/2026 '), '2026-01-05');
  assert.equal(parseDate('15-01-2026'), '2026-01-15');
  assert.equal(parseDate('15.01.2026'), '2026-01-15');
  assert.equal(parseDate('29/02/2028'), '2028-02-29');
});

test('dates that are not on the calendar, or not day first, are refused', () => {
  for (const text of ['29/02/2026', '31/04/2026', '00/01/2026', '15/13/2026', '01/15/2026',
    '2026-01-15', '15/01/26', '', 'mañana', '15/01/1999', '15/01/2026x']) {
    assert.equal(parseDate(text), null, text);
  }
});

test('dates are shown day first whatever the runtime locale', () => {
  assert.equal(formatDate('2026-01-05'), '05/01/2026');
  assert.equal(formatDate('2026-12-31T23:00:00-04:00'), '31/12/2026');
  assert.equal(formatDate(''), '');
});

test('the La Paz date of a moment is four hours behind UTC', () => {
  assert.equal(laPazDate('2026-01-15T03:59:59.000Z'), '2026-01-14');
  assert.equal(laPazDate('2026-01-15T04:00:00.000Z'), '2026-01-15');
});

test('amounts are typed with a comma or a dot before the centavos', () => {
  assert.equal(parseAmount('42,75'), 42.75);
  assert.equal(parseAmount('42.75'), 42.75);
  assert.equal(parseAmount('1.100,50'), 1100.5);
  assert.equal(parseAmount('42,7'), 42.7);
  assert.equal(parseAmount('42,755'), null);
  assert.equal(parseAmount('0'), null);
});

function daySummary() {
  const buckets = Array.from({ length: 24 }, (_, hour) => ({
    start: `2026-01-15T${String(hour).padStart(2, '0')}:00:00-04:00`,
    count: hour === 9 ? 2 : 0,
    total: hour === 9 ? 30.5 : 0,
  }));
  const summary = new PeriodSummary();
  summary.replace({ period: 'day', from: '2026-01-15', to: '2026-01-15', currency: 'BOB', buckets });
  return summary;
}

const paid = (transactionId, paymentDate, amount = 10.25, currency = 'BOB') => ({
  transactionId,
  paymentDate,
  amount,
  currency,
});

test('a streamed payment of the day lands in its La Paz hour, once', () => {
  const summary = daySummary();
  assert.equal(summary.count, 2);
  assert.equal(summary.totalCents, 3050);
  assert.equal(summary.averageCents, 1525);
  assert.ok(summary.applyPayment(paid('T1', '2026-01-15T17:30:00.000Z'))); // 13:30 in La Paz
  assert.ok(!summary.applyPayment(paid('T1', '2026-01-15T17:30:00.000Z')));
  assert.equal(summary.buckets[13].count, 1);
  assert.equal(summary.buckets[13].cents, 1025);
  assert.equal(summary.count, 3);
  assert.equal(summary.averageCents, 1358); // 4075 / 3 = 1358.33
});

test('payments of another day or currency are not counted in the day', () => {
  const summary = daySummary();
  assert.ok(!summary.applyPayment(paid('T2', '2026-01-15T03:59:00.000Z'))); // the 14th there
  assert.ok(summary.applyPayment(paid('T3', '2026-01-16T03:59:00.000Z'))); // 23:59 on the 15th
  assert.ok(!summary.applyPayment(paid('T4', '2026-01-15T15:00:00.000Z', 5, 'USD')));
  assert.equal(summary.buckets[23].count, 1);
  assert.equal(summary.count, 3);
});

test('a week summary counts a payment in its day', () => {
  const summary = new PeriodSummary();
  const buckets = Array.from({ length: 7 }, (_, i) => ({
    start: `2026-01-${String(9 + i).padStart(2, '0')}T00:00:00-04:00`,
    count: 0,
    total: 0,
  }));
  summary.replace({ period: 'week', from: '2026-01-09', to: '2026-01-15', currency: 'BOB', buckets });
  assert.ok(summary.applyPayment(paid('T1', '2026-01-12T02:00:00.000Z'))); // the 11th there
  assert.equal(summary.buckets[2].count, 1);
  assert.ok(!summary.applyPayment(paid('T2', '2026-01-16T12:00:00.000Z')));
});

test('a new snapshot replaces what the stream added', () => {
  const summary = daySummary();
  summary.applyPayment(paid('T1', '2026-01-15T17:30:00.000Z'));
  const fresh = daySummary();
  summary.replace(fresh.data && { ...fresh.data, buckets: fresh.data.buckets.map((b) => ({ ...b, total: b.cents / 100 })) });
  assert.equal(summary.count, 2);
  assert.ok(summary.applyPayment(paid('T1', '2026-01-15T17:30:00.000Z')));
});
