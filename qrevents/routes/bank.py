"""Bank callbacks: payments and QR status syncs, signed, idempotent."""

from flask import Blueprint, current_app, request

from .. import bank_signature, metrics
from ..envelope import success
from ..errors import ApiError, Unauthorized
from ..resources import payment_json, qr_json
from ..services import payments, qrs
from ..validation import Fields, json_object, request_body

bp = Blueprint("bank", __name__)

BANK_STATUSES = ("used", "completed", "expired", "cancelled")


def require_bank():
    """401 unless the request is signed (or carries the static secret); before any parsing."""
    secret = current_app.config["QREVENTS"]["BANK_WEBHOOK_SECRET"]
    if not bank_signature.verify(
        secret,
        request_body(),
        request.headers.get("X-Bank-Signature"),
        request.headers.get("Authorization"),
    ):
        raise Unauthorized("Falta la firma del banco o no es correcta", code="invalid_signature")


def parse_payment_notice(body):
    """Flat, or wrapped as BANECO sends it (``{"payment": {...}}``)."""
    if isinstance(body.get("payment"), dict):
        body = body["payment"]
    fields = Fields(body)
    payment_date, payment_time = fields.bank_moment("paymentDate", "paymentTime")
    notice = payments.PaymentNotice(
        qr_id=fields.safe_id("qrId"),
        transaction_id=fields.safe_id("transactionId"),
        amount_cents=fields.amount("amount"),
        currency=fields.currency("currency"),
        sender_name=fields.string("senderName", max_length=120),
        sender_document_id=fields.string("senderDocumentId", max_length=40),
        sender_account=fields.string("senderAccount", max_length=40),
        sender_bank_code=fields.string("senderBankCode", max_length=40),
        description=fields.string("description", max_length=140, required=False, default=""),
        payment_date=payment_date,
        payment_time=payment_time,
    )
    fields.check()
    return notice


@bp.post("/bank/payments")
@bp.post("/hooks/baneco/notifyPayment")
def notify_payment():
    try:
        require_bank()
        notice = parse_payment_notice(json_object())
        payment, duplicate = payments.post_payment(notice)
    except ApiError:
        metrics.BANK_CALLBACKS.labels("refused").inc()
        raise
    outcome = "duplicate" if duplicate else "held" if payment.review else "credited"
    metrics.BANK_CALLBACKS.labels(outcome).inc()
    if duplicate:
        return success("Pago ya registrado", payment_json(payment), duplicate=True, responseCode=0)
    return success("Pago registrado", payment_json(payment), duplicate=False, responseCode=0)


@bp.post("/bank/qr-status")
def sync_qr_status():
    require_bank()
    fields = Fields(json_object())
    qr_id = fields.safe_id("qrId")
    status = fields.choice("status", BANK_STATUSES)
    fields.check()
    qr, changed = qrs.sync_status(qr_id, status)
    message = "Estado del QR actualizado" if changed else "El QR ya tenía ese estado"
    return success(message, qr_json(qr), changed=changed, responseCode=0)
