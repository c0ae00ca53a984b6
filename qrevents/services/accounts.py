"""Accounts, their users and API keys: bootstrap, login and revocation."""

from flask import current_app
from peewee import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from models import Account, ApiKey, User, database

from ..auth import new_api_key
from ..clock import utcnow
from ..errors import Conflict, NotFound, Unauthorized, ValidationFailed
from ..offload import off_loop
from ..signals import api_key_revoked

# Checked when the email is unknown, so a miss costs what a hit costs: the scrypt hash of a
# public word, written out because hashing it costs every process start 0.15 s of CPU. Its
# method and cost must stay those of new passwords (a test compares them).
_DUMMY_HASH = (
    "scrypt:32768:8:1$R5gxVshhLjxgd2hU$8013142ed6fc90fd7982b6e32f96243df9e4d266257fed4797e654e4"
    "f5260a70b0c6554913011e741cbc9af195a727422855e491ae702b175e7a1f26e12344e1"
)


def create_account(name, currency):
    return Account.create(name=name, currency=currency, created_at=utcnow())


def get_account(account_id):
    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise NotFound("La cuenta no existe")
    return account


def create_user(account_id, email, password, name):
    """A user of the account; the password is kept only as a scrypt hash."""
    get_account(account_id)
    password_hash = off_loop(generate_password_hash, password)
    try:
        with database.atomic():
            return User.create(
                account=account_id,
                email=email.lower(),
                password_hash=password_hash,
                name=name,
                created_at=utcnow(),
            )
    except IntegrityError:
        raise Conflict("Ya existe un usuario con este email", code="email_taken") from None


def login(email, password):
    """The user these credentials name; the same ``Unauthorized`` for every kind of miss."""
    user = User.get_or_none(User.email == email.lower())
    ok = off_loop(check_password_hash, user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active or not user.account.active:
        raise Unauthorized("Email o contraseña incorrectos")
    return user


def create_api_key(account_id, name, *, user_id=None, expires_at=None):
    """``(row, key)``: the key itself exists only in this return value."""
    get_account(account_id)
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(fields={"expiresAt": "debe estar en el futuro"})
    if (
        user_id is not None
        and not User.select().where((User.id == user_id) & (User.account == account_id)).exists()
    ):
        raise NotFound("El usuario no existe en esta cuenta")
    key, prefix, digest = new_api_key()
    row = ApiKey.create(
        account=account_id,
        user=user_id,
        name=name,
        prefix=prefix,
        key_hash=digest,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    return row, key


def list_api_keys(account_id):
    return list(ApiKey.select().where(ApiKey.account == account_id).order_by(ApiKey.id.desc()))


def revoke_api_key(account_id, key_id):
    """Revoke a key of the account; its open streams end on every worker."""
    key = ApiKey.get_or_none((ApiKey.id == key_id) & (ApiKey.account == account_id))
    if key is None:
        raise NotFound("La API key no existe")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.save()
    api_key_revoked.send(current_app._get_current_object(), api_key_id=key.id)
    return key


def revoked_key_ids(key_ids):
    """Which of ``key_ids`` are revoked: streams still open on them must end."""
    query = ApiKey.select(ApiKey.id).where(
        ApiKey.id.in_(list(key_ids)) & ApiKey.revoked_at.is_null(False)
    )
    return {key_id for (key_id,) in query.tuples()}
