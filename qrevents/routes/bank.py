"""Bank callbacks: payment notifications and QR status syncs.

A notification signed (``X-Bank-Signature``) or carrying the bearer secret is the bank's
word and is recorded as it says. BANECO's own notifyPaymentQR has no authentication in its
specification: a notification without either is only a trigger. qrevents then asks the
bank about that QR and records exactly the payments the bank lists (its amounts, not the
caller's); a forged one credits nothing.

Every answer carries BANECO's ``responseCode`` beside the envelope: 0 when the payment is
recorded (now or before), 1 otherwise, so the bank retries (10 times, 1 s apart) what we
could not confirm; reconciliation finds whatever is left.
"""

from flask import Blueprint, current_app, request

from models import Payment, connection, database

from .. import bank_signature, bodies, metrics
from ..envelope import failure, success
from ..errors import ApiError, Conflict, Unauthorized
from ..notices import payment_notice
from ..policy import no_credential
from ..resources import payment_json, qr_json
from ..services import bank_sync, payments, qrs
from ..services.banking import bank_answers
from ..validation import json_object, request_body

bp = Blueprint("bank", __name__)

NOT_CONFIRMED = "payment_not_confirmed"


@bp.errorhandler(ApiError)
def refused(error):
    """The envelope, with BANECO's ``responseCode`` (non-zero: the bank retries)."""
    metrics.BANK_CALLBACKS.labels("refused").inc()
    response = failure(error.message, error.code, error.status, fields=error.fields, responseCode=1)
    response.headers.update(error.headers)
    return response


def carries_credential():
    return bool(request.headers.get("X-Bank-Signature") or request.headers.get("Authorization"))


def require_bank():
    """401 unless the request is signed (or carries the static secret); before any parsing."""
    secret = current_app.config["QREVENTS"].bank_webhook_secret
    if not bank_signature.verify(
        secret,
        request_body(),
        request.headers.get("X-Bank-Signature"),
        request.headers.get("Authorization"),
    ):
        raise Unauthorized("Falta la firma del banco o no es correcta", code="invalid_signature")


@bp.post("/bank/payments")
@bp.post("/hooks/baneco/notifyPayment")
@bp.post("/api/qrsimple/notifyPaymentQR")
@no_credential  # a bank retries and must never be turned away
def notify_payment():
    if not carries_credential():
        return confirm_with_bank()
    require_bank()
    notice = payment_notice(json_object())
    payment, duplicate = payments.post_payment(notice)
    return _recorded(payment, duplicate)


def confirm_with_bank():
    """An unsigned notification: a trigger to ask the bank, never a credit by itself."""
    current_app.extensions["qrevents.throttle"].check_bank_trigger()
    body = bodies.PAYMENT_TRIGGER.read(_payment_object(json_object()))
    qr_id, transaction_id = body["qrId"], body["transactionId"]
    # The bank may take seconds: give the request's connection back before asking it (the
    # steps around the bank call open their own short ones).
    database.close()
    try:
        with bank_answers():
            confirmed, recorded_now = bank_sync.confirm_notice(qr_id, transaction_id)
    except Conflict as error:
        if error.code != "bank_not_linked":
            raise
        confirmed = False
    if not confirmed:
        # The same answer for a QR that is not ours as for a payment the bank does not list:
        # an unauthenticated caller learns nothing about which QRs exist.
        raise Conflict("El banco no confirma este pago", code=NOT_CONFIRMED)
    with connection():
        payment = Payment.get(Payment.transaction_id == transaction_id)
        return _recorded(payment, transaction_id not in recorded_now)


def _payment_object(body):
    payment = body.get("payment")
    return payment if isinstance(payment, dict) else body


def _recorded(payment, duplicate):
    outcome = "duplicate" if duplicate else "held" if payment.review else "credited"
    metrics.BANK_CALLBACKS.labels(outcome).inc()
    message = "Pago ya registrado" if duplicate else "Pago registrado"
    return success(message, payment_json(payment), duplicate=duplicate, responseCode=0)


@bp.post("/bank/qr-status")
@no_credential
def sync_qr_status():
    require_bank()
    body = bodies.QR_STATUS.read(json_object())
    qr, changed = qrs.sync_status(body["qrId"], body["status"])
    message = "Estado del QR actualizado" if changed else "El QR ya tenía ese estado"
    return success(message, qr_json(qr), changed=changed, responseCode=0)
