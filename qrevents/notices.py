"""The bank's PaymentQR, read one way wherever it comes from: a notification (flat, or nested
as BANECO sends it), a statusQR answer or a paidQR list. So a payment found by
reconciliation is recorded exactly as its notification would have been."""

from decimal import Decimal

from .services.payments import PaymentNotice
from .validation import Fields


def payment_notice(body):
    """A ``PaymentNotice`` from a PaymentQR object or ``{"payment": {...}}``; 422 naming every
    bad field otherwise."""
    if isinstance(body.get("payment"), dict):
        body = body["payment"]
    if isinstance(body.get("amount"), float):
        # A client that parsed the bank's JSON with floats: 1.2 reads back as "1.2" exactly
        # (an amount has at most two decimals; anything else is still refused below).
        body = {**body, "amount": Decimal(repr(body["amount"]))}
    fields = Fields(body)
    payment_date, payment_time = fields.bank_moment("paymentDate", "paymentTime")
    notice = PaymentNotice(
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
