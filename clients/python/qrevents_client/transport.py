"""The server's JSON envelope, ``{"success", "message", "data", "error"?}``, read from a
response: its ``data``, or the typed error it describes."""

from .errors import error_class, retry_after_seconds
from .money import loads


def envelope_data(response):
    """``data`` of a successful response; the typed error of a failed one."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return loads(response.content)["data"]


def error_from_response(response):
    """The exception for an error response, from its envelope when it has one (a proxy's
    HTML error page has none: the HTTP status then says it all)."""
    status = response.status_code
    try:
        body = loads(response.content)
        error = body.get("error") or {}
        message, code, fields = body.get("message"), error.get("code"), error.get("fields")
    except (ValueError, AttributeError):
        message, code, fields = None, None, None
    return error_class(status, code)(
        message or response.reason or f"HTTP {status}",
        status=status,
        code=code or f"http_{status}",
        fields=fields,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )
