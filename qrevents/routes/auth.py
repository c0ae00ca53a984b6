"""Password sign-in: ``POST /auth/login`` for a short-lived JWT and a refresh cookie,
``POST /auth/refresh`` to renew both, ``POST /auth/logout`` to end the sign-in."""

from flask import Blueprint, current_app, request
from flask_jwt_extended import create_access_token

from .. import bodies
from ..clock import utcnow
from ..envelope import failure, success
from ..errors import Unauthorized
from ..policy import no_credential
from ..services.accounts import login
from ..services.sessions import end_session, rotate_session, start_session
from ..validation import json_object

bp = Blueprint("auth", __name__)

# HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), and sent
# only to the /auth routes: the refresh token never travels with API calls or streams.
REFRESH_COOKIE = "qrevents_refresh"


@bp.post("/auth/login")
@no_credential  # limited by failed attempts instead, per email and per address
def log_in():
    body = bodies.LOGIN.read(json_object())
    email, password = body["email"], body["password"]
    throttle = current_app.extensions["qrevents.throttle"]
    throttle.check_login(email)
    try:
        user = login(email, password)
    except Unauthorized:
        throttle.count_failed_login(email)
        raise
    settings = current_app.config["QREVENTS"]
    refresh_token, expires_at = start_session(user, settings.refresh_expires_seconds)
    return _signed_in(user, refresh_token, expires_at, "Sesión iniciada")


@bp.post("/auth/refresh")
def refresh():
    """A new access token for the refresh cookie, which is rotated (spent and replaced)."""
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise Unauthorized("Se requiere la cookie de sesión", code="missing_credentials")
    try:
        user, next_token, expires_at = rotate_session(token)
    except Unauthorized as refused:
        response = failure(refused.message, refused.code, refused.status)
        _forget_cookie(response)
        return response
    return _signed_in(user, next_token, expires_at, "Sesión renovada")


@bp.post("/auth/logout")
def log_out():
    """Revoke the sign-in of the refresh cookie (if any) and forget the cookie."""
    token = request.cookies.get(REFRESH_COOKIE)
    if token:
        end_session(token)
    response = success("Sesión cerrada", None)
    _forget_cookie(response)
    return response


def _signed_in(user, refresh_token, expires_at, message):
    """The access token, and the refresh cookie until the sign-in's end (not extended)."""
    settings = current_app.config["QREVENTS"]
    refresh_seconds = max(0, round((expires_at - utcnow()).total_seconds()))
    token = create_access_token(identity=str(user.id), additional_claims={"acc": user.account_id})
    data = {
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresIn": settings.jwt_expires_seconds,
        "refreshExpiresIn": refresh_seconds,
        "userId": user.id,
        "accountId": user.account_id,
    }
    response = success(message, data)
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=refresh_seconds,
        path=request.script_root + "/auth",
        secure=settings.env == "production",
        httponly=True,
        samesite="Strict",
    )
    return response


def _forget_cookie(response):
    response.delete_cookie(
        REFRESH_COOKIE,
        path=request.script_root + "/auth",
        secure=current_app.config["QREVENTS"].env == "production",
        httponly=True,
        samesite="Strict",
    )
