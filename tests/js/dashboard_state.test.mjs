// The dashboard's model (REST snapshot + stream events) and its money formatting.
import assert from 'node:assert/strict';
import test from 'node:test';

import { formatMoney, parseAmount, toCents } from '../../qrevents/static/dashboard/format.js';
import { DashboardState, LIST_SIZE, movementSeq } from '../../qrevents/static/dashboard/state.js';

const ACCOUNT = { id: 7, name: 'Comercio', currency: 'BOB', balance: 0, availableBalance: 0 };

function qr(qrId, status = 'active') {
  return {
    qrId,
    transactionId: `T${qrId}`,
    amount: 100.5,
    currency: 'BOB',
    description: 'Pago',
    dueDate: '2026-01-16T03:59:59.999Z',
    singleUse: true,
    modifyAmount: false,
    status,
  };
}

function payment(transactionId, extra = {}) {
  return {
    transactionId,
    qrId: 'Q1',
    amount: 100.5,
    currency: 'BOB',
    senderName: 'Juan Pérez',
    description: 'Pago',
    paymentDate: '2026-01-15T10:30:00.000Z',
    review: false,
    reviewReason: null,
    ...extra,
  };
}

function balance(newBalance, newAvailableBalance, extra = {}) {
  return { movementType: 'qr_payment', newBalance, newAvailableBalance, ...extra };
}

function loaded(snapshot = {}) {
  const state = new DashboardState();
  state.beginSync();
  const empty = { account: ACCOUNT, latestMovement: null, qrs: [], payments: [] };
  state.applySnapshot({ ...empty, ...snapshot });
  return state;
}

test('money reads as Bolivians write it', () => {
  assert.equal(formatMoney(110050), 'Bs 1.100,50');
  assert.equal(formatMoney(5), 'Bs 0,05');
  assert.equal(formatMoney(0), 'Bs 0,00');
  assert.equal(formatMoney(9999999999), 'Bs 99.999.999,99');
  assert.equal(formatMoney(-120000), '-Bs 1.200,00');
  assert.equal(formatMoney(10000, 'USD'), '$us 100,00');
});

test('API amounts (two decimals) become exact centavos despite float arithmetic', () => {
  assert.equal(toCents(100.5), 10050);
  assert.equal(toCents(0.29), 29);
  assert.equal(toCents(4.35), 435);
  assert.equal(toCents(99999999.99), 9999999999);
});

test('typed amounts accept the comma or the dot, and nothing else', () => {
  assert.equal(parseAmount('1.100,50'), 1100.5);
  assert.equal(parseAmount('100,5'), 100.5);
  assert.equal(parseAmount('100.50'), 100.5);
  assert.equal(parseAmount('1.100'), 1100);
  assert.equal(parseAmount(' 25 '), 25);
  for (const bad of ['', '0', '0,00', '1,234', '12.345.6', 'abc', '-5', '123456789']) {
    assert.equal(parseAmount(bad), null, bad);
  }
});

test('the balance comes from the newest movement and only ever moves forward', () => {
  const state = loaded({ latestMovement: { seq: 4, balance: 200, availableBalance: 150 } });
  assert.equal(state.balanceCents, 20000);
  assert.equal(state.heldCents, 5000);
  state.apply('account_balance_update', balance(100, 100), 'balance_update_1_3');
  assert.equal(state.balanceCents, 20000, 'an event older than the snapshot is ignored');
  state.apply('account_balance_update', balance(300.25, 250.25), 'balance_update_2_5');
  assert.equal(state.balanceCents, 30025);
  state.apply('account_balance_update', balance(300.25, 250.25), 'balance_update_2_5');
  assert.equal(state.balanceSeq, 5);
});

test('events that arrive while a snapshot loads are applied after it, once', () => {
  const state = new DashboardState();
  state.beginSync();
  const live = [
    ['qr_created', qr('Q2'), 'qr_created_Q2'],
    ['qr_payment', payment('P1'), 'qr_payment_P1'],
    ['account_balance_update', balance(100.5, 100.5), 'balance_update_9_1'],
    ['qr_status_change', { qrId: 'Q2', previousStatus: 'active', newStatus: 'used' }, 'x_1'],
  ];
  for (const [type, data, id] of live) {
    assert.deepEqual(state.apply(type, data, id).notifications, []);
  }
  // The snapshot was read before the payment: it knows Q1 and Q2, no payment, no movement.
  const effects = state.applySnapshot({
    account: ACCOUNT,
    latestMovement: null,
    qrs: [qr('Q2'), qr('Q1')],
    payments: [],
  });
  assert.deepEqual(effects.notifications.map((p) => p.transactionId), ['P1']);
  assert.deepEqual(state.qrs.newestFirst().map((q) => [q.qrId, q.status]), [
    ['Q2', 'used'],
    ['Q1', 'active'],
  ]);
  assert.equal(state.balanceCents, 10050);
  assert.deepEqual(state.payments.newestFirst().map((p) => p.transactionId), ['P1']);
});

test('a payment already in the snapshot is neither listed twice nor announced', () => {
  const state = new DashboardState();
  state.beginSync();
  state.apply('qr_payment', payment('P1'), 'qr_payment_P1');
  const effects = state.applySnapshot({
    account: ACCOUNT,
    latestMovement: null,
    qrs: [],
    payments: [payment('P1')],
  });
  assert.deepEqual(effects.notifications, []);
  assert.equal(state.payments.newestFirst().length, 1);
});

test('a status change applies only to the status it starts from', () => {
  // The snapshot already shows the QR used; the stale active -> used arrives after it.
  const state = loaded({ qrs: [qr('Q1', 'used')] });
  state.apply('qr_status_change', { qrId: 'Q1', previousStatus: 'active', newStatus: 'used' });
  state.apply('qr_status_change', { qrId: 'Q1', previousStatus: 'used', newStatus: 'completed' });
  assert.equal(state.qrs.get('Q1').status, 'completed');
  state.apply('qr_status_change', { qrId: 'Q1', previousStatus: 'active', newStatus: 'expired' });
  assert.equal(state.qrs.get('Q1').status, 'completed', 'a late change never undoes a newer one');
});

test('a held payment is listed until its release arrives', () => {
  const released = payment('OLD', { review: true, releasedAt: '2026-01-01T00:00:00.000Z' });
  const state = loaded({ payments: [released] });
  assert.equal(state.held.newestFirst().length, 0, 'a released payment is not held');
  const { notifications } = state.apply(
    'qr_payment',
    payment('P2', { review: true, reviewReason: 'qr_not_active' }),
    'qr_payment_P2',
  );
  assert.equal(notifications[0].review, true);
  assert.deepEqual(state.held.newestFirst().map((p) => p.transactionId), ['P2']);
  state.apply(
    'account_balance_update',
    balance(100.5, 100.5, { movementType: 'review_release', transactionId: 'P2' }),
    'balance_update_5_2',
  );
  assert.equal(state.held.newestFirst().length, 0);
  assert.equal(state.payments.get('P2').released, true);
});

test('lists keep the newest entries only', () => {
  const state = loaded();
  for (let i = 0; i < LIST_SIZE + 5; i += 1) state.apply('qr_created', qr(`Q${i}`));
  const shown = state.qrs.newestFirst();
  assert.equal(shown.length, LIST_SIZE);
  assert.equal(shown[0].qrId, `Q${LIST_SIZE + 4}`);
  assert.equal(shown.at(-1).qrId, 'Q5');
});

test('the movement sequence is read from the end of a balance event id', () => {
  assert.equal(movementSeq('balance_update_1705312800000_12'), 12);
  assert.equal(movementSeq(null), null);
});
