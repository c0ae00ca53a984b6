"""Webhooks: each account's endpoints (with their delivery cursor and lease) and the log of
every delivery attempt."""

import peewee as pw

VERSION = 5


class _Frozen(pw.Model):
    class Meta:
        legacy_table_names = False


class Account(_Frozen):
    """Only what the foreign key needs of the table m0001 made."""


class WebhookEndpoint(_Frozen):
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    url = pw.CharField(max_length=2048)
    description = pw.CharField(max_length=200, null=True)
    events = pw.TextField(null=True)
    secret = pw.TextField()
    enabled = pw.BooleanField(default=True)
    disabled_reason = pw.CharField(max_length=40, null=True)
    disabled_at = pw.DateTimeField(null=True)
    last_error = pw.CharField(max_length=300, null=True)
    cursor_seq = pw.BigIntegerField()
    attempts = pw.IntegerField(default=0)
    failing_since = pw.DateTimeField(null=True)
    next_attempt_at = pw.DateTimeField(null=True)
    leased_until = pw.DateTimeField(null=True)
    lease_owner = pw.CharField(max_length=32, null=True)
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()


class WebhookDelivery(_Frozen):
    endpoint = pw.ForeignKeyField(WebhookEndpoint, on_delete="CASCADE")
    delivery_id = pw.CharField(max_length=40)
    event_id = pw.CharField(max_length=128)
    event_seq = pw.BigIntegerField()
    attempt = pw.IntegerField()
    status_code = pw.IntegerField(null=True)
    latency_ms = pw.IntegerField()
    error = pw.CharField(max_length=300, null=True)
    succeeded = pw.BooleanField()
    created_at = pw.DateTimeField(index=True)


def up(database):
    with database.bind_ctx([Account, WebhookEndpoint, WebhookDelivery]):
        database.create_tables([WebhookEndpoint, WebhookDelivery], safe=False)
