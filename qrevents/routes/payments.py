"""Payments of the caller's account: the filtered list, the CSV export, the day's and week's
summary, and the release of a payment held for review."""

import csv
import io
import re
from datetime import date
from decimal import Decimal

from flask import Blueprint, Response, request

from models import Account

from ..auth import authenticate
from ..clock import iso, la_paz_today, utcnow
from ..envelope import success
from ..errors import ValidationFailed
from ..money import CURRENCIES, MAX_AMOUNT, from_cents, to_cents
from ..resources import page_json, payment_json
from ..services import payment_reports, payments
from ..services.payment_reports import PaymentFilter
from ..validation import page_args

bp = Blueprint("payments", __name__)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_AMOUNT = re.compile(r"[0-9]{1,8}(\.[0-9]{1,2})?\Z")
PAYER_MAX = 120
PERIODS = ("day", "week")

# The export's columns, in order (docs/CONTRACT.md "GET /payments.csv").
CSV_COLUMNS = (
    "transactionId",
    "qrId",
    "description",
    "amount",
    "currency",
    "senderName",
    "senderDocumentId",
    "senderAccount",
    "senderBankCode",
    "paymentDate",
    "createdAt",
    "review",
    "reviewReason",
    "releasedAt",
)
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@bp.get("/payments")
def list_payments():
    identity = authenticate()
    wanted = _payment_filter()
    limit, cursor = page_args()
    rows = payment_reports.list_payments(identity.account_id, wanted, limit=limit, cursor=cursor)
    return success("Pagos obtenidos", page_json(rows, payment_json, limit, lambda p: p.id))


@bp.get("/payments.csv")
def export_csv():
    """Every matching payment as CSV (UTF-8 with a BOM, so spreadsheets read the accents),
    oldest first, streamed batch by batch."""
    identity = authenticate()
    wanted = _payment_filter()
    account_id = identity.account_id

    def lines():
        yield "\ufeff" + _csv_line(CSV_COLUMNS)
        for batch in payment_reports.export_batches(account_id, wanted):
            yield "".join(_csv_line(_csv_row(payment)) for payment in batch)

    name = f"pagos-{wanted.first_day or 'inicio'}-{wanted.last_day or utcnow().date()}.csv"
    return Response(
        lines(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/payments/summary")
def payments_summary():
    """Total, count, average and per-hour (day) or per-day (week) totals, in La Paz time."""
    identity = authenticate()
    errors = {}
    period = request.args.get("period", "day")
    if period not in PERIODS:
        errors["period"] = "debe ser day o week"
    day = _date_arg("date", errors) or la_paz_today(utcnow())
    currency = request.args.get("currency")
    if currency is not None and currency not in CURRENCIES:
        errors["currency"] = f"debe ser una de {', '.join(CURRENCIES)}"
    if errors:
        raise ValidationFailed(fields=errors)
    if currency is None:
        currency = Account.get_by_id(identity.account_id).currency
    data = payment_reports.summary(identity.account_id, currency, period, day)
    return success("Resumen de pagos", data)


@bp.post('/payments/<safe_id("transactionId"):transaction_id>/release')
def release(transaction_id):
    identity = authenticate()
    payment = payments.release_payment(identity.account_id, transaction_id)
    return success("Pago liberado", payment_json(payment))


def _payment_filter():
    """``from``, ``to`` (La Paz days, ``YYYY-MM-DD``), ``minAmount``, ``maxAmount`` (``42.75``)
    and ``payer`` (part of the payer's name); every bad one named in one 422."""
    errors = {}
    first_day = _date_arg("from", errors)
    last_day = _date_arg("to", errors)
    if first_day and last_day and first_day > last_day:
        errors["to"] = "debe ser igual o posterior a from"
    min_cents = _amount_arg("minAmount", errors)
    max_cents = _amount_arg("maxAmount", errors)
    if min_cents is not None and max_cents is not None and min_cents > max_cents:
        errors["maxAmount"] = "debe ser mayor o igual que minAmount"
    payer = request.args.get("payer")
    if payer is not None:
        payer = payer.strip()
        if not payer or len(payer) > PAYER_MAX or not payer.isprintable():
            errors["payer"] = f"debe tener de 1 a {PAYER_MAX} caracteres visibles"
    if errors:
        raise ValidationFailed(fields=errors)
    return PaymentFilter(first_day, last_day, min_cents, max_cents, payer)


def _date_arg(name, errors):
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if not _ISO_DATE.match(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = "debe ser una fecha AAAA-MM-DD"
        return None


def _amount_arg(name, errors):
    raw = request.args.get(name)
    if raw is None:
        return None
    if not _AMOUNT.match(raw) or Decimal(raw) > MAX_AMOUNT:
        errors[name] = "debe ser un monto como 42.75 (punto decimal, hasta dos decimales)"
        return None
    return to_cents(Decimal(raw))


def _csv_row(payment):
    return (
        payment.transaction_id,
        payment.qr.qr_id,
        _inert(payment.description),
        str(from_cents(payment.amount_cents)),
        payment.currency,
        _inert(payment.sender_name),
        _inert(payment.sender_document_id),
        _inert(payment.sender_account),
        _inert(payment.sender_bank_code),
        iso(payment.payment_date),
        iso(payment.created_at),
        "true" if payment.review else "false",
        payment.review_reason or "",
        iso(payment.released_at) or "",
    )


def _inert(text):
    """Text a spreadsheet shows as text: a leading formula character gets a quote before it."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(values):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()
