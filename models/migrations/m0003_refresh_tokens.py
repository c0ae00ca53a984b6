"""Refresh tokens of password sign-ins: one row per token issued, so that a token is used
once (rotation), a reused one revokes its family, and sign-out revokes it."""

import peewee as pw

VERSION = 3


class _Frozen(pw.Model):
    class Meta:
        legacy_table_names = False


class Account(_Frozen):
    """Only what the foreign key needs of the table m0001 made."""


class User(_Frozen):
    """Only what the foreign key needs of the table m0001 made."""


class RefreshToken(_Frozen):
    jti = pw.CharField(max_length=64, unique=True)
    family = pw.CharField(max_length=64, index=True)
    user = pw.ForeignKeyField(User, on_delete="CASCADE")
    account = pw.ForeignKeyField(Account, on_delete="CASCADE")
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(index=True)
    used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


def up(database):
    with database.bind_ctx([Account, User, RefreshToken]):
        database.create_tables([RefreshToken], safe=False)
