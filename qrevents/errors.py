"""One error type per failure kind, and the one place they become the JSON envelope."""

from flask import request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from .envelope import failure
from .scrub import scrub_text


class ApiError(Exception):
    """A failure the client caused or must know about; never a stack trace on the wire."""

    status = 400
    code = "bad_request"
    message = "Solicitud no válida"

    def __init__(self, message=None, *, code=None, fields=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields
        self.headers = headers or {}


class InvalidJson(ApiError):
    status, code, message = 400, "invalid_json", "El cuerpo debe ser un objeto JSON"


class ValidationFailed(ApiError):
    status, code, message = 422, "validation_failed", "Algunos campos no son válidos"


class Unauthorized(ApiError):
    status, code, message = 401, "invalid_credentials", "Credenciales no válidas"

    def __init__(self, message=None, *, account_id=None, **options):
        super().__init__(message, **options)
        # The account a failing credential proves it belongs to (a revoked key, an expired
        # JWT we signed), for the per-account failure limit; never shown to the client.
        self.account_id = account_id


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "No permitido para esta credencial"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "No encontrado"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "En conflicto con el estado actual"


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", "Demasiadas solicitudes"


class BankRefused(ApiError):
    """The bank answered with a refusal; the message is the bank's own."""

    status, code, message = 502, "bank_rejected", "El banco rechazó la operación"


class BankTimedOut(ApiError):
    status, code, message = 504, "bank_unavailable", "El banco no respondió a tiempo"


class BankLinkUnreadable(ApiError):
    """The link's secrets were sealed with another QREVENTS_SECRET_KEY (the setting changed)."""

    status, code = 500, "bank_link_unreadable"
    message = "El vínculo con el banco no se puede leer; vuelva a vincular la cuenta"


class Unavailable(ApiError):
    status, code, message = 503, "unavailable", "Un servicio necesario no está disponible"


class InvalidPathId(HTTPException):
    """An id in the path refused while the URL is matched (``routes.converters``): Flask lets
    only an HTTPException out of matching, so this one carries the 422 to answer."""

    code = 422

    def __init__(self, field, message):
        super().__init__()
        self.error = ValidationFailed(fields={field: message})


# Werkzeug describes its errors in English; our envelope's messages are Spanish throughout.
HTTP_MESSAGES = {
    400: "Solicitud no válida",
    404: "Ruta no encontrada",
    405: "Método no permitido en esta ruta",
    408: "La solicitud tardó demasiado",
    411: "Falta la longitud del cuerpo (Content-Length)",
    413: "El cuerpo de la solicitud es demasiado grande",
    414: "La URL es demasiado larga",
    415: "Tipo de contenido no admitido",
    431: "Las cabeceras de la solicitud son demasiado grandes",
}


def register_error_handlers(app):
    """Map every error, ours or Werkzeug's, to the envelope."""

    @app.errorhandler(ApiError)
    def api_error(error):
        response = failure(error.message, error.code, error.status, fields=error.fields)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(InvalidPathId)
    def invalid_path_id(error):
        return api_error(error.error)

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = (error.name or "error").lower().replace(" ", "_")
        message = HTTP_MESSAGES.get(error.code, f"Error HTTP {error.code}")
        response = failure(message, code, error.code)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(MaxConnectionsExceeded)
    def pool_exhausted(error):
        # Overload, not a bug: every pooled connection stayed busy for the pool's whole wait.
        app.logger.warning(
            "no database connection free in time on %s %s",
            request.method,
            scrub_text(request.path),
        )
        return api_error(
            Unavailable("Servidor ocupado; intente de nuevo pronto", headers={"Retry-After": "1"})
        )

    @app.errorhandler(Exception)
    def unexpected(error):
        # the path, never the query string: it may hold a credential
        app.logger.exception("unhandled error on %s %s", request.method, scrub_text(request.path))
        return failure("Error interno", "internal_error", 500)
