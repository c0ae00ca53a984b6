"""Payments of the caller's account, and the release of one held for review."""

from flask import Blueprint

from ..auth import authenticate
from ..envelope import success
from ..errors import ValidationFailed
from ..resources import page_json, payment_json
from ..services import payments
from ..sse import SAFE_ID
from ..validation import page_args

bp = Blueprint("payments", __name__)


@bp.get("/payments")
def list_payments():
    identity = authenticate()
    limit, cursor = page_args()
    rows = payments.list_payments(identity.account_id, limit=limit, cursor=cursor)
    return success("Pagos obtenidos", page_json(rows, payment_json, limit, lambda p: p.id))


@bp.post("/payments/<transaction_id>/release")
def release(transaction_id):
    identity = authenticate()
    if not SAFE_ID.match(transaction_id):
        raise ValidationFailed(fields={"transactionId": "no es un id de transacción"})
    payment = payments.release_payment(identity.account_id, transaction_id)
    return success("Pago liberado", payment_json(payment))
