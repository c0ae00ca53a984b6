"""BANECO's QR Simple API as the simulated bank answers it, under ``/ApiGateway/``.

The same paths, JSON and encryption as the bank's specification: the password and
the account number arrive AES-encrypted with the merchant's key and are checked; tokens are
HS256 JWTs that really expire. Refusals are a non-zero ``responseCode`` with a Spanish
message; a request the bank cannot read at all is HTTP 400 with one.
"""

import base64
import functools
import io
import json
import re
import time
from datetime import date
from decimal import Decimal, InvalidOperation

import jwt
import segno
import simplejson
from flask import Blueprint, Response, current_app, request

from ..banks.crypto import decrypt
from .ledger import Refused, la_paz_now

bp = Blueprint("baneco", __name__, url_prefix="/ApiGateway/api")

ISSUER = "simulador.qrevents"
AUDIENCE = "BanecoCustomers"
DUE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
MAX_AMOUNT = Decimal("99999999.99")

# responseCode values of the simulated bank (the real bank's list is not published)
INVALID_REQUEST, BAD_CREDENTIALS, NOT_FOUND, NOT_ALLOWED, EXPIRED_TOKEN = 1, 10, 20, 30, 99


class _Refusal(Exception):
    def __init__(self, code, message, http_status=200):
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


def bank():
    return current_app.extensions["simulator"]


def answer(http_status=200, response_code=0, message="", **fields):
    """The bank's JSON answer: ``fields`` then ``responseCode`` and ``message``."""
    body = {**fields, "responseCode": response_code, "message": message}
    return Response(
        simplejson.dumps(body, use_decimal=True),
        status=http_status,
        mimetype="application/json",
    )


def operation(name):
    """Count the request and apply the operation's fault switch around the real work."""

    def decorate(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            switch = bank().faults.take(name)
            done = _work(view, args, kwargs) if switch.get("actFirst") else None
            if switch.get("latency"):
                time.sleep(float(switch["latency"]))
            if switch.get("httpStatus"):
                return Response(
                    "<html><body>Error del banco simulado</body></html>",
                    status=int(switch["httpStatus"]),
                    mimetype="text/html",
                )
            if "body" in switch:
                return Response(json.dumps(switch["body"]), mimetype="application/json")
            if "responseCode" in switch:
                message = switch.get("message", "Operación rechazada por el banco simulado")
                return answer(response_code=int(switch["responseCode"]), message=message)
            return done if done is not None else _work(view, args, kwargs)

        return run

    return decorate


def _work(view, args, kwargs):
    try:
        return view(*args, **kwargs)
    except _Refusal as refusal:
        return answer(refusal.http_status, refusal.code, refusal.message)


def _body():
    try:
        body = json.loads(request.get_data(), parse_float=Decimal)
    except ValueError as exc:
        raise _Refusal(INVALID_REQUEST, "El cuerpo no es JSON válido", 400) from exc
    if not isinstance(body, dict):
        raise _Refusal(INVALID_REQUEST, "Se esperaba un objeto JSON", 400)
    return body


def _text(body, name, max_length, required=True):
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or len(value) > max_length:
        raise _Refusal(INVALID_REQUEST, f"{name} inválido", 400)
    return value


def _merchant():
    """The merchant whose bearer token this is; a refusal if it is missing or expired."""
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    sim = bank()
    try:
        claims = jwt.decode(
            token,
            sim.ledger.token_secret(),
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "usr"]},
        )
        if claims.get("gen") != sim.faults.token_generation:
            raise jwt.ExpiredSignatureError("expired by the fault switch")
    except jwt.ExpiredSignatureError as exc:
        sim.faults.count("expiredToken")
        if sim.faults.settings["expiredTokenAnswer"] == "responseCode":
            raise _Refusal(EXPIRED_TOKEN, "Token expirado") from exc
        raise _Refusal(EXPIRED_TOKEN, "Token expirado", 401) from exc
    except jwt.PyJWTError as exc:
        sim.faults.count("invalidToken")
        raise _Refusal(EXPIRED_TOKEN, "Token inválido", 401) from exc
    account = sim.ledger.account(claims["usr"])
    if account is None:
        raise _Refusal(EXPIRED_TOKEN, "Token inválido", 401)
    return account


@bp.post("/authentication/authenticate")
@operation("authenticate")
def authenticate():
    body = _body()
    user_name = _text(body, "userName", 100)
    encrypted = _text(body, "password", 500)
    sim = bank()
    account = sim.ledger.account(user_name)
    if account is None or _decrypted(account, encrypted) != account["password"]:
        raise _Refusal(BAD_CREDENTIALS, "Usuario o contraseña incorrectos")
    now = int(time.time())
    claims = {
        "usr": user_name,
        "nbf": now,
        "iat": now,
        "exp": now + int(sim.faults.settings["tokenLifetimeSeconds"]),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "gen": sim.faults.token_generation,
    }
    return answer(token=jwt.encode(claims, sim.ledger.token_secret(), algorithm="HS256"))


@bp.post("/qrsimple/generateQR")
@operation("generateQR")
def generate_qr():
    account = _merchant()
    body = _body()
    order = {
        "transactionId": _text(body, "transactionId", 30),
        "currency": body.get("currency"),
        "amount": _amount(body.get("amount")),
        "description": _text(body, "description", 140, required=False),
        "dueDate": _due_date(body.get("dueDate")),
        "singleUse": body.get("singleUse"),
        "modifyAmount": body.get("modifyAmount"),
        "branchCode": _text(body, "branchCode", 5, required=False),
    }
    if order["currency"] not in ("BOB", "USD"):
        raise _Refusal(INVALID_REQUEST, "Moneda inválida (BOB o USD)", 400)
    if not isinstance(order["singleUse"], bool) or not isinstance(order["modifyAmount"], bool):
        raise _Refusal(INVALID_REQUEST, "singleUse y modifyAmount deben ser lógicos", 400)
    credit = _text(body, "accountCredit", 500)
    if _decrypted(account, credit) != account["account_number"]:
        raise _Refusal(NOT_ALLOWED, "La cuenta de abono no corresponde al cliente")
    qr_id = bank().ledger.issue(account["user_name"], order)
    return answer(qrId=qr_id, qrImage=base64.b64encode(qr_png(qr_id, order)).decode("ascii"))


@bp.delete("/qrsimple/cancelQR")
@operation("cancelQR")
def cancel_qr():
    account = _merchant()
    qr_id = _text(_body(), "qrId", 40)
    try:
        bank().ledger.cancel(qr_id, account["user_name"])
    except Refused as refused:
        raise _Refusal(
            NOT_FOUND if refused.status == 404 else NOT_ALLOWED, refused.message
        ) from None
    return answer()


@bp.get("/qrsimple/v2/statusQR/<qr_id>")
@operation("statusQR")
def status_qr(qr_id):
    account = _merchant()
    sim = bank()
    qr = sim.ledger.qr(qr_id, account["user_name"])
    if qr is None:
        raise _Refusal(NOT_FOUND, "QR no encontrado")
    payments = sim.ledger.payments_of(qr_id)
    if sim.faults.settings["paymentShape"] == "object":
        payment = payments[-1] if payments else None
    else:
        payment = payments
    fields = {sim.faults.settings["statusField"]: qr["status"], "payment": payment}
    return answer(**fields)


@bp.get("/qrsimple/v2/paidQR/<day>")
@operation("paidQR")
def paid_qr(day):
    account = _merchant()
    if not re.fullmatch(r"\d{8}", day):
        raise _Refusal(INVALID_REQUEST, "La fecha debe tener el formato yyyyMMdd", 400)
    return answer(paymentList=bank().ledger.paid_on(account["user_name"], day))


def _decrypted(account, text):
    """``text`` decrypted with the merchant's key, or None if it was not made with it."""
    try:
        return decrypt(account["aes_key"], text)
    except ValueError:
        return None


def _amount(value):
    """A positive amount with at most two decimals (a JSON number, as the bank wants it)."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _Refusal(INVALID_REQUEST, "El importe debe ser un número", 400)
    try:
        amount = Decimal(value)
        exact = amount == amount.quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise _Refusal(INVALID_REQUEST, "Importe inválido", 400) from exc
    if not exact:
        raise _Refusal(INVALID_REQUEST, "El importe admite como máximo dos decimales", 400)
    if not Decimal(0) < amount <= MAX_AMOUNT:
        raise _Refusal(INVALID_REQUEST, "Importe fuera de rango", 400)
    return amount.quantize(Decimal("0.01"))


def _due_date(value):
    """A ``yyyy-MM-dd`` date that is not already past in La Paz."""
    if not isinstance(value, str) or not DUE_DATE.match(value):
        raise _Refusal(INVALID_REQUEST, "dueDate debe tener el formato yyyy-MM-dd", 400)
    try:
        due = date.fromisoformat(value)
    except ValueError as exc:
        raise _Refusal(INVALID_REQUEST, "dueDate no es una fecha válida", 400) from exc
    if due < la_paz_now().date():
        raise _Refusal(INVALID_REQUEST, "dueDate ya pasó", 400)
    return value


def qr_png(qr_id, order):
    """A scannable PNG naming the bank, the QR and its amount."""
    text = f"BANCO SIMULADO QR SIMPLE|{qr_id}|{order['amount']} {order['currency']}"
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=8, border=4)
    return out.getvalue()
