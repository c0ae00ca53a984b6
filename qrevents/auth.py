"""Who is calling: API keys, JWTs, stream tickets, stream cookies and the admin key.

The kind of a credential is told by the credential itself (API keys start ``qrk_``, JWTs
have three dot-separated parts), not by where it came. Every check is made at every
request and every stream connection.

Tickets and stream cookies stand in for the credential that asked for them, so that a
browser's EventSource never carries a long-lived key or JWT in its URL. Both are rows of
``StreamTicket`` (only their hash is kept), told apart by their prefix: a ticket
(``qrt_``) opens one connection; a stream cookie (``qrc_``) opens any number until it
expires, which is never after its credential does, and is refused once that key is
revoked or its user or account deactivated.
"""

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from flask import current_app, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from peewee import JOIN

from models import Account, ApiKey, PreparedQuery, StreamTicket, User

from .clock import utcnow
from .errors import Forbidden, Unauthorized
from .policy import policy_of

API_KEY_PREFIX = "qrk_"
TICKET_PREFIX = "qrt_"
TICKET_SECONDS = 60
STREAM_COOKIE_PREFIX = "qrc_"
# One cookie per account (``qrevents_stream_<accountId>``): tabs signed in to different
# accounts each reconnect with their own.
STREAM_COOKIE_NAME = "qrevents_stream_"
ACCOUNT_ID = re.compile(r"[0-9]{1,18}")  # as a cookie name's suffix or ?accountId=
_USER_ID = re.compile(r"[1-9][0-9]{0,18}\Z")
MAX_USER_ID = 2**63 - 1  # the largest id SQLite and PostgreSQL's BIGINT hold
MAX_EXP = 253402300800  # 10000-01-01T00:00:00Z: the first moment datetime cannot hold


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller of one account."""

    account_id: int
    user_id: int | None
    auth_type: str  # "apikey" | "jwt"
    token_source: str  # "query" | "header"
    api_key_id: int | None = None
    expires_at: datetime | None = None  # naive UTC; the stream ends then
    host_issuer: str | None = None  # a host application's token: streams and reads only


def hash_secret(secret):
    """Keys and tickets are 256-bit random, so a plain SHA-256 is a safe lookup hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key():
    """``(key, prefix, hash)``: the key is shown once; only the hash is stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12], hash_secret(key)


def _bearer_token():
    """The ``Authorization: Bearer`` token, or None."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    return None


def _credential():
    """``(credential, source)`` from the header or query string, or ``(None, None)``."""
    if bearer := _bearer_token():
        return bearer, "header"
    if request.headers.get("X-API-Key"):
        return request.headers["X-API-Key"].strip(), "header"
    for name in ("api-key", "token"):
        if request.args.get(name):
            return request.args[name], "query"
    return None, None


def authenticate(*, for_stream=False):
    """The identity behind the request's credential; ``Unauthorized`` with a code otherwise
    (or ``TooManyRequests`` when this failure spends a failure limit).

    ``for_stream``: a ticket counts too, and a stream cookie when no other credential came.
    """
    try:
        return _identify(for_stream)
    except Unauthorized as failure:
        _count_failure(failure)
        raise


def _count_failure(failure):
    """A credential given and refused counts against the failure limits (``throttle``)."""
    throttle = current_app.extensions.get("qrevents.throttle")
    if throttle is not None and failure.code != "missing_credentials":
        throttle.count_failed_authentication(failure.account_id)


def _identify(for_stream):
    if for_stream and request.args.get("ticket"):
        return redeem_ticket(request.args["ticket"])
    credential, source = _credential()
    if not credential and for_stream:
        cookie = _stream_cookie()
        if cookie is not None:
            return redeem_stream_cookie(*cookie)
    if not credential:
        raise Unauthorized("Se requieren credenciales", code="missing_credentials")
    if credential.startswith(API_KEY_PREFIX):
        return _api_key_identity(credential, source)
    if credential.count(".") == 2:
        host_jwt = current_app.config["QREVENTS"].host_jwt
        if host_jwt is not None and _issuer_of(credential) == host_jwt["issuer"]:
            identity = host_token_identity(credential, source, host_jwt)
            _forbid_host_writes()
            return identity
        return _jwt_identity(credential, source)
    raise Unauthorized()


def _issuer_of(token):
    """The unverified ``iss``: only to choose which key verifies the token."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return issuer if isinstance(issuer, str) else None


def _forbid_host_writes():
    """A host application's token reads, and writes only where the view says so
    (``policy.host_token_writes``)."""
    view = current_app.view_functions.get(request.endpoint)
    if request.method not in ("GET", "HEAD") and not policy_of(view).host_token_writes:
        raise Forbidden(
            "El token de una aplicación anfitriona solo abre streams y lee; "
            "esta operación requiere el JWT de un usuario o una API key"
        )


def host_token_identity(token, source, host_jwt, now=None):
    """The account a host application's token names, or ``Unauthorized``.

    Signature, issuer and audience checked; ``exp`` and ``iat`` required, the lifetime
    ``exp - iat`` at most the configured maximum (a host app cannot mint a day-long token);
    the account claim must name an existing, active account.
    """
    try:
        claims = jwt.decode(
            token,
            host_jwt["key"],
            algorithms=host_jwt["algorithms"],
            issuer=host_jwt["issuer"],
            audience=host_jwt["audience"],
            options={"require": ["exp", "iat", "iss", "aud"]},
            leeway=HOST_TOKEN_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("El token expiró", code="token_expired") from None
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        raise Unauthorized() from None
    issued, expires = claims["iat"], claims["exp"]
    if not all(_is_number(value) for value in (issued, expires)):
        raise Unauthorized()
    now = time.time() if now is None else now
    if issued > now + HOST_TOKEN_LEEWAY or expires - issued > host_jwt["max_lifetime"]:
        raise Unauthorized("El token de la aplicación anfitriona dura demasiado")
    account_id = _account_id_of(claims.get(host_jwt["account_claim"]))
    if account_id is None:
        raise Unauthorized()
    account = Account.select(Account.id, Account.active).where(Account.id == account_id).first()
    if account is None or not account.active:
        raise Unauthorized()
    return Identity(
        account_id=account.id,
        user_id=None,
        auth_type="jwt",
        token_source=source,
        expires_at=datetime.fromtimestamp(expires, UTC).replace(tzinfo=None),
        host_issuer=host_jwt["issuer"],
    )


HOST_TOKEN_LEEWAY = 5  # seconds of clock difference tolerated between the host app and us


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 2**40


def _account_id_of(value):
    """An account id as a positive integer or its ASCII digits; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, int) and 0 < value < 2**63:
        return value
    return None


def is_admin():
    """Whether the request carries the deployment's admin key, in ``Authorization: Bearer``
    and nowhere else (the documented rule): not in ``X-API-Key``, not in a URL."""
    bearer = _bearer_token()
    admin_key = current_app.config["QREVENTS"].admin_api_key
    return bearer is not None and hmac.compare_digest(bearer.encode(), admin_key.encode())


def require_admin():
    if not is_admin():
        credential, _ = _credential()
        if credential is None:
            raise Unauthorized("Se requieren credenciales", code="missing_credentials")
        failure = Unauthorized("Esta ruta requiere la clave de administración")
        _count_failure(failure)
        raise failure


_API_KEY = PreparedQuery(
    lambda key_hash: (
        ApiKey.select(
            ApiKey.id,
            ApiKey.account,
            ApiKey.user,
            ApiKey.revoked_at,
            ApiKey.expires_at,
            Account.active,
            User.active,
        )
        .join(Account)
        .switch(ApiKey)
        .join(User, join_type=JOIN.LEFT_OUTER)
        .where(ApiKey.key_hash == key_hash)
    )
)


def _api_key_identity(key, source):
    # Only the columns the checks need, with SQL built once: building it for whole rows on
    # each request cost as much as the rest of opening a stream.
    row = next(iter(_API_KEY.rows(hash_secret(key))), None)
    if row is None:
        raise Unauthorized()
    key_id, account_id, user_id, revoked_at, expires_at, account_active, user_active = row
    revoked_at = ApiKey.revoked_at.python_value(revoked_at)
    expires_at = ApiKey.expires_at.python_value(expires_at)
    if not account_active or (user_id is not None and not user_active):
        raise Unauthorized(account_id=account_id)
    if revoked_at is not None:
        raise Unauthorized("Esta API key fue revocada", code="key_revoked", account_id=account_id)
    if expires_at is not None and expires_at <= utcnow():
        raise Unauthorized("Esta API key expiró", code="token_expired", account_id=account_id)
    return Identity(
        account_id=account_id,
        user_id=user_id,
        auth_type="apikey",
        token_source=source,
        api_key_id=key_id,
        expires_at=expires_at,
    )


def _jwt_identity(token, source):
    try:
        claims = decode_token(token)
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "El token expiró", code="token_expired", account_id=_signed_account(token)
        ) from None
    except (jwt.PyJWTError, JWTExtendedException, ValueError, TypeError, OverflowError):
        raise Unauthorized() from None
    user_id, expires = _user_id_of(claims.get("sub")), _moment_of(claims.get("exp"))
    if claims.get("type") != "access" or user_id is None or expires is None:
        raise Unauthorized()
    user = User.select(User, Account).join(Account).where(User.id == user_id).first()
    if user is None:
        raise Unauthorized()
    if not user.active or not user.account.active or claims.get("acc") != user.account_id:
        raise Unauthorized(account_id=user.account_id)
    return Identity(
        account_id=user.account_id,
        user_id=user.id,
        auth_type="jwt",
        token_source=source,
        expires_at=expires,
    )


def _signed_account(token):
    """The ``acc`` of an expired token whose signature is ours, or None."""
    try:
        account_id = decode_token(token, allow_expired=True).get("acc")
    except (jwt.PyJWTError, JWTExtendedException, ValueError, TypeError, OverflowError):
        return None
    return account_id if type(account_id) is int else None


def _user_id_of(sub):
    """A user id written as we write them: ASCII digits, no leading zero, a 64-bit id.

    ``str.isdigit()`` also takes "١" (and ``int`` reads it as 1), and a 40-digit id
    cannot be bound in SQL: a token signed with our key must still name one user, or none.
    """
    if not isinstance(sub, str) or not _USER_ID.match(sub):
        return None
    user_id = int(sub)
    return user_id if user_id <= MAX_USER_ID else None


def _moment_of(exp):
    """``exp`` as a naive UTC datetime, or None if absent or beyond any date we can hold."""
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not 0 < exp < MAX_EXP:
        return None
    return datetime.fromtimestamp(exp, UTC).replace(tzinfo=None)


def issue_ticket(identity):
    """A single-use stream ticket, valid 60 s, standing for ``identity``."""
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    _stand_in_for(identity, ticket, utcnow() + timedelta(seconds=TICKET_SECONDS))
    return ticket, TICKET_SECONDS


def issue_stream_cookie(identity, longest_seconds):
    """``(value, expires_at)`` of a stream cookie standing for ``identity``: valid until the
    credential expires, and ``longest_seconds`` at most (a key may never expire)."""
    value = STREAM_COOKIE_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=longest_seconds)
    if identity.expires_at is not None:
        expires_at = min(expires_at, identity.expires_at)
    _stand_in_for(identity, value, expires_at)
    return value, expires_at


def _stand_in_for(identity, secret, expires_at):
    StreamTicket.create(
        ticket_hash=hash_secret(secret),
        account=identity.account_id,
        user=identity.user_id,
        api_key=identity.api_key_id,
        auth_type=identity.auth_type,
        token_source=identity.token_source,
        credential_expires_at=identity.expires_at,
        expires_at=expires_at,
    )


def redeem_ticket(ticket):
    """The identity a ticket stands for; the ticket is spent even if the check then fails."""
    digest = hash_secret(ticket)
    now = utcnow()
    spent = ticket.startswith(TICKET_PREFIX) and (
        StreamTicket.update(used_at=now)
        .where(
            (StreamTicket.ticket_hash == digest)
            & StreamTicket.used_at.is_null()
            & (StreamTicket.expires_at > now)
        )
        .execute()
    )
    if spent != 1:
        raise Unauthorized("El ticket es desconocido, ya se usó o expiró")
    return _stand_in_identity(StreamTicket.get(StreamTicket.ticket_hash == digest), now)


def _stream_cookie():
    """``(account id, value)`` of the stream cookie to use, or None.

    ``?accountId=`` names the account when the browser holds cookies of several."""
    cookies = {
        name.removeprefix(STREAM_COOKIE_NAME): value
        for name, value in request.cookies.items()
        if name.startswith(STREAM_COOKIE_NAME)
    }
    wanted = request.args.get("accountId")
    if wanted is not None:
        return (wanted, cookies[wanted]) if wanted in cookies else None
    if len(cookies) > 1:
        raise Unauthorized(
            "Hay cookies de stream de varias cuentas: indique ?accountId=",
            code="missing_credentials",
        )
    return next(iter(cookies.items()), None)


def redeem_stream_cookie(account_id, value):
    """The identity a stream cookie of ``account_id`` stands for (it stays valid)."""
    now = utcnow()
    row = None
    if value.startswith(STREAM_COOKIE_PREFIX) and ACCOUNT_ID.fullmatch(account_id):
        row = StreamTicket.get_or_none(
            (StreamTicket.ticket_hash == hash_secret(value))
            & (StreamTicket.account == int(account_id))
        )
    if row is None:
        raise Unauthorized("La cookie de stream no es válida")
    if row.expires_at <= now:
        raise Unauthorized("La cookie de stream expiró", code="token_expired")
    return _stand_in_identity(row, now)


def _stand_in_identity(row, now):
    """The identity of a ticket's or cookie's row, if its credential is still valid."""
    account = Account.get_by_id(row.account_id)
    user = User.get_or_none(User.id == row.user_id) if row.user_id else None
    if not account.active or (user is not None and not user.active):
        raise Unauthorized(account_id=account.id)
    if row.api_key_id is not None:
        key = ApiKey.get_or_none(ApiKey.id == row.api_key_id)
        if key is None or key.revoked_at is not None:
            raise Unauthorized(
                "Esta API key fue revocada", code="key_revoked", account_id=account.id
            )
    if row.credential_expires_at is not None and row.credential_expires_at <= now:
        raise Unauthorized("El token expiró", code="token_expired", account_id=account.id)
    return Identity(
        account_id=row.account_id,
        user_id=row.user_id,
        auth_type=row.auth_type,
        token_source=row.token_source,
        api_key_id=row.api_key_id,
        expires_at=row.credential_expires_at,
    )


def require_user_jwt(identity, managing="API keys"):
    """Managing API keys or webhooks needs a user's JWT: never an API key, nor a host
    application's token.

    A key that could make keys would outlive itself: a key of 30 s made a permanent one, and a
    leaked key survived its own revocation through the keys it made; a key that could register
    webhooks would let whoever holds it point the account's events at itself. A JWT is
    short-lived and comes from a password; the admin's ``/admin/accounts/<id>/api-keys``
    remains for machines.
    """
    if identity.auth_type != "jwt" or identity.user_id is None or identity.host_issuer:
        raise Forbidden(
            f"Gestionar {managing} requiere el JWT de un usuario (POST /auth/login); "
            f"una API key o un token de aplicación anfitriona no puede gestionar {managing}"
        )
