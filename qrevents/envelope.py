"""The response envelope: ``{"success", "message", "data"}`` plus ``error`` on failure
(docs/CONTRACT.md, section 6)."""

from flask import current_app


def success(message, data=None, status=200, **extra):
    """A successful envelope; ``extra`` keys (e.g. ``duplicate``) sit beside ``data``."""
    body = {"success": True, "message": message, "data": data, **extra}
    return _json(body, status)


def failure(message, code, status, fields=None, data=None, **extra):
    """An error envelope with a machine code and, for validation, field messages."""
    error = {"code": code}
    if fields:
        error["fields"] = fields
    body = {"success": False, "message": message, "data": data, "error": error, **extra}
    return _json(body, status)


def _json(body, status):
    return current_app.response_class(
        current_app.json.dumps(body) + "\n", status=status, mimetype="application/json"
    )
