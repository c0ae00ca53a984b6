"""Request bodies, each declared once: the routes read them (``Body.read``: typed values, or
one 422 naming every bad field) and ``openapi.py`` describes them (``Body.schema``), so a
field's limits are written in one place."""

import re

from .banks import BankLink
from .events import DURABLE_TYPES
from .services.bank_links import ADAPTERS
from .validation import (
    Body,
    amount,
    bank_moment,
    boolean,
    choice,
    choice_list,
    currency,
    email,
    flag,
    integer,
    moment,
    pattern,
    safe_id,
    text,
)

LOGIN = Body(text("email", max_length=254), text("password", max_length=256))

API_KEY_EXPIRY = moment(
    "expiresAt",
    required=False,
    description="ISO 8601, in the future (La Paz time when it has no offset)",
)
API_KEY = Body(text("name", max_length=120), API_KEY_EXPIRY)
ADMIN_API_KEY = Body(
    text("name", max_length=120), integer("userId", required=False), API_KEY_EXPIRY
)

ACCOUNT = Body(text("name", max_length=120), currency("currency"))
USER = Body(
    email("email"),
    text("password", max_length=256, min_length=8),
    text("name", max_length=120),
)

QR = Body(
    amount("amount"),
    currency("currency", description="The account's currency"),
    text("description", max_length=140),
    moment(
        "dueDate",
        required=False,
        description="A future date-time (La Paz time when it has no offset), or a date: "
        "the end of that day in La Paz. Default: 24 h from now",
    ),
    boolean("singleUse", default=True),
    boolean("modifyAmount", default=False),
    safe_id(
        "transactionId",
        max_length=30,
        required=False,
        description="The merchant's idempotency key; generated when absent",
    ),
)

# The bank's PaymentQR (``notices.payment_notice``: flat, or as ``{"payment": {...}}``).
PAYMENT_NOTICE = Body(
    safe_id("qrId"),
    safe_id("transactionId", description="The bank's id: the idempotency key"),
    amount("amount"),
    currency("currency", description="The QR's currency"),
    text("senderName", max_length=120),
    text("senderDocumentId", max_length=40),
    text("senderAccount", max_length=40),
    text("senderBankCode", max_length=40),
    text("description", max_length=140, required=False, default=""),
    bank_moment(
        "paymentDate",
        "paymentTime",
        date_doc="yyyyMMdd, yyyy-MM-dd or an ISO 8601 date-time; without an offset it is La "
        "Paz time (UTC-4). paymentTime applies when it has no time of day or a zero one "
        "(BANECO: 2021-06-14T00:00:00 with paymentTime 17:06:29)",
        time_doc="La Paz time of day of the payment",
    ),
)
# What an unsigned notification is read for: which payment to ask the bank about.
PAYMENT_TRIGGER = Body(safe_id("qrId"), safe_id("transactionId"))

BANK_STATUSES = ("used", "completed", "expired", "cancelled")
QR_STATUS = Body(safe_id("qrId"), choice("status", BANK_STATUSES))

WEBHOOK_URL = text(
    "url",
    max_length=2048,
    description="http(s) URL without user info; https only in production. Refused (422) "
    "when its host resolves to a loopback, private, link-local, multicast, reserved or "
    "metadata address, unless QREVENTS_WEBHOOK_ALLOW_PRIVATE is set",
)
WEBHOOK_EVENTS = choice_list(
    "events",
    DURABLE_TYPES,
    description="Event types to receive; absent or null: every durable type",
)
WEBHOOK_DESCRIPTION = text("description", max_length=200, required=False)
WEBHOOK = Body(WEBHOOK_URL, WEBHOOK_EVENTS, WEBHOOK_DESCRIPTION)
WEBHOOK_CHANGE = Body(
    WEBHOOK_URL,
    WEBHOOK_EVENTS,
    WEBHOOK_DESCRIPTION,
    flag("enabled", description="true again: retries at once, reason cleared"),
    changes=True,
)

REPLAY = Body(text("fromEventId", max_length=128, description="A durable event's id"))

BANK_LINK = Body(
    choice("adapter", ADAPTERS),
    pattern(
        "baseUrl",
        re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?"),
        "debe ser la URL http(s) del ApiGateway del banco",
        max_length=300,
        shown=False,
        description="The bank's ApiGateway base URL (http or https)",
    ),
    text("userName", max_length=120),
    text("password", max_length=256),
    pattern(
        "aesKey",
        re.compile(r"[\x21-\x7e]{32}"),
        "debe ser la clave de 32 caracteres que entregó el banco",
        shown=False,
        minLength=32,
        maxLength=32,
    ),
    pattern(
        "accountNumber",
        re.compile(r"[0-9A-Za-z-]{1,30}"),
        "debe tener de 1 a 30 letras, dígitos o -",
    ),
    pattern(
        "branchCode",
        re.compile(r"[0-9A-Za-z]{1,5}"),
        "debe tener de 1 a 5 letras o dígitos",
        required=False,
    ),
)


def bank_link(body):
    """An account's bank link; every bad field named, no value echoed (they are secret)."""
    values = BANK_LINK.read(body)
    base_url = values["baseUrl"]
    if not base_url.endswith("/"):
        base_url += "/"  # the bank's paths are relative to the ApiGateway base
    return BankLink(
        adapter=values["adapter"],
        base_url=base_url,
        user_name=values["userName"].strip(),
        password=values["password"],
        aes_key=values["aesKey"],
        account_number=values["accountNumber"],
        branch_code=values["branchCode"],
    )
