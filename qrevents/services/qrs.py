"""The QR lifecycle: creation (idempotent per merchant transactionId), status changes, expiry."""

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from models import Account, Qr
from models.statements import update

from .. import sse
from ..clock import epoch_ms, iso, utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from .eventlog import account_change

STATUSES = ("active", "used", "completed", "expired", "cancelled")
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


def new_qr_id(now):
    """20 digits: the creation date ``YYMMDD`` (UTC), then 14 random digits."""
    return now.strftime("%y%m%d") + f"{secrets.randbelow(10**14):014d}"


def new_transaction_id():
    return "TXN_" + secrets.token_hex(10).upper()


def create_qr(account_id, req):
    """``(qr, created)``; a repeated request returns the first QR, a conflicting one is 409."""
    now = utcnow()
    due_date = req.due_date or now + DEFAULT_LIFETIME
    if due_date <= now:
        raise ValidationFailed(fields={"dueDate": "debe estar en el futuro"})
    with account_change(account_id) as change:
        if req.currency != change.account.currency:
            raise ValidationFailed(
                fields={"currency": f"debe ser la moneda de la cuenta ({change.account.currency})"}
            )
        fingerprint = req.fingerprint()
        if req.transaction_id is not None:
            existing = Qr.get_or_none(
                (Qr.account == account_id) & (Qr.transaction_id == req.transaction_id)
            )
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    raise Conflict(
                        "Este transactionId ya se usó para otro QR", code="transaction_id_reused"
                    )
                return existing, False
        qr = Qr.create(
            qr_id=new_qr_id(now),
            account=account_id,
            transaction_id=req.transaction_id or new_transaction_id(),
            amount_cents=req.amount_cents,
            currency=req.currency,
            description=req.description,
            due_date=due_date,
            single_use=req.single_use,
            modify_amount=req.modify_amount,
            status="active",
            fingerprint=fingerprint,
            created_at=now,
        )
        change.record(sse.qr_created(qr))
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
    change.record(sse.qr_status_change(qr, previous, sync_source))


def cancel_qr(account_id, qr_id):
    """A merchant withdraws an active QR."""
    with account_change(account_id) as change:
        qr = get_qr(account_id, qr_id)
        if qr.status != "active":
            raise Conflict(
                f"Solo se puede cancelar un QR activo (está {qr.status})", code="invalid_transition"
            )
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
