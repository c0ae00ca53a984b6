"""What the bank knows, brought into the ledger: its payments and its QR statuses.

Three callers: an unsigned payment notification (a trigger: ask the bank about that QR),
a refused cancellation (ask what became of the QR), and the reconciliation round (the
paid QRs of the day and the day before, then the status of the least recently checked
active QRs). Every payment goes through ``post_payment``, so idempotency by
``transactionId``, the events and the ledger are the notification's own; nothing is
recorded twice however many of these meet. No database connection is held while the bank
answers.
"""

import logging
from datetime import timedelta

from models import Payment, Qr, connection

from .. import metrics
from ..banks import BankError
from ..clock import la_paz_today, utcnow
from ..errors import ApiError
from ..logs import log_event
from ..notices import payment_notice
from . import bank_links
from .banking import bank_of
from .eventlog import account_change
from .payments import post_payment
from .qrs import TRANSITIONS, change_status

# The bank's statusQRCode, as the adapter names it, to what it moves an active QR to.
PAID, CANCELLED, ACTIVE = "paid", "cancelled", "active"


def record_bank_payments(payments, *, source, sync_source="bank_api"):
    """Record the bank's PaymentQR dicts; the transactionIds newly recorded (not duplicates).

    ``sync_source`` is ``bank_api`` when we asked the bank (reconciliation, status sync) and
    ``payment`` when its notification made us ask (the payment is the notification's).

    A payment that cannot be recorded (a QR that is not ours, a transactionId we hold with
    other data) is logged and counted as a disagreement, never raised: the others still go.
    """
    recorded = []
    for raw in payments:
        try:
            notice = payment_notice(raw if isinstance(raw, dict) else {})
            with connection():
                payment, duplicate = post_payment(notice, sync_source)
        except ApiError as error:
            metrics.BANK_DISAGREEMENTS.labels("payment_unrecorded").inc()
            log_event(
                "bank_payment_unrecorded",
                logging.WARNING,
                transactionId=raw.get("transactionId") if isinstance(raw, dict) else None,
                source=source,
                code=error.code,
                detail=error.fields or error.message,
            )
            continue
        if not duplicate:
            recorded.append(payment.transaction_id)
    return recorded


def sync_qr(account_id, link, qr_id, sync_source="bank_api"):
    """Ask the bank about one QR; record its payments and move the QR forward.

    Returns ``(the bank's QrStatus, transactionIds recorded now)``; raises ``BankError``
    when the bank cannot say.
    """
    status = bank_of(link).status(qr_id)
    payments = [p for p in status.payments if isinstance(p, dict) and p.get("qrId") == qr_id]
    recorded = record_bank_payments(payments, source="statusQR", sync_source=sync_source)
    with connection():
        _apply_status(account_id, qr_id, status)
    return status, recorded


def _apply_status(account_id, qr_id, status):
    """Move the QR as the bank says, forward only; a disagreement is logged and counted."""
    with account_change(account_id) as change:
        qr = Qr.get_or_none((Qr.qr_id == qr_id) & (Qr.account == account_id))
        if qr is None:
            return
        Qr.update(bank_checked_at=utcnow()).where(Qr.id == qr.id).execute()
        target = _target(qr, status.status)
        if target and target in TRANSITIONS.get(qr.status, ()):
            change_status(change, qr, target, "bank_api")
        elif status.status == ACTIVE and _holds_payment(qr):
            _disagree("active_with_payment", qr, status)
        elif status.status == CANCELLED and qr.status in ("used", "completed"):
            _disagree("cancelled_with_payment", qr, status)
        elif status.status not in (PAID, CANCELLED, ACTIVE):
            _disagree("unknown_status", qr, status)


def _target(qr, bank_status):
    if bank_status == CANCELLED:
        return "cancelled"
    if bank_status == PAID and qr.single_use:
        return "used"  # paid once: a single-use QR takes no more
    return None


def _holds_payment(qr):
    return Payment.select().where(Payment.qr == qr.id).exists()


def _disagree(kind, qr, status):
    metrics.BANK_DISAGREEMENTS.labels(kind).inc()
    log_event(
        "bank_disagreement",
        logging.WARNING,
        kind=kind,
        qrId=qr.qr_id,
        accountId=qr.account_id,
        bankStatus=status.status,
        bankCode=status.code,
        status=qr.status,
    )


def confirm_notice(qr_id, transaction_id):
    """An unsigned notification: ask the bank about the QR and record what it lists.

    ``(confirmed, recorded now)``: whether the bank lists ``transaction_id`` for this QR
    and is recorded, and the transactionIds this call recorded. A QR that is not ours is
    not confirmed; ``BankError`` when the bank cannot say.
    """
    with connection():
        qr = Qr.get_or_none(Qr.qr_id == qr_id)
        if qr is None:
            return False, []
        link = bank_links.link_of(qr.account_id)
    status, recorded = sync_qr(qr.account_id, link, qr_id, sync_source="payment")
    listed = {
        p.get("transactionId")
        for p in status.payments
        if isinstance(p, dict) and p.get("qrId") == qr_id
    }
    with connection():
        held = Payment.select().where(Payment.transaction_id == transaction_id).exists()
    return transaction_id in listed and held, recorded


def reconcile_account(account_id, link, day, batch):
    """One round for one account: the paid QRs of ``day`` and the day before, then the
    status of its ``batch`` least recently checked active QRs. Returns the payments
    recovered (recorded now, missed by the notifications)."""
    bank = bank_of(link)
    recovered = []
    for paid_day in (day - timedelta(days=1), day):
        recovered += record_bank_payments(bank.paid_on(paid_day), source="paidQR")
    if recovered:
        metrics.BANK_PAYMENTS_RECOVERED.inc(len(recovered))
        log_event(
            "bank_payments_recovered",
            logging.WARNING,
            accountId=account_id,
            transactionIds=recovered,
        )
    with connection():
        stale = list(
            Qr.select(Qr.qr_id)
            .where((Qr.account == account_id) & (Qr.status == "active"))
            .order_by(Qr.bank_checked_at.asc(nulls="first"), Qr.id)
            .limit(batch)
            .tuples()
        )
    for (qr_id,) in stale:
        sync_qr(account_id, link, qr_id)
    return recovered


def reconcile(*, day=None, batch=20, lease_seconds=None):
    """A round over every linked account; ``{account_id: recovered}`` for those asked.

    With ``lease_seconds``, an account is asked only by the worker that takes its lease
    (one per round across every worker and host); without, always (the on-demand command).
    A bank that fails for one account does not stop the others.
    """
    day = day or la_paz_today()
    with connection():
        account_ids = bank_links.linked_account_ids()
    done = {}
    for account_id in account_ids:
        try:
            with connection():
                lease = lease_seconds is None or bank_links.take_lease(account_id, lease_seconds)
                if not lease:
                    continue
                link = bank_links.link_of(account_id)
            done[account_id] = reconcile_account(account_id, link, day, batch)
        except BankError as error:
            log_event(
                "bank_reconcile_stopped", logging.WARNING, accountId=account_id, error=str(error)
            )
        except ApiError as error:  # its link unreadable: logged where found; the others go on
            log_event(
                "bank_reconcile_skipped", logging.WARNING, accountId=account_id, code=error.code
            )
    return done
