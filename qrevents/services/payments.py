"""Bank payments: recorded exactly once, always credited, held for review when anomalous."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from models import Payment, Qr
from models.statements import get_row, insert

from .. import events
from ..clock import iso, utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from .eventlog import account_change
from .ledger import post_movement
from .qrs import set_status


@dataclass(frozen=True)
class PaymentNotice:
    """The bank's notification of a payment, as validated at the edge."""

    qr_id: str
    transaction_id: str
    amount_cents: int
    currency: str
    sender_name: str
    sender_document_id: str
    sender_account: str
    sender_bank_code: str
    description: str
    payment_date: datetime
    payment_time: str

    def fingerprint(self):
        """Same notification, same fingerprint: a bank retry, not a new payment."""
        fields = dict(vars(self))  # flat values: asdict's deep copy buys nothing
        fields["payment_date"] = iso(self.payment_date)
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()


def review_reason(qr, notice):
    """Why a payment must wait for a person before its money is available, or None.

    A payment is never refused for these: the bank has already moved the money.
    """
    if qr.status != "active":
        return f"qr_{qr.status}"
    if notice.payment_date > qr.due_date:
        return "past_due_date"
    if not qr.modify_amount and notice.amount_cents != qr.amount_cents:
        return "amount_mismatch"
    return None


def post_payment(notice, sync_source="payment"):
    """``(payment, duplicate)``: record, credit, update the QR, log and announce, once.

    ``sync_source`` names, in the single-use QR's ``qr_status_change``, who told us:
    ``payment`` (the bank's notification), ``bank_api`` (we asked the bank).
    """
    found = get_row(Qr, Qr.qr_id, notice.qr_id, fields=(Qr.id, Qr.account))
    if found is None:
        raise NotFound("El QR no existe")
    fingerprint = notice.fingerprint()
    with account_change(found.account_id) as change:
        qr = get_row(Qr, Qr.id, found.id)  # again under the lock: its status may have moved
        if notice.currency != qr.currency:
            # A reused transactionId is a 409 whatever else is wrong with the notice.
            existing = _earlier_notice(notice.transaction_id, fingerprint)
            if existing is not None:
                return existing, True
            raise ValidationFailed(
                fields={"currency": f"debe ser la moneda del QR ({qr.currency})"}
            )
        reason = review_reason(qr, notice)
        payment = Payment(
            transaction_id=notice.transaction_id,
            account=qr.account_id,
            qr=qr,  # the instance: the response reads payment.qr without another query
            amount_cents=notice.amount_cents,
            currency=notice.currency,
            sender_name=notice.sender_name,
            sender_document_id=notice.sender_document_id,
            sender_account=notice.sender_account,
            sender_bank_code=notice.sender_bank_code,
            description=notice.description or qr.description,  # BANECO may omit it
            payment_date=notice.payment_date,
            payment_time=notice.payment_time,
            review=reason is not None,
            review_reason=reason,
            fingerprint=fingerprint,
            created_at=utcnow(),
        )
        # The idempotency check is the INSERT itself: an earlier payment with this
        # transactionId (of any account) wins, and this notice is its retry or a 409.
        if not insert(payment, unless_exists=Payment.transaction_id):
            return _earlier_notice(notice.transaction_id, fingerprint), True
        used = qr.single_use and reason is None
        previous_status = set_status(qr, "used") if used else qr.status
        change.record(events.qr_payment(payment, qr))
        post_movement(
            change,
            "qr_payment_held" if reason else "qr_payment",
            notice.amount_cents,
            description="Pago QR retenido para revisión" if reason else "Pago QR recibido",
            qr_id=qr.qr_id,
            transaction_id=payment.transaction_id,
        )
        if used:
            change.record(events.qr_status_change(qr, previous_status, sync_source))
    return payment, False


def _earlier_notice(transaction_id, fingerprint):
    """The payment this notice repeats, or None; 409 when the id came with other data."""
    existing = Payment.get_or_none(Payment.transaction_id == transaction_id)
    if existing is not None and existing.fingerprint != fingerprint:
        raise Conflict(
            "Este transactionId ya se notificó con otros datos", code="transaction_id_reused"
        )
    return existing


def release_payment(account_id, transaction_id):
    """A person accepts a held payment: its money becomes available."""
    with account_change(account_id) as change:
        payment = Payment.get_or_none(
            (Payment.transaction_id == transaction_id) & (Payment.account == account_id)
        )
        if payment is None:
            raise NotFound("El pago no existe")
        if not payment.review:
            raise Conflict("Este pago no está retenido para revisión", code="not_held")
        if payment.released_at is not None:
            raise Conflict("Este pago ya fue liberado", code="already_released")
        payment.released_at = utcnow()
        payment.save()
        post_movement(
            change,
            "review_release",
            payment.amount_cents,
            description="Pago QR liberado tras revisión",
            qr_id=payment.qr.qr_id,
            transaction_id=payment.transaction_id,
        )
    return payment
