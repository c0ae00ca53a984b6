"""One error type per failure kind, and the one place they become the JSON envelope."""

from flask import request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from .envelope import failure


class ApiError(Exception):
    """A failure the client caused or must know about; never a stack trace on the wire."""

    status = 400
    code = "bad_request"
    message = "Bad request"

    def __init__(self, message=None, *, code=None, fields=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields
        self.headers = headers or {}


class InvalidJson(ApiError):
    status, code, message = 400, "invalid_json", "The body must be a JSON object"


class ValidationFailed(ApiError):
    status, code, message = 422, "validation_failed", "Some fields are not valid"


class Unauthorized(ApiError):
    status, code, message = 401, "invalid_credentials", "Invalid credentials"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "Not allowed for this credential"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "Conflicts with the current state"


class TooManyStreams(ApiError):
    status, code, message = 429, "too_many_streams", "Too many open streams for this account"


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests"


class BankRefused(ApiError):
    """The bank answered with a refusal; the message is the bank's own."""

    status, code, message = 502, "bank_rejected", "El banco rechazó la operación"


class BankTimedOut(ApiError):
    status, code, message = 504, "bank_unavailable", "El banco no respondió a tiempo"


class Unavailable(ApiError):
    status, code, message = 503, "unavailable", "A dependency is unavailable"


def register_error_handlers(app):
    """Map every error, ours or Werkzeug's, to the envelope."""

    @app.errorhandler(ApiError)
    def api_error(error):
        response = failure(error.message, error.code, error.status, fields=error.fields)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = (error.name or "error").lower().replace(" ", "_")
        response = failure(error.description or error.name, code, error.code)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(MaxConnectionsExceeded)
    def pool_exhausted(error):
        # Overload, not a bug: every pooled connection stayed busy for the pool's whole wait.
        app.logger.warning(
            "no database connection free in time on %s %s", request.method, request.path
        )
        return api_error(
            Unavailable("The server is busy; try again shortly", headers={"Retry-After": "1"})
        )

    @app.errorhandler(Exception)
    def unexpected(error):
        # request.path, never the query string: it may hold a credential
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return failure("Internal error", "internal_error", 500)
