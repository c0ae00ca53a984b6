"""Password sign-ins that last the working day: refresh tokens, rotated on every use.

A sign-in starts a family of refresh tokens. Each refresh spends the token it was given
and issues the next of the family; a spent token presented again means two holders of one
token (one of them not the user), so the whole family is revoked and both must sign in
again. Every token of a family expires when the first one does: a sign-in lasts the
working day from the moment of the password, however often it is renewed. Sign-out
revokes the family; a user or account no longer active cannot refresh.
Only the tokens' ``jti`` are stored; the tokens are JWTs signed with the app's key.
"""

import secrets
from datetime import timedelta

import jwt
from flask_jwt_extended import create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from models import Account, RefreshToken, User, database

from ..clock import utcnow
from ..errors import Unauthorized


def start_session(user, lifetime_seconds):
    """``(refresh token, expires_at)`` of a new family for ``user``."""
    expires_at = utcnow() + timedelta(seconds=lifetime_seconds)
    return _issue(user, secrets.token_hex(16), expires_at), expires_at


def rotate_session(token):
    """``(user, next token, expires_at)`` for a valid, unspent refresh token (the next one
    expires with it); ``Unauthorized`` otherwise.

    Spending is one conditional UPDATE: of two requests racing with one token, one wins and
    the other is a reuse, which revokes the family.
    """
    claims = _claims(token)
    now = utcnow()
    with database.atomic():
        spent = (
            RefreshToken.update(used_at=now)
            .where(
                (RefreshToken.jti == claims["jti"])
                & RefreshToken.used_at.is_null()
                & RefreshToken.revoked_at.is_null()
            )
            .execute()
        )
        row = RefreshToken.get_or_none(RefreshToken.jti == claims["jti"])
        if row is None:
            raise Unauthorized()
        if spent != 1:
            _revoke_family(row.family, now)
            outcome = None
        else:
            user = User.select(User, Account).join(Account).where(User.id == row.user_id).first()
            if user is None or not user.active or not user.account.active:
                _revoke_family(row.family, now)
                outcome = None
            else:
                outcome = user, _issue(user, row.family, row.expires_at), row.expires_at
    # Raised outside the transaction: the family's revocation is committed.
    if outcome is None:
        raise Unauthorized("La sesión ya no es válida; inicie sesión de nuevo")
    return outcome


def end_session(token):
    """Revoke the family of ``token`` (sign-out); an unreadable token revokes nothing."""
    try:
        claims = _claims(token)
    except Unauthorized:
        return
    row = RefreshToken.get_or_none(RefreshToken.jti == claims["jti"])
    if row is not None:
        _revoke_family(row.family, utcnow())


def _issue(user, family, expires_at):
    now = utcnow()
    token = create_refresh_token(
        identity=str(user.id),
        additional_claims={"acc": user.account_id},
        expires_delta=expires_at - now,
    )
    RefreshToken.create(
        jti=decode_token(token)["jti"],
        family=family,
        user=user.id,
        account=user.account_id,
        created_at=now,
        expires_at=expires_at,
    )
    return token


def _claims(token):
    try:
        claims = decode_token(token)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("La sesión expiró", code="token_expired") from None
    except (jwt.PyJWTError, JWTExtendedException, ValueError, TypeError):
        raise Unauthorized() from None
    if claims.get("type") != "refresh" or not isinstance(claims.get("jti"), str):
        raise Unauthorized()
    return claims


def _revoke_family(family, now):
    RefreshToken.update(revoked_at=now).where(
        (RefreshToken.family == family) & RefreshToken.revoked_at.is_null()
    ).execute()
