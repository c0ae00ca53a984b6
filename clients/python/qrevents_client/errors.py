"""One exception per failure kind, built from the server's error envelope."""

from email.utils import parsedate_to_datetime
from time import time


class QrEventsError(Exception):
    """Any failure qrevents reported, or that kept the client from reaching it."""

    def __init__(self, message, *, status=None, code=None, fields=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.fields = fields or {}
        self.retry_after = retry_after

    def __str__(self):
        where = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        return f"{self.message} ({where})" if where else self.message


class AuthError(QrEventsError):
    """401: the credential is missing, wrong, expired or revoked. Retrying will not help."""


class Forbidden(QrEventsError):
    """403: the credential is valid but may not do this."""


class NotFound(QrEventsError):
    """404."""


class Conflict(QrEventsError):
    """409: the request conflicts with the current state (e.g. the same transactionId with
    another body, or a QR that can no longer be cancelled)."""


class ValidationError(QrEventsError):
    """400/422: ``fields`` maps each refused field to the server's message."""


class RateLimited(QrEventsError):
    """429: ``retry_after`` says how many seconds to wait, when the server said."""


class Unavailable(QrEventsError):
    """5xx, or no answer at all (``status`` None): worth retrying later."""


class BankError(QrEventsError):
    """502 ``bank_rejected`` (the bank refused; ``message`` is the bank's) or 504
    ``bank_unavailable`` (the bank did not answer in time)."""


class WebhookSignatureError(QrEventsError):
    """A webhook whose ``X-QrEvents-Signature`` is missing, malformed, wrong or stale."""


BANK_CODES = ("bank_rejected", "bank_unavailable")
_BY_STATUS = {401: AuthError, 403: Forbidden, 404: NotFound, 409: Conflict, 429: RateLimited}


def error_class(status, code):
    """The exception type for an HTTP error status and the envelope's machine code."""
    if status in (502, 504) and code in BANK_CODES:
        return BankError
    if status in (400, 422):
        return ValidationError
    if status >= 500:
        return Unavailable
    return _BY_STATUS.get(status, QrEventsError)


def retry_after_seconds(value):
    """``Retry-After`` as seconds (it may be a number or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
