"""The schema as the first release created it with ``create_tables()``, frozen here.

A database that release made already has every table: this migration then finds them and
changes nothing, so it is simply recorded as version 1.
"""

import peewee as pw

VERSION = 1


class _Frozen(pw.Model):
    class Meta:
        legacy_table_names = False


class Account(_Frozen):
    name = pw.CharField(max_length=120)
    currency = pw.CharField(max_length=3)
    balance_cents = pw.BigIntegerField(default=0)
    available_cents = pw.BigIntegerField(default=0)
    event_seq = pw.BigIntegerField(default=0)
    movement_seq = pw.BigIntegerField(default=0)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField()


class User(_Frozen):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    email = pw.CharField(max_length=254, unique=True)
    password_hash = pw.CharField(max_length=255)
    name = pw.CharField(max_length=120)
    active = pw.BooleanField(default=True)
    created_at = pw.DateTimeField()


class ApiKey(_Frozen):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    user = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    name = pw.CharField(max_length=120)
    prefix = pw.CharField(max_length=16)
    key_hash = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class StreamTicket(_Frozen):
    ticket_hash = pw.CharField(max_length=64, unique=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    user = pw.ForeignKeyField(User, null=True, on_delete="CASCADE")
    api_key = pw.ForeignKeyField(ApiKey, null=True, on_delete="CASCADE")
    auth_type = pw.CharField(max_length=8)
    token_source = pw.CharField(max_length=8)
    credential_expires_at = pw.DateTimeField(null=True)
    expires_at = pw.DateTimeField()
    used_at = pw.DateTimeField(null=True)


class Qr(_Frozen):
    qr_id = pw.CharField(max_length=20, unique=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    transaction_id = pw.CharField(max_length=30)
    amount_cents = pw.BigIntegerField()
    currency = pw.CharField(max_length=3)
    description = pw.CharField(max_length=140)
    due_date = pw.DateTimeField(index=True)
    single_use = pw.BooleanField()
    modify_amount = pw.BooleanField()
    status = pw.CharField(max_length=12, index=True)
    status_changed_ms = pw.BigIntegerField(default=0)
    fingerprint = pw.CharField(max_length=64)
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("account", "transaction_id"), True),)


class Payment(_Frozen):
    transaction_id = pw.CharField(max_length=64, unique=True)
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    qr = pw.ForeignKeyField(Qr, on_delete="CASCADE")
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


class Movement(_Frozen):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
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


class Event(_Frozen):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
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


MODELS = [Account, User, ApiKey, StreamTicket, Qr, Payment, Movement, Event]


def up(database):
    """Create what is missing: everything on a new database, nothing on one the first
    release made (its tables are all there)."""
    existing = set(database.get_tables())
    with database.bind_ctx(MODELS):
        missing = [model for model in MODELS if model._meta.table_name not in existing]
        database.create_tables(missing, safe=False)
