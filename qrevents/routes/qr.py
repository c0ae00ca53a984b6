"""QRs of the caller's account: create (at the bank), list, read, cancel (at the bank first).

Creating and cancelling wait for the bank: those two views scope their own short database
connections (``@bank_bound``, kept out of the per-request connection) so that none is held
while the bank answers (``services.issuing``).
"""

from flask import Blueprint, request

from .. import bodies
from ..auth import authenticate
from ..envelope import success
from ..errors import ValidationFailed
from ..policy import bank_bound
from ..reconnect import in_connection
from ..resources import page_json, qr_json
from ..services import issuing, qrs
from ..validation import json_object, page_args

bp = Blueprint("qr", __name__)


@bp.post("/qr")
@bank_bound
def create_qr():
    identity = in_connection(authenticate)
    body = bodies.QR.read(json_object())
    req = qrs.QrRequest(
        amount_cents=body["amount"],
        currency=body["currency"],
        description=body["description"],
        due_date=body["dueDate"],
        single_use=body["singleUse"],
        modify_amount=body["modifyAmount"],
        transaction_id=body["transactionId"],
    )
    qr, created = issuing.create_qr(identity.account_id, req)
    if created:
        return success("QR creado", qr_json(qr), 201)
    return success("QR ya existente para este transactionId", qr_json(qr))


@bp.get("/qr")
def list_qrs():
    identity = authenticate()
    status = request.args.get("status")
    if status is not None and status not in qrs.STATUSES:
        raise ValidationFailed(fields={"status": f"debe ser uno de: {', '.join(qrs.STATUSES)}"})
    limit, cursor = page_args()
    rows = qrs.list_qrs(identity.account_id, status=status, limit=limit, cursor=cursor)
    return success("QRs obtenidos", page_json(rows, qr_json, limit, lambda qr: qr.id))


@bp.get('/qr/<safe_id("qrId"):qr_id>')
def get_qr(qr_id):
    identity = authenticate()
    return success("QR obtenido", qr_json(qrs.get_qr(identity.account_id, qr_id)))


@bp.post('/qr/<safe_id("qrId"):qr_id>/cancel')
@bank_bound
def cancel_qr(qr_id):
    identity = in_connection(authenticate)
    return success("QR cancelado", qr_json(issuing.cancel_qr(identity.account_id, qr_id)))
