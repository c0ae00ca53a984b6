/**
 * Today at a glance: the server's summary of a day (per hour) or a week (per day), kept live
 * by the stream's payments. Pure, so Node's test runner can pin it.
 *
 * The server's totals are the truth (`replace`); a payment arriving on the stream is added to
 * its bucket at once (`applyPayment`) and counted once, even if the next summary already
 * holds it: the page then asks the server again and replaces, so it never drifts from the
 * ledger for longer than one request.
 */

import { laPazDate, toCents } from './format.js';

export class PeriodSummary {
  constructor() {
    this.data = null;
    this.counted = new Set();
  }

  /** The answer of GET /payments/summary. */
  replace(data) {
    this.data = {
      ...data,
      buckets: data.buckets.map((bucket) => ({
        start: bucket.start,
        count: bucket.count,
        cents: toCents(bucket.total),
      })),
    };
    this.counted = new Set();
  }

  /** Add a `qr_payment`'s data to its bucket; false when it is outside the period or known. */
  applyPayment(payment) {
    if (!this.data || payment.currency !== this.data.currency) return false;
    if (this.counted.has(payment.transactionId)) return false;
    const index = this.bucketOf(payment.paymentDate);
    if (index === null) return false;
    this.counted.add(payment.transactionId);
    const bucket = this.data.buckets[index];
    bucket.count += 1;
    bucket.cents += toCents(payment.amount);
    return true;
  }

  bucketOf(paymentDate) {
    const day = laPazDate(paymentDate);
    if (day < this.data.from || day > this.data.to) return null;
    if (this.data.period === 'week') {
      const index = this.data.buckets.findIndex((bucket) => bucket.start.slice(0, 10) === day);
      return index < 0 ? null : index;
    }
    // La Paz is UTC-4 all year: its hour is the UTC hour minus four.
    return (new Date(paymentDate).getUTCHours() + 20) % 24;
  }

  get count() {
    return this.data ? this.data.buckets.reduce((sum, bucket) => sum + bucket.count, 0) : 0;
  }

  get totalCents() {
    return this.data ? this.data.buckets.reduce((sum, bucket) => sum + bucket.cents, 0) : 0;
  }

  /** Centavos, halves rounded up, as the server rounds; null with no payment. */
  get averageCents() {
    const count = this.count;
    return count ? Math.floor((2 * this.totalCents + count) / (2 * count)) : null;
  }

  get buckets() {
    return this.data ? this.data.buckets : [];
  }
}
