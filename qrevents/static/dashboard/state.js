/**
 * What the dashboard knows about one account, kept consistent from two sources: a REST
 * snapshot (on first connection, and whenever the stream could not resume) and the stream's
 * events. Pure: no DOM, no network, so Node's test runner can pin it.
 *
 * While a snapshot is loading, events are held back and applied after it. Every event is
 * applied so that arriving twice, or after a snapshot that already includes it, changes
 * nothing: balances only move forward in the ledger's sequence, a status change applies only
 * to the status it starts from, QRs and payments are keyed by their ids.
 */

import { toCents } from './format.js';

export const LIST_SIZE = 30;

/** The ledger sequence number at the end of an `account_balance_update` id. */
export function movementSeq(eventId) {
  const match = /_(\d+)$/.exec(eventId || '');
  return match ? Number(match[1]) : null;
}

function qrFrom(data) {
  return {
    qrId: data.qrId,
    transactionId: data.transactionId,
    amountCents: toCents(data.amount),
    currency: data.currency,
    description: data.description,
    dueDate: data.dueDate,
    singleUse: data.singleUse,
    modifyAmount: data.modifyAmount,
    status: data.status,
  };
}

function paymentFrom(data) {
  return {
    transactionId: data.transactionId,
    qrId: data.qrId,
    amountCents: toCents(data.amount),
    currency: data.currency,
    senderName: data.senderName,
    description: data.description,
    paymentDate: data.paymentDate,
    // When it reached us: the REST answer's createdAt, or the moment the stream brought it.
    arrivedAt: data.createdAt || data.arrivedAt || null,
    review: Boolean(data.review),
    reviewReason: data.reviewReason || null,
    released: Boolean(data.releasedAt),
  };
}

/** A map ordered newest first, trimmed to `LIST_SIZE`. */
class RecentList {
  constructor() {
    this.items = new Map();
    this.rank = 0;
  }

  replace(itemsNewestFirst, keyOf) {
    this.items = new Map();
    this.rank = 0;
    for (const item of [...itemsNewestFirst].reverse()) this.add(keyOf(item), item);
  }

  add(key, item) {
    this.rank += 1;
    this.items.set(key, { ...item, key, rank: this.rank });
    if (this.items.size > LIST_SIZE) {
      const oldest = [...this.items.values()].reduce((a, b) => (a.rank < b.rank ? a : b));
      this.items.delete(oldest.key);
    }
  }

  get(key) {
    return this.items.get(key);
  }

  has(key) {
    return this.items.has(key);
  }

  delete(key) {
    this.items.delete(key);
  }

  newestFirst() {
    return [...this.items.values()].sort((a, b) => b.rank - a.rank);
  }
}

export class DashboardState {
  constructor() {
    this.account = null;
    this.balanceCents = null;
    this.availableCents = null;
    this.balanceSeq = -1;
    this.qrs = new RecentList();
    this.payments = new RecentList();
    this.held = new RecentList();
    this.syncing = false;
    this.pending = [];
  }

  /** Hold events back until `applySnapshot` (those already held stay, for a retried sync). */
  beginSync() {
    if (this.syncing) return;
    this.syncing = true;
    this.pending = [];
  }

  /**
   * Replace everything with a REST snapshot, then apply the events held back meanwhile.
   * `snapshot`: `{account, latestMovement, qrs, payments}` as the API returns them (account
   * from GET /accounts/me, latestMovement the newest of GET /accounts/me/movements or null,
   * lists newest first). Returns the effects of the held-back events.
   */
  applySnapshot({ account, latestMovement, qrs, payments }) {
    this.account = { id: account.id, name: account.name, currency: account.currency };
    const balances = latestMovement || account;
    this.balanceCents = toCents(balances.balance);
    this.availableCents = toCents(balances.availableBalance);
    this.balanceSeq = latestMovement ? latestMovement.seq : 0;
    this.qrs.replace(qrs.map(qrFrom), (qr) => qr.qrId);
    const all = payments.map(paymentFrom);
    this.payments.replace(all.slice(0, LIST_SIZE), (p) => p.transactionId);
    const held = all.filter((p) => p.review && !p.released);
    this.held.replace(held.slice(0, LIST_SIZE), (p) => p.transactionId);
    this.syncing = false;
    const effects = { notifications: [] };
    for (const [type, data, id] of this.pending.splice(0)) {
      effects.notifications.push(...this.apply(type, data, id).notifications);
    }
    return effects;
  }

  /** Apply one stream event: `{notifications}` lists payments to announce. */
  apply(type, data, id) {
    const effects = { notifications: [] };
    if (this.syncing) {
      this.pending.push([type, data, id]);
      return effects;
    }
    if (type === 'qr_created' && !this.qrs.has(data.qrId)) {
      this.qrs.add(data.qrId, qrFrom(data));
    } else if (type === 'qr_status_change') {
      const qr = this.qrs.get(data.qrId);
      if (qr && qr.status === data.previousStatus) qr.status = data.newStatus;
    } else if (type === 'qr_payment' && !this.payments.has(data.transactionId)) {
      const payment = paymentFrom(data);
      this.payments.add(payment.transactionId, payment);
      if (payment.review) this.held.add(payment.transactionId, payment);
      effects.notifications.push(payment);
    } else if (type === 'account_balance_update') {
      this.applyBalance(data, movementSeq(id));
    }
    return effects;
  }

  applyBalance(data, seq) {
    if (seq !== null && seq <= this.balanceSeq) return;
    if (seq !== null) this.balanceSeq = seq;
    this.balanceCents = toCents(data.newBalance);
    this.availableCents = toCents(data.newAvailableBalance);
    if (data.movementType === 'review_release' && data.transactionId) {
      this.held.delete(data.transactionId);
      const payment = this.payments.get(data.transactionId);
      if (payment) payment.released = true;
    }
  }

  /** Money received but held for review: counted in the balance, not yet available. */
  get heldCents() {
    return this.balanceCents === null ? null : this.balanceCents - this.availableCents;
  }
}
