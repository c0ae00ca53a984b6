"""The bank's PaymentQR, read one way wherever it comes from: a notification (flat, or nested
as BANECO sends it), a statusQR answer or a paidQR list. So a payment found by
reconciliation is recorded exactly as its notification would have been."""

from decimal import Decimal

from .bodies import PAYMENT_NOTICE
from .services.payments import PaymentNotice


def payment_notice(body):
    """A ``PaymentNotice`` from a PaymentQR object or ``{"payment": {...}}``; 422 naming every
    bad field otherwise."""
    if isinstance(body.get("payment"), dict):
        body = body["payment"]
    if isinstance(body.get("amount"), float):
        # A client that parsed the bank's JSON with floats: 1.2 reads back as "1.2" exactly
        # (an amount has at most two decimals; anything else is still refused below).
        body = {**body, "amount": Decimal(repr(body["amount"]))}
    values = PAYMENT_NOTICE.read(body)
    payment_date, payment_time = values["paymentDate"]
    return PaymentNotice(
        qr_id=values["qrId"],
        transaction_id=values["transactionId"],
        amount_cents=values["amount"],
        currency=values["currency"],
        sender_name=values["senderName"],
        sender_document_id=values["senderDocumentId"],
        sender_account=values["senderAccount"],
        sender_bank_code=values["senderBankCode"],
        description=values["description"],
        payment_date=payment_date,
        payment_time=payment_time,
    )
