"""The QR lifecycle: creation (idempotent per merchant transactionId), status changes, expiry.

A QR is always the bank's: creation is planned here, issued by the bank (``routes.qr``,
holding no database connection meanwhile), then recorded here.
"""

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from models import QR_STATUSES, Account, Qr
from models.statements import update

from .. import events
from ..banks import QrOrder
from ..clock import LA_PAZ, epoch_ms, iso, utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from .eventlog import account_change

STATUSES = QR_STATUSES
# Every status a QR may move to from each status; the rest are final.
TRANSITIONS = {
    "active": ("used", "completed", "expired", "cancelled"),
    "used": ("completed",),
}
DEFAULT_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class QrRequest:
    """A merchant's QR creation request, as validated at the edge."""

    amount_cents: int
    currency: str
    description: str
    due_date: datetime | None
    single_use: bool
    modify_amount: bool
    transaction_id: str | None

    def fingerprint(self):
        """Same request, same fingerprint: what tells a retry from a conflicting reuse."""
        fields = asdict(self)
        fields["due_date"] = iso(self.due_date)
        canonical = repr(sorted(fields.items()))
        return hashlib.sha256(canonical.encode()).hexdigest()


def new_transaction_id():
    return "TXN_" + secrets.token_hex(10).upper()


@dataclass(frozen=True)
class QrPlan:
    """What a creation asks the bank for, decided before the bank is called."""

    transaction_id: str
    due_date: datetime
    fingerprint: str
    asked_at: datetime  # the QR's createdAt: when the bank was asked for it


def issued_before(account_id, req):
    """The QR this request already created, or None; 409 if its transactionId made another."""
    if req.transaction_id is None:
        return None
    existing = Qr.get_or_none(
        (Qr.account == account_id) & (Qr.transaction_id == req.transaction_id)
    )
    if existing is not None and existing.fingerprint != req.fingerprint():
        raise Conflict("Este transactionId ya se usó para otro QR", code="transaction_id_reused")
    return existing


def plan_qr(account_id, req):
    """Check a creation against the account (currency, due date) before asking the bank."""
    now = utcnow()
    due_date = req.due_date or now + DEFAULT_LIFETIME
    if due_date <= now:
        raise ValidationFailed(fields={"dueDate": "debe estar en el futuro"})
    currency = Account.select(Account.currency).where(Account.id == account_id).scalar()
    if req.currency != currency:
        raise ValidationFailed(fields={"currency": f"debe ser la moneda de la cuenta ({currency})"})
    return QrPlan(req.transaction_id or new_transaction_id(), due_date, req.fingerprint(), now)


def bank_order(req, plan):
    """The bank's generateQR request: the due date as the La Paz calendar day."""
    return QrOrder(
        transaction_id=plan.transaction_id,
        amount_cents=req.amount_cents,
        currency=req.currency,
        description=req.description,
        due_date=plan.due_date.replace(tzinfo=UTC).astimezone(LA_PAZ).date(),
        single_use=req.single_use,
        modify_amount=req.modify_amount,
    )


def record_issued(account_id, req, plan, issued):
    """``(qr, created)``: the QR the bank issued, recorded ``active`` with ``qr_created``.

    Under the account's lock: a concurrent identical creation that recorded first wins,
    and this one returns the winner's QR (the bank's spare QR is the caller's to cancel).
    """
    with account_change(account_id) as change:
        if req.transaction_id is not None:
            existing = issued_before(account_id, req)
            if existing is not None:
                return existing, False
        qr = Qr.create(
            qr_id=issued.qr_id,
            account=account_id,
            transaction_id=plan.transaction_id,
            amount_cents=req.amount_cents,
            currency=req.currency,
            description=req.description,
            due_date=plan.due_date,
            single_use=req.single_use,
            modify_amount=req.modify_amount,
            status="active",
            fingerprint=plan.fingerprint,
            created_at=plan.asked_at,
            image_png=issued.image_png,
        )
        change.record(events.qr_created(qr))
    return qr, True


def get_qr(account_id, qr_id):
    qr = Qr.get_or_none((Qr.qr_id == qr_id) & (Qr.account == account_id))
    if qr is None:
        raise NotFound("El QR no existe")
    return qr


def list_qrs(account_id, *, status, limit, cursor):
    """Newest first; ``cursor`` is the last row id of the previous page."""
    query = Qr.select().where(Qr.account == account_id)
    if status:
        query = query.where(Qr.status == status)
    if cursor:
        query = query.where(Qr.id < cursor)
    return list(query.order_by(Qr.id.desc()).limit(limit))


def set_status(qr, new_status):
    """Move a QR to ``new_status`` and return the previous one (the caller records the event)."""
    previous = qr.status
    qr.status = new_status
    # Strictly increasing per QR, so two changes in one millisecond keep distinct ids.
    qr.status_changed_ms = max(epoch_ms(utcnow()), qr.status_changed_ms + 1)
    update(qr, (Qr.status, Qr.status_changed_ms))
    return previous


def change_status(change, qr, new_status, sync_source):
    """Move a QR of the locked account to ``new_status`` and record ``qr_status_change``."""
    previous = set_status(qr, new_status)
    change.record(events.qr_status_change(qr, previous, sync_source))


def cancellable(qr):
    """409 unless the QR is active (checked before the bank is asked, and again after)."""
    if qr.status != "active":
        raise Conflict(
            f"Solo se puede cancelar un QR activo (está {qr.status})",
            code="invalid_transition",
        )


def cancel_qr(account_id, qr_id):
    """Record that a merchant withdrew an active QR (the bank has cancelled it already)."""
    with account_change(account_id) as change:
        qr = get_qr(account_id, qr_id)
        cancellable(qr)
        change_status(change, qr, "cancelled", "user")
    return qr


def sync_status(qr_id, new_status):
    """The bank's word on a QR's status: ``(qr, changed)``; the same status again is a no-op."""
    found = Qr.get_or_none(Qr.qr_id == qr_id)
    if found is None:
        raise NotFound("El QR no existe")
    with account_change(found.account_id) as change:
        qr = Qr.get_by_id(found.id)
        if qr.status == new_status:
            return qr, False
        if new_status not in TRANSITIONS.get(qr.status, ()):
            raise Conflict(
                f"Un QR no puede pasar de {qr.status} a {new_status}", code="invalid_transition"
            )
        change_status(change, qr, new_status, "bank_api")
    return qr, True


def expire_overdue(now=None, batch=200):
    """Expire active QRs past their due date; safe on every worker at once. Returns the count."""
    now = now or utcnow()
    overdue = (
        Qr.select(Qr.id, Qr.account)
        .join(Account)
        .where((Qr.status == "active") & (Qr.due_date < now))
        .order_by(Qr.due_date)
        .limit(batch)
        .tuples()
    )
    expired = 0
    for qr_pk, account_id in list(overdue):
        with account_change(account_id) as change:
            qr = Qr.get_by_id(qr_pk)
            # Re-checked under the account's lock: another worker may have been first.
            if qr.status == "active" and qr.due_date < now:
                change_status(change, qr, "expired", "scheduler")
                expired += 1
    return expired
