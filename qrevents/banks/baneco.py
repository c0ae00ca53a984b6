"""Banco Económico's QR Simple API (its API Market specification v1.3), as a bank client.

One client per bank link: it authenticates with the encrypted password, keeps the bank's JWT
until a minute before it expires (one refresh at a time), and speaks the five operations
docs/BANKS.md describes, over a pooled HTTP session per bank host. What the bank's
specification leaves open is parsed defensively (docs/BANKS.md, "What the bank's
specification leaves unknown"): any answer we cannot read is ``BankUnavailable``, never a
``KeyError``.
"""

import base64
import binascii
import json
import logging
import threading
import time
from decimal import Decimal
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote, urlsplit

import jwt
import requests
import simplejson
from requests.adapters import HTTPAdapter

from .. import metrics
from ..logs import log_event
from . import BankRejected, BankUnavailable, IssuedQr, QrStatus, status_name
from .crypto import encrypt

POOL_SIZE = 50  # kept-alive connections per bank host (concurrent calls of every account there)
TOKEN_MARGIN = 60.0  # seconds before the token's expiry at which it is renewed
UNKNOWN_TOKEN_LIFETIME = 300.0  # seconds a token with no readable lifetime is trusted
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URL_PREFIX = "data:image/png;base64,"

_sessions = {}
_sessions_lock = None


def client(link, *, connect_timeout, read_timeout, read_attempts=3):
    """The ``open_bank`` entry point of this adapter module."""
    return BanecoClient(
        link,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        read_attempts=read_attempts,
    )


def session_for(base_url):
    """One pooled ``requests`` session per bank host (scheme, host and port), shared by every
    account at that bank; it keeps no cookies, so no account's state reaches another's."""
    global _sessions_lock
    if _sessions_lock is None:
        _sessions_lock = threading.Lock()  # made after gevent's patching: greenlet-aware
    parts = urlsplit(base_url)
    host = f"{parts.scheme}://{parts.netloc}"
    with _sessions_lock:
        session = _sessions.get(host)
        if session is None:
            session = requests.Session()
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
            session.mount(host, adapter)
            _sessions[host] = session
        return session


class _Answer:
    """One HTTP exchange with the bank, classified."""

    def __init__(self, http_status, body):
        self.http_status = http_status
        self.body = body  # a dict, or None when the body was not a JSON object

    @property
    def unauthorized(self):
        return self.http_status == 401

    @property
    def response_code(self):
        return _response_code(self.body)

    @property
    def message(self):
        message = (self.body or {}).get("message")
        return message if isinstance(message, str) else ""


class BanecoClient:
    """A BANECO account's client: ``issue``, ``cancel``, ``status``, ``paid_on``."""

    def __init__(self, link, *, connect_timeout, read_timeout, read_attempts):
        self._link = link
        self._base = link.base_url if link.base_url.endswith("/") else link.base_url + "/"
        self._timeout = (connect_timeout, read_timeout)
        self._read_attempts = max(1, read_attempts)
        self._session = session_for(self._base)
        self._token = None
        self._token_good_until = 0.0  # time.monotonic() past which the token is renewed
        self._token_lock = threading.Lock()  # made after gevent's patching: greenlet-aware
        self._auth_failure = None  # (monotonic time, error) of the last failed authentication

    # The four operations of the interface

    def issue(self, order):
        """generateQR: the bank's qrId and PNG for ``order``."""
        body = {
            "transactionId": order.transaction_id,
            "accountCredit": encrypt(self._link.aes_key, self._link.account_number),
            "currency": order.currency,
            "amount": (Decimal(order.amount_cents) / 100).quantize(Decimal("0.01")),
            "description": order.description or "",
            "dueDate": order.due_date.strftime("%Y-%m-%d"),
            "singleUse": order.single_use,
            "modifyAmount": order.modify_amount,
        }
        if self._link.branch_code:
            body["branchCode"] = self._link.branch_code
        answer = self._call("generateQR", "POST", "api/qrsimple/generateQR", body)
        qr_id = answer.get("qrId")
        if isinstance(qr_id, int) and not isinstance(qr_id, bool):
            qr_id = str(qr_id)
        if not isinstance(qr_id, str) or not qr_id.strip():
            raise self._garbled("generateQR", "qrId")
        return IssuedQr(qr_id=qr_id.strip(), image_png=self._png(answer.get("qrImage")))

    def cancel(self, qr_id):
        """cancelQR: a DELETE carrying a JSON body, as the bank defines it."""
        self._call("cancelQR", "DELETE", "api/qrsimple/cancelQR", {"qrId": qr_id})

    def status(self, qr_id):
        """v2/statusQR: the QR's status code and its payments (retried: it is a read)."""
        path = "api/qrsimple/v2/statusQR/" + quote(qr_id, safe="")
        answer = self._call("statusQR", "GET", path)
        code = _integer(_field_ignoring_case(answer, "statusQrCode"))
        if code is None:
            raise self._garbled("statusQR", "statusQrCode")
        name = status_name(code)
        if name == "unknown":
            self._warn("statusQR", "unknown_status", code=code)
        payments = _payment_list(answer.get("payment"))
        if payments is None:
            raise self._garbled("statusQR", "payment")
        return QrStatus(code=code, status=name, payments=payments)

    def paid_on(self, day):
        """v2/paidQR: every payment the bank credited on a La Paz day (retried: it is a read)."""
        answer = self._call("paidQR", "GET", "api/qrsimple/v2/paidQR/" + day.strftime("%Y%m%d"))
        if "paymentList" not in answer:
            raise self._garbled("paidQR", "paymentList")
        payments = _payment_list(answer["paymentList"])
        if payments is None:
            raise self._garbled("paidQR", "paymentList")
        return payments

    # Requests

    def _call(self, operation, method, path, body=None):
        """The bank's answer to an authorized request (``responseCode`` 0), or the error.

        Reads are repeated with a growing pause when the bank did not answer them usefully;
        generate and cancel never are, since the bank may have acted on the first request,
        nor is a failed authentication (its waiters would only queue behind it).
        """
        attempts = self._read_attempts if method == "GET" else 1
        for attempt in range(attempts):
            try:
                return self._authorized(operation, method, path, body)
            except BankUnavailable as exc:
                if attempt + 1 == attempts or exc.operation != operation:
                    raise
                time.sleep(0.2 * 2**attempt)  # gevent's sleep under a gevent worker
        raise AssertionError("unreachable")

    def _authorized(self, operation, method, path, body):
        """One request with the current token, and once more with a new one if the bank
        refused the token (HTTP 401), or refused anything while the token was an old one:
        the specification does not say which ``responseCode`` an expired token gets."""
        token, fresh = self._valid_token()
        answer = self._send(operation, method, path, body, token)
        if answer.unauthorized or (answer.response_code != 0 and not fresh):
            token = self._renew_token(token)
            answer = self._send(operation, method, path, body, token)
        return self._accepted(operation, answer)

    def _send(self, operation, method, path, body, token=None):
        """One HTTP exchange, timed and counted; ``BankUnavailable`` if it gave no readable
        answer (timeout, connection error, HTTP 5xx, a body that is not a JSON object)."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = simplejson.dumps(body, use_decimal=True).encode("utf-8")
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self._base + path,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
            content = response.content
        except requests.Timeout as exc:
            raise self._unavailable(operation, "timeout", started) from exc
        except (requests.RequestException, OSError) as exc:
            raise self._unavailable(operation, type(exc).__name__, started) from exc
        answer = _Answer(response.status_code, _json_object(content))
        if response.status_code >= 500:
            raise self._unavailable(operation, f"http_{response.status_code}", started)
        if not answer.unauthorized and answer.response_code is None:
            raise self._unavailable(operation, f"unreadable_http_{response.status_code}", started)
        metrics.BANK_LATENCY.labels(operation).observe(time.monotonic() - started)
        outcome = "ok" if answer.response_code == 0 and not answer.unauthorized else "rejected"
        metrics.BANK_REQUESTS.labels(operation, outcome).inc()
        return answer

    def _accepted(self, operation, answer):
        """The body of an answer with ``responseCode`` 0; a refusal raises ``BankRejected``."""
        if answer.unauthorized:
            code = answer.response_code or 401
            message = answer.message or "El banco rechazó la autorización"
        elif answer.response_code != 0:
            code = answer.response_code
            message = answer.message or f"El banco rechazó la operación (código {code})"
        else:
            return answer.body
        self._warn(operation, "rejected", code=code, message=message)
        raise BankRejected(operation, code, message)

    # The token

    def _valid_token(self):
        """``(token, fresh)``: the kept token while it has more than the margin left, else a
        new one (fresh: obtained during this call, so a refusal is not the token's fault)."""
        if self._token is not None and time.monotonic() < self._token_good_until:
            return self._token, False
        waited_since = time.monotonic()
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_good_until:
                return self._token, True  # another greenlet just authenticated
            self._raise_recent_auth_failure(waited_since)
            return self._authenticate(), True

    def _renew_token(self, stale):
        """A token other than ``stale``: the one another greenlet already fetched, or a new one."""
        waited_since = time.monotonic()
        with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            self._raise_recent_auth_failure(waited_since)
            self._token = None
            return self._authenticate()

    def _raise_recent_auth_failure(self, waited_since):
        """While we queued for the lock, another greenlet's authentication failed: fail alike
        at once rather than make every waiter wait its own timeout in turn."""
        if self._auth_failure is not None and self._auth_failure[0] >= waited_since:
            raise self._auth_failure[1].with_traceback(None)

    def _authenticate(self):
        """authenticate: the bank's token, kept until a minute before it expires."""
        body = {
            "userName": self._link.user_name,
            "password": encrypt(self._link.aes_key, self._link.password),
        }
        try:
            answer = self._send("authenticate", "POST", "api/authentication/authenticate", body)
            answer = self._accepted("authenticate", answer)
            token = answer.get("token")
            if not isinstance(token, str) or not token:
                raise self._garbled("authenticate", "token")
        except (BankRejected, BankUnavailable) as exc:
            self._auth_failure = (time.monotonic(), exc)
            raise
        self._auth_failure = None
        self._token = token
        self._token_good_until = time.monotonic() + _lifetime(token) - TOKEN_MARGIN
        return token

    # Parsing and reporting

    def _png(self, image):
        """The PNG bytes of the bank's base64 ``qrImage`` (a ``data:`` prefix tolerated)."""
        if not isinstance(image, str):
            raise self._garbled("generateQR", "qrImage")
        if image.startswith(DATA_URL_PREFIX):
            image = image[len(DATA_URL_PREFIX) :]
        try:
            png = base64.b64decode("".join(image.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self._garbled("generateQR", "qrImage") from exc
        if not png.startswith(PNG_SIGNATURE):
            raise self._garbled("generateQR", "qrImage")
        return png

    def _unavailable(self, operation, code, started):
        """Count and log an exchange that gave no usable answer."""
        metrics.BANK_LATENCY.labels(operation).observe(time.monotonic() - started)
        metrics.BANK_REQUESTS.labels(operation, "unavailable").inc()
        self._warn(operation, "unavailable", code=code)
        return BankUnavailable(operation, code)

    def _garbled(self, operation, name):
        """An answer with ``responseCode`` 0 whose ``name`` is missing or unreadable."""
        self._warn(operation, "garbled", code=f"field_{name}")
        return BankUnavailable(operation, f"missing or unreadable {name}")

    def _warn(self, operation, outcome, *, code, message=None):
        """A warning line naming the operation and the code: never a token nor a secret."""
        fields = {"bank": urlsplit(self._base).netloc, "operation": operation}
        fields.update(outcome=outcome, code=code)
        if message:
            fields["message"] = message[:200]
        log_event("bank_request", logging.WARNING, **fields)


def _json_object(content):
    """A JSON object body (floats kept exact as ``Decimal``), or None."""
    try:
        body = json.loads(content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _integer(value):
    """An integer sent as a number or as a string of digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _response_code(body):
    return None if body is None else _integer(body.get("responseCode"))


def _field_ignoring_case(body, name):
    """``statusQrCode`` or ``statusQRCode``: the specification spells it both ways."""
    if name in body:
        return body[name]
    wanted = name.lower()
    for key, value in body.items():
        if key.lower() == wanted:
            return value
    return None


def _payment_list(value):
    """PaymentQR objects as a list: one object, an array of them, or nothing (null);
    None when it is none of these."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    return None


def _lifetime(token):
    """Seconds the bank's JWT lives, read from its claims (it is the bank's: not verified).

    ``exp - iat`` measured on our own clock from now, so a skew between the bank's clock and
    ours does not matter; ``exp`` alone when ``iat`` is missing; a default when neither is
    readable (the bank then tells us by refusing the token, and we renew it).
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return UNKNOWN_TOKEN_LIFETIME
    exp, iat = _integer(claims.get("exp")), _integer(claims.get("iat"))
    if exp is not None and iat is not None and exp > iat:
        return float(exp - iat)
    if exp is not None:
        return max(0.0, exp - time.time())
    return UNKNOWN_TOKEN_LIFETIME
