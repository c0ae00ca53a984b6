"""QRs of the caller's account: create (at the bank), list, read, cancel (at the bank first).

Creating and cancelling wait for the bank, which may take seconds: those two routes hold no
database connection (and no account lock) while it answers. They scope their own
connections (``OWN_CONNECTION``): one to check, none during the bank call, one to record.
"""

import logging

from flask import Blueprint, request

from models import connection

from ..auth import authenticate
from ..banks import BankRejected, BankUnavailable
from ..envelope import success
from ..errors import BankRefused, BankTimedOut, ValidationFailed
from ..resources import page_json, qr_json
from ..services import bank_links, bank_sync, qrs
from ..services.banking import bank_answers, bank_of
from ..sse import SAFE_ID
from ..validation import Fields, json_object, page_args

bp = Blueprint("qr", __name__)
log = logging.getLogger(__name__)

# Their connections are opened and closed in the view, around the bank call.
BANK_BOUND = {"qr.create_qr", "qr.cancel_qr"}


class CancelRefused(BankRefused):
    status = 409


@bp.post("/qr")
def create_qr():
    with connection():
        identity = authenticate()
    fields = Fields(json_object())
    req = qrs.QrRequest(
        amount_cents=fields.amount("amount"),
        currency=fields.currency("currency"),
        description=fields.string("description", max_length=140),
        due_date=fields.moment("dueDate", required=False),
        single_use=fields.boolean("singleUse", default=True),
        modify_amount=fields.boolean("modifyAmount", default=False),
        transaction_id=fields.safe_id("transactionId", max_length=30, required=False),
    )
    fields.check()
    account_id = identity.account_id
    with connection():
        existing = qrs.issued_before(account_id, req)
        if existing is not None:
            return _already_issued(existing)
        plan = qrs.plan_qr(account_id, req)
        link = bank_links.link_of(account_id)
    bank = bank_of(link)
    try:
        with bank_answers("issue", f"account {account_id}"):
            issued = bank.issue(qrs.bank_order(req, plan))
    except (BankRefused, BankTimedOut):
        # A concurrent identical creation may have issued and recorded it meanwhile (a bank
        # refusing a repeated transactionId, or slow to answer the second): that QR is this
        # request's answer.
        with connection():
            existing = qrs.issued_before(account_id, req)
        if existing is None:
            raise
        return _already_issued(existing)
    with connection():
        qr, created = qrs.record_issued(account_id, req, plan, issued)
    if not created:
        _withdraw_spare(bank, account_id, issued.qr_id)
        return _already_issued(qr)
    return success("QR creado", qr_json(qr), 201)


def _already_issued(qr):
    return success("QR ya existente para este transactionId", qr_json(qr))


def _withdraw_spare(bank, account_id, qr_id):
    """A concurrent identical creation recorded its QR first: cancel the bank's second one,
    which nobody will ever show (best effort; status sync never sees it, it is not ours)."""
    try:
        bank.cancel(qr_id)
    except (BankRejected, BankUnavailable) as error:
        log.warning("spare QR %s of account %s left at the bank: %s", qr_id, account_id, error)


@bp.get("/qr")
def list_qrs():
    identity = authenticate()
    status = request.args.get("status")
    if status is not None and status not in qrs.STATUSES:
        raise ValidationFailed(fields={"status": f"debe ser uno de: {', '.join(qrs.STATUSES)}"})
    limit, cursor = page_args()
    rows = qrs.list_qrs(identity.account_id, status=status, limit=limit, cursor=cursor)
    return success("QRs obtenidos", page_json(rows, qr_json, limit, lambda qr: qr.id))


@bp.get("/qr/<qr_id>")
def get_qr(qr_id):
    identity = authenticate()
    return success("QR obtenido", qr_json(qrs.get_qr(identity.account_id, _checked(qr_id))))


@bp.post("/qr/<qr_id>/cancel")
def cancel_qr(qr_id):
    """At the bank first; a bank refusal (say, the QR was paid meanwhile) is a 409 and asks
    the bank for the QR's status, so what it says is recorded and announced."""
    qr_id = _checked(qr_id)
    with connection():
        identity = authenticate()
        account_id = identity.account_id
        qrs.cancellable(qrs.get_qr(account_id, qr_id))
        link = bank_links.link_of(account_id)
    try:
        with bank_answers("cancel", f"account {account_id}", refused=CancelRefused):
            bank_of(link).cancel(qr_id)
    except CancelRefused:
        try:
            bank_sync.sync_qr(account_id, link, qr_id)
        except (BankRejected, BankUnavailable) as error:
            log.warning("status of QR %s after a refused cancel unknown: %s", qr_id, error)
        raise
    with connection():
        qr = qrs.cancel_qr(account_id, qr_id)
    return success("QR cancelado", qr_json(qr))


def _checked(qr_id):
    if not SAFE_ID.match(qr_id):
        raise ValidationFailed(fields={"qrId": "no es un id de QR"})
    return qr_id
