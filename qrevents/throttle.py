"""Abuse limits: failed logins per email and per client address, failed authentications
per client address and per account, and a request rate per credential on the REST API.

Built on ``limits`` (the library flask-limiter is made of), called directly so that a
refusal is our JSON envelope with ``Retry-After`` and nothing else changes. The counters
live in Redis when ``QREVENTS_REDIS_URL`` is set, so every worker and host shares them,
else in this process. Keys hold a hash of the credential, never the credential.

Not limited (``@unthrottled``, ``@no_credential``): the stream (it has its own per-account
cap), signed bank callbacks (a bank retries and must never be turned away; unsigned ones,
which make us ask the bank, are limited per client address), health, metrics, this API's
description and the dashboard's files. If Redis cannot be reached, requests pass (and for a
few seconds no attempt is made): an outage of the counters must not become an outage of the
API.
"""

import hashlib
import logging
import math
import time

from flask import request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .auth import _credential, is_admin
from .errors import TooManyRequests
from .policy import DEFAULT

log = logging.getLogger(__name__)
STORAGE_RETRY_SECONDS = 5.0


def _limit(text):
    return None if text.strip().lower() == "off" else parse(text)


class Throttle:
    """The limits of one app, and the counters behind them."""

    def __init__(self, settings):
        if settings.redis_url:
            storage = storage_from_string(
                settings.redis_url,
                key_prefix=settings.redis_prefix + "limits",
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        else:
            storage = storage_from_string("memory://")
        self.counters = FixedWindowRateLimiter(storage)
        self.login_per_email = _limit(settings.login_limit_per_email)
        self.login_per_address = _limit(settings.login_limit_per_address)
        self.api_rate = _limit(settings.api_rate_limit)
        self.bank_trigger = _limit(settings.bank_trigger_limit)
        self.failures_per_address = _limit(settings.auth_failure_limit_per_address)
        self.failures_per_account = _limit(settings.auth_failure_limit_per_account)
        self.storage_down_until = 0.0

    def check_request(self, policy=DEFAULT):
        """Refuse an address out of authentication tries, then count a REST request against
        its credential's rate (``policy``: the view's, see ``qrevents.policy``)."""
        if self.failures_per_address is not None and policy.takes_credential:
            who = str(request.remote_addr)
            if not self._safely(self.counters.test, self.failures_per_address, "authfail", who):
                self._refuse_failures(self.failures_per_address, "authfail", who)
        if self.api_rate is None or not policy.throttled:
            return
        if is_admin():
            return  # the operator's key bootstraps deployments; it is not a client's
        credential, _ = _credential()
        who = _digest(credential) if credential else "addr:" + str(request.remote_addr)
        if not self._safely(self.counters.hit, self.api_rate, "api", who):
            self._refuse(self.api_rate, "api", who, "Demasiadas solicitudes con esta credencial")

    def check_bank_trigger(self):
        """Count an unsigned payment notification of this address (each one asks the bank)."""
        if self.bank_trigger is None:
            return
        who = str(request.remote_addr)
        if not self._safely(self.counters.hit, self.bank_trigger, "bank-trigger", who):
            self._refuse(
                self.bank_trigger,
                "bank-trigger",
                who,
                "Demasiadas notificaciones sin firma desde esta dirección",
            )

    def check_login(self, email):
        """Refuse a login while this email or this address has too many recent failures."""
        for limit, scope, who in self._login_keys(email):
            if not self._safely(self.counters.test, limit, scope, who):
                self._refuse(limit, scope, who, "Demasiados inicios de sesión fallidos")

    def count_failed_login(self, email):
        for limit, scope, who in self._login_keys(email):
            self._safely(self.counters.hit, limit, scope, who)

    def count_failed_authentication(self, account_id=None):
        """A credential was given and refused: count it against the client's address and, if
        it proved which account it belongs to, against that account. The failure that spends
        a budget is itself answered 429.

        Out of tries, an address is refused everything that takes a credential, the right one
        included (a guesser must not learn which was right); an account only sees its failing
        credentials refused, so whoever holds one of its revoked keys cannot lock it out."""
        keys = []
        if self.failures_per_address is not None:
            keys.append((self.failures_per_address, "authfail", str(request.remote_addr)))
        if self.failures_per_account is not None and account_id is not None:
            keys.append((self.failures_per_account, "authfail-account", str(account_id)))
        for limit, scope, who in keys:
            if not self._safely(self.counters.hit, limit, scope, who):
                self._refuse_failures(limit, scope, who)

    def _refuse_failures(self, limit, scope, who):
        self._refuse(
            limit, scope, who, "Demasiados intentos de autenticación fallidos; intente más tarde"
        )

    def _login_keys(self, email):
        keys = []
        if self.login_per_email is not None:
            keys.append((self.login_per_email, "login-email", _digest(email.strip().lower())))
        if self.login_per_address is not None:
            keys.append((self.login_per_address, "login-addr", str(request.remote_addr)))
        return keys

    def _refuse(self, limit, scope, who, message):
        try:
            reset_at = self.counters.get_window_stats(limit, scope, who).reset_time
            wait = math.ceil(reset_at - time.time())
        except Exception:
            wait = limit.get_expiry()
        raise TooManyRequests(message, headers={"Retry-After": str(max(1, wait))})

    def _safely(self, call, *args):
        if time.monotonic() < self.storage_down_until:
            return True
        try:
            return call(*args)
        except Exception:
            log.warning("rate limit storage unreachable; not limiting for a few seconds")
            self.storage_down_until = time.monotonic() + STORAGE_RETRY_SECONDS
            return True


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def init_app(app, settings):
    """The app's limits; the request hook calls ``check_request`` before any other work."""
    throttle = Throttle(settings)
    app.extensions["qrevents.throttle"] = throttle
    return throttle
