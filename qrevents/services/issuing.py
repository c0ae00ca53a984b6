"""A QR's life at the bank: issued there before we record it, cancelled there before we do.

The bank may take seconds. No database connection (and so no account lock) is held while it
answers: each step opens its own short connection, the bank is asked with none open.
"""

import logging

from ..banks import BankRejected, BankUnavailable
from ..errors import BankRefused, BankTimedOut
from ..logs import log_event
from ..reconnect import in_connection
from . import bank_links, bank_sync, qrs
from .banking import bank_answers, bank_of


class CancelRefused(BankRefused):
    """The bank would not cancel the QR (paid meanwhile, say): a conflict, not an outage."""

    status = 409


def _planned(account_id, req):
    """``(existing QR, None, None)`` or ``(None, plan, link)``: what to ask the bank."""
    existing = qrs.issued_before(account_id, req)
    if existing is not None:
        return existing, None, None
    return None, qrs.plan_qr(account_id, req), bank_links.link_of(account_id)


def create_qr(account_id, req):
    """``(qr, created)``: the QR the bank issued for ``req``, recorded with ``qr_created``;
    a repeated request returns the QR recorded without asking the bank again."""
    existing, plan, link = in_connection(_planned, account_id, req)
    if existing is not None:
        return existing, False
    bank = bank_of(link)
    try:
        with bank_answers():
            issued = bank.issue(qrs.bank_order(req, plan))
    except (BankRefused, BankTimedOut):
        # A concurrent identical creation may have issued and recorded it meanwhile (a bank
        # refusing a repeated transactionId, or slow to answer the second): that QR is this
        # request's answer.
        existing = in_connection(qrs.issued_before, account_id, req)
        if existing is None:
            raise
        return existing, False
    qr, created = in_connection(qrs.record_issued, account_id, req, plan, issued)
    if not created and issued.qr_id != qr.qr_id:
        # (A bank that answers a repeated transactionId with the same QR issued no spare.)
        _withdraw_spare(bank, account_id, issued.qr_id)
    return qr, created


def _withdraw_spare(bank, account_id, qr_id):
    """A concurrent identical creation recorded its QR first: cancel the bank's second one,
    which nobody will ever be shown (best effort; it is not ours, status sync never sees it)."""
    try:
        bank.cancel(qr_id)
    except (BankRejected, BankUnavailable) as error:
        log_event(
            "bank_spare_qr_left",
            logging.WARNING,
            qrId=qr_id,
            accountId=account_id,
            error=str(error),
        )


def cancel_qr(account_id, qr_id):
    """Cancel at the bank first, then record ``cancelled`` (syncSource ``user``).

    A bank refusal is ``CancelRefused`` (409), after asking the bank what became of the QR
    and recording it (a payment the notifications missed, a cancellation).
    """
    link = in_connection(_cancellable_link, account_id, qr_id)
    try:
        with bank_answers(refused=CancelRefused):
            bank_of(link).cancel(qr_id)
    except CancelRefused:
        try:
            bank_sync.sync_qr(account_id, link, qr_id)
        except (BankRejected, BankUnavailable) as error:
            log_event("bank_status_unknown", logging.WARNING, qrId=qr_id, error=str(error))
        raise
    return in_connection(qrs.cancel_qr, account_id, qr_id)


def _cancellable_link(account_id, qr_id):
    qrs.cancellable(qrs.get_qr(account_id, qr_id))
    return bank_links.link_of(account_id)
