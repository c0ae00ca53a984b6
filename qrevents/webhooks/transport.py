"""The HTTP side of a delivery: pooled ``requests`` sessions whose every connection is checked
against ``addresses`` once connected, a deadline on the whole attempt, no redirects."""

import time
from dataclasses import dataclass

import gevent
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .addresses import AddressRefused, check_peer

# What is read of a receiver's answer: only the status matters; a small body keeps the
# connection reusable, a large one is not worth reading.
ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one POST went: ``status`` None when no answer came (then ``error`` says why)."""

    status: int | None
    latency_ms: int
    error: str | None
    outcome: str  # success, http_error, redirect, timeout, connection_error, address_refused

    @property
    def succeeded(self):
        return self.outcome == "success"


def _checked(connection_class, allow_private):
    class Checked(connection_class):
        def _new_conn(self):
            sock = super()._new_conn()
            check_peer(sock, allow_private=allow_private)
            return sock

    return Checked


class _CheckedAdapter(HTTPAdapter):
    """An adapter whose pools open only connections ``check_peer`` lets through."""

    def __init__(self, allow_private, pool_size):
        self._allow_private = allow_private
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        allow = self._allow_private

        class Http(HTTPConnectionPool):
            ConnectionCls = _checked(HTTPConnection, allow)

        class Https(HTTPSConnectionPool):
            ConnectionCls = _checked(HTTPSConnection, allow)

        self.poolmanager.pool_classes_by_scheme = {"http": Http, "https": Https}


def new_session(*, allow_private, pool_size):
    """A session for deliveries: checked connections, no proxies from the environment (the
    check would see the proxy), no cookies kept between receivers."""
    session = requests.Session()
    session.trust_env = False
    adapter = _CheckedAdapter(allow_private, pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def post(session, url, body, headers, timeout):
    """POST ``body`` and say how it went; never raises for the receiver's faults.

    ``timeout`` bounds the whole attempt (connect, send, answer), not each socket read: a
    receiver dripping one byte a second is cut like a silent one.
    """
    started = time.monotonic()
    deadline = gevent.Timeout(timeout)
    deadline.start()
    try:
        response = session.post(
            url,
            data=body,
            headers=headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        try:
            response.raw.read(ANSWER_BYTES, decode_content=False)
        finally:
            response.close()
    except gevent.Timeout as fired:
        if fired is not deadline:
            raise
        return _failed(started, None, f"sin respuesta en {timeout:g} s", "timeout")
    except AddressRefused as refused:
        return _failed(started, None, str(refused), "address_refused")
    except requests.Timeout:
        return _failed(started, None, f"sin respuesta en {timeout:g} s", "timeout")
    except (requests.RequestException, OSError) as error:
        return _failed(started, None, _short(error), "connection_error")
    finally:
        deadline.close()
        session.cookies.clear()  # a receiver's cookie never reaches another
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(status, _ms_since(started), None, "success")
    if 300 <= status < 400:
        return _failed(started, status, "redirección no seguida", "redirect")
    return _failed(started, status, f"HTTP {status}", "http_error")


def _failed(started, status, error, outcome):
    return Attempt(status, _ms_since(started), error[:300], outcome)


def _ms_since(started):
    return int((time.monotonic() - started) * 1000)


def _short(error):
    """The innermost reason of a connection error, without the URL's query."""
    reason = error
    while reason.__context__ is not None and len(str(reason)) > 120:
        reason = reason.__context__
    return f"error de conexión: {type(reason).__name__}: {reason}"
