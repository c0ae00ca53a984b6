"""A bank behind every QR: each account's bank link (with its reconciliation lease), and on
each QR the bank's PNG and when status sync last asked the bank about it."""

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

VERSION = 2


class _Frozen(pw.Model):
    class Meta:
        legacy_table_names = False


class Account(_Frozen):
    """Only what the foreign key needs of the table m0001 made."""


class BankLink(_Frozen):
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


def up(database):
    migrator = SchemaMigrator.from_database(database)
    migrate(
        migrator.add_column("qr", "image_png", pw.BlobField(null=True)),
        migrator.add_column("qr", "bank_checked_at", pw.DateTimeField(null=True)),
    )
    with database.bind_ctx([Account, BankLink]):
        database.create_tables([BankLink], safe=False)
