"""The merchant's view of received payments: filtered lists, the CSV export, and the day's
and week's totals, each read with one query.

Days are La Paz days (UTC-4 all year) of the bank's payment date (``paymentDate``), the
moment the payer paid; the arrival time (``createdAt``) is when the bank told us.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import peewee as pw

from models import Payment, Qr, database

from ..clock import LA_PAZ
from ..money import from_cents

EXPORT_BATCH = 500


@dataclass(frozen=True)
class PaymentFilter:
    """What a merchant looks for; None means no bound."""

    first_day: date | None = None
    last_day: date | None = None
    min_cents: int | None = None
    max_cents: int | None = None
    payer: str | None = None


def day_start_utc(day):
    """The naive UTC moment a La Paz day starts."""
    return datetime.combine(day, time(), tzinfo=LA_PAZ).astimezone(UTC).replace(tzinfo=None)


def _filtered(account_id, wanted):
    # Of the QR, its id only: not its PNG.
    query = Payment.select(Payment, Qr.id, Qr.qr_id).join(Qr).where(Payment.account == account_id)
    if wanted.first_day is not None:
        query = query.where(Payment.payment_date >= day_start_utc(wanted.first_day))
    if wanted.last_day is not None:
        end = day_start_utc(wanted.last_day + timedelta(days=1))
        query = query.where(Payment.payment_date < end)
    if wanted.min_cents is not None:
        query = query.where(Payment.amount_cents >= wanted.min_cents)
    if wanted.max_cents is not None:
        query = query.where(Payment.amount_cents <= wanted.max_cents)
    if wanted.payer:
        # Case-insensitive, with the LIKE wildcards of the search text taken literally.
        escaped = wanted.payer.lower().replace("\\", "\\\\").replace("%", "\\%")
        escaped = escaped.replace("_", "\\_")
        # Spelled out: Peewee turns a LIKE on SQLite into a case-sensitive GLOB.
        matches = pw.NodeList(
            (
                pw.fn.LOWER(Payment.sender_name),
                pw.SQL("LIKE"),
                pw.Value(f"%{escaped}%"),
                pw.SQL("ESCAPE '\\'"),
            )
        )
        query = query.where(matches)
    return query


def list_payments(account_id, wanted, *, limit, cursor):
    """Newest first; ``cursor`` is the last row id of the previous page."""
    query = _filtered(account_id, wanted)
    if cursor:
        query = query.where(Payment.id < cursor)
    return list(query.order_by(Payment.id.desc()).limit(limit))


def export_batches(account_id, wanted):
    """Every matching payment, oldest first, in batches each read with its own short
    connection: a long download holds no connection between batches."""
    after = 0
    while True:
        with database.connection_context():
            batch = list(
                _filtered(account_id, wanted)
                .where(Payment.id > after)
                .order_by(Payment.id)
                .limit(EXPORT_BATCH)
            )
        if not batch:
            return
        yield batch
        after = batch[-1].id


def summary(account_id, currency, period, day):
    """Totals of ``currency`` received in the La Paz ``day`` (per hour, ``period="day"``) or
    in the seven days ending with it (per day, ``period="week"``): one GROUP BY query."""
    if period == "day":
        first_day, buckets = day, 24
    else:
        first_day, buckets = day - timedelta(days=6), 7
    start = day_start_utc(first_day)
    end = day_start_utc(day + timedelta(days=1))
    bucket = _bucket_expression(period)
    rows = (
        Payment.select(
            bucket.alias("bucket"),
            pw.fn.COUNT(Payment.id).alias("count"),
            pw.fn.SUM(Payment.amount_cents).alias("cents"),
        )
        .where(
            (Payment.account == account_id)
            & (Payment.currency == currency)
            & (Payment.payment_date >= start)
            & (Payment.payment_date < end)
        )
        .group_by(bucket)
        .tuples()
    )
    counts = [0] * buckets
    cents = [0] * buckets
    for key, count, total in rows:
        index = int(key) if period == "day" else (date.fromisoformat(key) - first_day).days
        counts[index] += count
        cents[index] += int(total)
    total_cents, total_count = sum(cents), sum(counts)
    bucket_width = timedelta(hours=1) if period == "day" else timedelta(days=1)
    return {
        "period": period,
        "from": first_day.isoformat(),
        "to": day.isoformat(),
        "timeZone": "America/La_Paz",
        "currency": currency,
        "count": total_count,
        "total": from_cents(total_cents),
        "average": from_cents(_half_up(total_cents, total_count)) if total_count else None,
        "buckets": [
            {
                "start": _local_iso(start + bucket_width * index),
                "count": counts[index],
                "total": from_cents(cents[index]),
            }
            for index in range(buckets)
        ],
    }


def _half_up(cents, count):
    """``cents / count`` to the nearest centavo, halves up (as a till rounds)."""
    return (2 * cents + count) // (2 * count)


def _bucket_expression(period):
    """The La Paz hour (``"00"``..``"23"``) or day (``"2026-01-15"``) of a payment, in SQL."""
    if isinstance(database.obj, pw.PostgresqlDatabase):
        pattern = "HH24" if period == "day" else "YYYY-MM-DD"
        local = pw.NodeList((Payment.payment_date, pw.SQL("- INTERVAL '4 hours'")))
        return pw.fn.to_char(local, pattern)
    pattern = "%H" if period == "day" else "%Y-%m-%d"
    return pw.fn.strftime(pattern, Payment.payment_date, "-4 hours")


def _local_iso(moment_utc):
    """``2026-01-15T10:00:00-04:00``: a bucket's start as the merchant's clock shows it."""
    return (moment_utc + LA_PAZ.utcoffset(None)).strftime("%Y-%m-%dT%H:%M:%S") + "-04:00"
