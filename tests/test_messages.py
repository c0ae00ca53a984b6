"""One language for people: every human message a response carries is Spanish (as the
successes always were); machine codes (``error.code``, reasons) stay English."""

import ast
import re

import pytest

from qrevents import errors
from tests.live import ROOT

# Words that are English and never Spanish: a message holding one is (partly) English.
ENGLISH = re.compile(
    r"\b(the|is|are|was|has|must|such|too|many|this|only|cannot|wrong|required|invalid|"
    r"should|try|again|busy|shutting|down|of|for|with|not|or|and|to|be)\b",
    re.IGNORECASE,
)
ERROR_TYPES = {cls.__name__ for cls in errors.ApiError.__subclasses__()} | {"ApiError"}


def _text(node):
    """The literal text of a str constant or f-string (placeholders dropped), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) or " " for part in node.values)
    return None


def human_messages():
    """``(place, text)`` of every message written for people in the server's code: error
    messages, field messages, envelope messages."""
    found = []
    for path in (ROOT / "qrevents").rglob("*.py"):
        if path.name == "openapi.py":
            continue  # the API's description, written for developers, in English like docs/
        for node in ast.walk(ast.parse(path.read_text())):
            candidates = []
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ERROR_TYPES | {"success", "failure"} and node.args:
                    candidates.append(node.args[0])
                if name == "fail" and len(node.args) == 2:
                    candidates.append(node.args[1])
                if name == "_refuse" and len(node.args) == 4:
                    candidates.append(node.args[3])
                for keyword in node.keywords:
                    if keyword.arg == "fields" and isinstance(keyword.value, ast.Dict):
                        candidates.extend(keyword.value.values)
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
                candidates.append(node.value)  # errors["limit"] = "..."
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
                candidates.extend(node.value.elts[2:3])  # status, code, message = ...
            for candidate in candidates:
                text = _text(candidate)
                if text is not None:
                    found.append((f"{path.relative_to(ROOT)}:{candidate.lineno}", text))
    return found


def test_every_human_message_in_the_code_is_spanish():
    messages = human_messages()
    assert len(messages) > 60  # the scan sees them: errors, fields, envelopes
    english = [f"{place}: {text}" for place, text in messages if ENGLISH.search(text)]
    assert not english, "\n".join(english)


def test_every_error_type_has_a_spanish_default_and_an_english_code():
    for error_type in errors.ApiError.__subclasses__():
        assert not ENGLISH.search(error_type.message), error_type
        assert re.fullmatch(r"[a-z_]+", error_type.code)


@pytest.mark.parametrize(
    "method, path, status, code, message",
    [
        ("get", "/no-such-route", 404, "not_found", "Ruta no encontrada"),
        ("delete", "/health", 405, "method_not_allowed", "Método no permitido en esta ruta"),
        ("post", "/qr", 401, "missing_credentials", "Se requieren credenciales"),
    ],
    ids=["unknown-route", "wrong-method", "no-credential"],
)
def test_errors_raised_by_the_framework_speak_spanish_too(api, method, path, status, code, message):
    response = getattr(api, method)(path)
    body = response.json()
    assert (response.status_code, body["error"]["code"], body["message"]) == (status, code, message)


def test_a_too_large_body_is_refused_in_spanish(api):
    response = api.post("/auth/login", data=b"x" * (65 * 1024))
    assert response.status_code == 413
    assert response.json()["message"] == "El cuerpo de la solicitud es demasiado grande"
