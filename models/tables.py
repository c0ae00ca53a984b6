"""Peewee models: accounts, users, credentials, QRs, payments, the ledger and the event log.

Money is integer centavos everywhere (``*_cents``); SQLite's NUMERIC affinity would turn
decimals into floats. Times are naive UTC datetimes.
"""

import peewee as pw

from .db import database

# The values ``Qr.status`` and ``Movement.movement_type`` take (the services own the rules
# that move between them; the API and event schemas list them from here).
QR_STATUSES = ("active", "used", "completed", "expired", "cancelled")
MOVEMENT_TYPES = ("qr_payment", "qr_payment_held", "review_release")


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Account(BaseModel):
    name = pw.CharField(max_length=120)
    currency = pw.CharField(max_length=3)
    balance_cents = pw.BigIntegerField(default=0)
    available_cents = pw.BigIntegerField(default=0)
    # Last sequence numbers handed out; bumped under the account's write lock.
    event_seq = pw.BigIntegerField(default=0)
    movement_seq = pw.BigIntegerField(default=0)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField()


class User(BaseModel):
    account = pw.ForeignKeyField(Account, backref="users", on_delete="CASCADE")
    email = pw.CharField(max_length=254, unique=True)
    password_hash = pw.CharField(max_length=255)
    name = pw.CharField(max_length=120)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField()


class ApiKey(BaseModel):
    account = pw.ForeignKeyField(Account, backref="api_keys", on_delete="CASCADE")
    user = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    name = pw.CharField(max_length=120)
    prefix = pw.CharField(max_length=16)
    key_hash = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class StreamTicket(BaseModel):
    """A single-use, short-lived stand-in for a credential in a stream URL."""

    ticket_hash = pw.CharField(max_length=64, unique=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    user = pw.ForeignKeyField(User, null=True, on_delete="CASCADE")
    api_key = pw.ForeignKeyField(ApiKey, null=True, on_delete="CASCADE")
    auth_type = pw.CharField(max_length=8)
    token_source = pw.CharField(max_length=8)
    credential_expires_at = pw.DateTimeField(null=True)
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class RefreshToken(BaseModel):
    """A refresh token of a password sign-in (its ``jti``; the token itself is never kept).

    Tokens of one sign-in share a ``family``: each refresh uses one (``used_at``) and issues
    the next; a used one presented again revokes the whole family (someone copied it).
    """

    jti = pw.CharField(max_length=64, unique=True)
    family = pw.CharField(max_length=64, index=True)
    user = pw.ForeignKeyField(User, on_delete="CASCADE")
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(index=True)
    used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class Qr(BaseModel):
    qr_id = pw.CharField(max_length=20, unique=True)
    account = pw.ForeignKeyField(Account, backref="qrs", on_delete="CASCADE")
    transaction_id = pw.CharField(max_length=30)
    amount_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    description = pw.CharField(max_length=140)
    due_date = pw.DateTimeField(index=True)
    single_use = pw.BooleanField()
    modify_amount = pw.BooleanField()
    status = pw.CharField(max_length=12, index=True)
    # Millisecond stamp of the last status change: keeps qr_status_change ids unique.
    status_changed_ms = pw.BigIntegerField(default=0)
    fingerprint = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()
    # The bank's picture of the QR (base64-decoded qrImage): what a payer scans.
    image_png = pw.BlobField(null=True)
    # When status sync last asked the bank about it (least recently checked go first).
    bank_checked_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("account", "transaction_id"), True),)


class Payment(BaseModel):
    transaction_id = pw.CharField(max_length=64, unique=True)
    account = pw.ForeignKeyField(Account, backref="payments", on_delete="CASCADE")
    qr = pw.ForeignKeyField(Qr, backref="payments", on_delete="CASCADE")
    amount_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    sender_name = pw.CharField(max_length=120)
    sender_document_id = pw.CharField(max_length=40)
    sender_account = pw.CharField(max_length=40)
    sender_bank_code = pw.CharField(max_length=40)
    description = pw.CharField(max_length=140)
    payment_date = pw.DateTimeField()
    payment_time = pw.CharField(max_length=8)
    review = pw.BooleanField(default=False)
    review_reason = pw.CharField(max_length=40, null=True)
    released_at = pw.DateTimeField(null=True)
    fingerprint = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("account", "payment_date"), False),)


class Movement(BaseModel):
    """One ledger line; the account's balances after it are kept for audit."""

    account = pw.ForeignKeyField(Account, backref="movements", on_delete="CASCADE")
    seq = pw.BigIntegerField()
    movement_type = pw.CharField(max_length=24)
    amount_cents = pw.BigIntegerField()
    balance_after_cents = pw.BigIntegerField()
    available_after_cents = pw.BigIntegerField()
    description = pw.CharField(max_length=140)
    qr_id = pw.CharField(max_length=20, null=True)
    transaction_id = pw.CharField(max_length=64, null=True)
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("account", "seq"), True),)


class Event(BaseModel):
    """The event log: every durable event, written in the transaction of its change."""

    account = pw.ForeignKeyField(Account, backref="events", on_delete="CASCADE")
    seq = pw.BigIntegerField()
    event_type = pw.CharField(max_length=32)
    event_id = pw.CharField(max_length=128)
    data = pw.TextField()
    created_at = pw.DateTimeField(index=True)

    class Meta:
        indexes = (
            (("account", "seq"), True),
            (("account", "event_id"), True),
        )


class BankLink(BaseModel):
    """An account's bank: which adapter, where, and its credentials (secrets sealed).

    ``leased_until`` is the reconciliation lease: the worker whose conditional UPDATE moves
    it forward asks the bank for this account in this round; the others skip it.
    """

    account = pw.ForeignKeyField(Account, unique=True, on_delete="CASCADE")
    adapter = pw.CharField(max_length=20)
    base_url = pw.CharField(max_length=300)
    user_name = pw.CharField(max_length=120)
    password_sealed = pw.TextField()
    aes_key_sealed = pw.TextField()
    account_number_sealed = pw.TextField()
    branch_code = pw.CharField(max_length=5, null=True)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    leased_until = pw.DateTimeField(null=True)


class WebhookEndpoint(BaseModel):
    """An account's webhook endpoint, its delivery cursor and the lease of its deliverer.

    ``cursor_seq`` is the last event (account sequence) delivered or skipped; a deliverer
    holds ``lease_owner`` until ``leased_until`` and extends it before every attempt, so no
    two workers deliver to one endpoint at once.
    """

    account = pw.ForeignKeyField(Account, backref="webhooks", on_delete="CASCADE")
    url = pw.CharField(max_length=2048)
    description = pw.CharField(max_length=200, null=True)
    events = pw.TextField(null=True)  # JSON list of event types; null: every durable type
    secret = pw.TextField()  # the signing secret, sealed with QREVENTS_SECRET_KEY
    enabled = pw.BooleanField(default=True)
    disabled_reason = pw.CharField(max_length=40, null=True)
    disabled_at = pw.DateTimeField(null=True)
    last_error = pw.CharField(max_length=300, null=True)
    cursor_seq = pw.BigIntegerField()
    attempts = pw.IntegerField(default=0)  # failed attempts at the event after the cursor
    failing_since = pw.DateTimeField(null=True)
    next_attempt_at = pw.DateTimeField(null=True)
    leased_until = pw.DateTimeField(null=True)
    lease_owner = pw.CharField(max_length=32, null=True)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()


class WebhookDelivery(BaseModel):
    """One delivery attempt of one event to one endpoint, as its account's users read it."""

    endpoint = pw.ForeignKeyField(WebhookEndpoint, backref="deliveries", on_delete="CASCADE")
    delivery_id = pw.CharField(max_length=40)
    event_id = pw.CharField(max_length=128)
    event_seq = pw.BigIntegerField()
    attempt = pw.IntegerField()
    status_code = pw.IntegerField(null=True)
    latency_ms = pw.IntegerField()
    error = pw.CharField(max_length=300, null=True)
    succeeded = pw.BooleanField()
    created_at = pw.DateTimeField(index=True)


TABLES = [
    Account,
    User,
    ApiKey,
    StreamTicket,
    RefreshToken,
    Qr,
    Payment,
    Movement,
    Event,
    BankLink,
    WebhookEndpoint,
    WebhookDelivery,
]
