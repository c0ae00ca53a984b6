"""The HTTP side of a delivery: one kept-alive connection per endpoint being delivered to,
checked against ``addresses`` once connected, a deadline on the whole attempt, no redirects.

HTTP/1.1 is the standard library's ``http.client`` (gevent makes its socket cooperative):
one POST at a time per endpoint, the connection kept between attempts. CPU per POST to a
local receiver, same machine: ``requests`` 1.7 ms, ``http.client`` 0.33 ms; ``requests``
would be most of a core at 1,000 deliveries a second, and its redirects and pools are not
wanted here. ``connect`` is where the peer's address is checked, before TLS or any byte.
"""

import functools
import http.client
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent

from .addresses import AddressRefused, check_peer

# What is read of a receiver's answer: only the status matters. A body up to this size is
# read and the connection kept; a larger one closes the connection instead.
ANSWER_BYTES = 64 * 1024


@functools.cache
def _tls():
    """The TLS context of every HTTPS delivery, made on the first one: loading the system's CA
    certificates costs each process 50 ms, and most workers never post to HTTPS."""
    return ssl.create_default_context()


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


class _CheckedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose peer address is checked as soon as TCP connects."""

    def __init__(self, host, port, *, https, allow_private, timeout):
        super().__init__(host, port, timeout=timeout)
        self.https = https
        self.allow_private = allow_private

    def connect(self):
        super().connect()
        check_peer(self.sock, allow_private=self.allow_private)
        if self.https:  # TLS only with an address that passed the check
            self.sock = _tls().wrap_socket(self.sock, server_hostname=self.host)


# How a kept connection the receiver closed while it was idle fails, before any answer.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class EndpointConnection:
    """POSTs to one URL over a connection kept open between attempts (reopened after any
    failure), every new connection's peer address checked before a byte is sent."""

    def __init__(self, url, *, allow_private, timeout):
        parts = urlsplit(url)
        https = parts.scheme == "https"
        self.timeout = timeout
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection = _CheckedConnection(
            parts.hostname,
            parts.port or (443 if https else 80),
            https=https,
            allow_private=allow_private,
            timeout=timeout,
        )
        self._used = False  # whether the connection carried an answer already

    def post(self, body, headers):
        """POST ``body`` and say how it went; never raises for the receiver's faults.

        The timeout bounds the whole attempt (connect, send, answer), not each socket read:
        a receiver dripping one byte a second is cut like a silent one.
        """
        started = time.monotonic()
        deadline = gevent.Timeout(self.timeout)
        deadline.start()
        try:
            try:
                reused = self._used and self._connection.sock is not None
                status = self._exchange(body, headers)
            except _STALE:
                if not reused:
                    raise
                # The receiver closed the kept connection while it was idle: nothing was
                # answered, so the request goes once more, on a new connection.
                self.close()
                status = self._exchange(body, headers)
        except gevent.Timeout as fired:
            if fired is not deadline:
                raise
            self.close()
            return _failed(started, None, f"sin respuesta en {self.timeout:g} s", "timeout")
        except AddressRefused as refused:
            self.close()
            return _failed(started, None, str(refused), "address_refused")
        except TimeoutError:
            self.close()
            return _failed(started, None, f"sin respuesta en {self.timeout:g} s", "timeout")
        except (OSError, ValueError, http.client.HTTPException) as error:
            self.close()
            return _failed(started, None, _reason(error), "connection_error")
        finally:
            deadline.close()
        if 200 <= status < 300:
            return Attempt(status, _ms_since(started), None, "success")
        if 300 <= status < 400:
            return _failed(started, status, "redirección no seguida", "redirect")
        return _failed(started, status, f"HTTP {status}", "http_error")

    def close(self):
        self._connection.close()
        self._used = False

    def _exchange(self, body, headers):
        """Send the request; the answer's status (the connection kept if it can be)."""
        self._connection.request("POST", self.target, body=body, headers=headers)
        answer = self._connection.getresponse()
        rest = answer.read(ANSWER_BYTES + 1)
        if len(rest) > ANSWER_BYTES or not answer.isclosed():
            self.close()  # a body too large to read whole: the connection cannot be reused
        else:
            self._used = True
        return answer.status


def _failed(started, status, error, outcome):
    return Attempt(status, _ms_since(started), error[:300], outcome)


def _ms_since(started):
    return int((time.monotonic() - started) * 1000)


def _reason(error):
    return f"error de conexión: {type(error).__name__}: {error}"[:200]
