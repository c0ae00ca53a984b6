"""The stream's own WSGI entry (``qrevents.stream_wsgi``) answers a GET of the stream exactly
as Flask's dispatch of the view does: same status, same headers in the same order, same body,
whatever the outcome; and it refuses to run beside a request hook it would skip."""

import json
import re

import pytest
from werkzeug.test import EnvironBuilder

from models import database
from qrevents import create_app
from qrevents.services.accounts import create_account, create_api_key, revoke_api_key
from qrevents.stream_wsgi import StreamEntry

ORIGIN = "https://host-app.example"


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """The app's ``StreamEntry`` over a SQLite file, with an account, a key and a revoked key."""
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'entry.db'}")
    app = create_app({"CORS_ORIGINS": ORIGIN, "MAX_STREAMS_PER_ACCOUNT": 2})
    with app.app_context(), database.connection_context():
        account = create_account("Entry", "BOB")
        _, app.key = create_api_key(account.id, "live")
        revoked, app.revoked_key = create_api_key(account.id, "revoked")
        revoke_api_key(account.id, revoked.id)
    assert isinstance(app.wsgi_app, StreamEntry)
    return app.wsgi_app


def answer(wsgi_app, path, headers, query=None):
    """``(status, headers, first body chunk)``, run-to-run values normalised; the body closed."""
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=response_headers)

    environ = EnvironBuilder(path=path, headers=headers, query_string=query).get_environ()
    body = wsgi_app(environ, start_response)
    try:
        first = next(iter(body), b"")
    finally:
        getattr(body, "close", lambda: None)()
    first = re.sub(rb'"timestamp":"[^"]+"', b'"timestamp":"T"', first)
    first = re.sub(rb"conn_\d+_[a-z0-9]{6}", b"conn_ID", first)
    first = re.sub(rb"retry: \d+", b"retry: R", first)
    shown = [(k, "ID" if k == "X-Request-ID" else v) for k, v in started["headers"]]
    return started["status"], shown, first


def cases(app):
    key, revoked = app.key, app.revoked_key
    return {
        "accepted, header key, allowed origin": (
            {"Authorization": f"Bearer {key}", "Origin": ORIGIN},
            None,
        ),
        "accepted, query key, unknown Last-Event-ID": (
            {"Last-Event-ID": "qr_created_nothing", "Origin": "https://elsewhere.example"},
            {"api-key": key},
        ),
        "missing credentials": ({}, None),
        "unknown key": ({"Authorization": "Bearer qrk_not-a-key"}, None),
        "revoked key": ({"X-API-Key": revoked}, None),
        "garbage ticket": ({}, {"ticket": "nope"}),
    }


def logged(caplog):
    """The JSON lines logged since the last call, run-to-run values left out."""
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "qrevents.events"]
    caplog.clear()
    varying = {"ts", "requestId", "durationMs", "connectionId"}
    return [{k: v for k, v in line.items() if k not in varying} for line in lines]


@pytest.mark.parametrize("path", ["/events/stream", "/api/events/stream"])
def test_the_entry_answers_every_stream_get_as_flask_does(entry, path, caplog):
    caplog.set_level("INFO", logger="qrevents.events")
    for name, (headers, query) in cases(entry.app).items():
        logged(caplog)
        ours = answer(entry, path, headers, query)
        our_lines = logged(caplog)
        flasks = answer(entry.flask_wsgi_app, path, headers, query)
        assert ours == flasks, name
        assert our_lines == logged(caplog), name
        requests = [line for line in our_lines if line["event"] == "request"]
        assert [line["status"] for line in requests] == [int(ours[0][:3])], name
    accepted = answer(entry, path, {"Authorization": f"Bearer {entry.app.key}"})
    assert accepted[0] == "200 OK" and b"event: connection" in accepted[2]


def test_a_stream_over_the_accounts_limit_is_refused_alike(entry):
    headers = {"Authorization": f"Bearer {entry.app.key}"}
    held = []
    for _ in range(2):  # the account's limit (2) taken by streams left open
        environ = EnvironBuilder(path="/events/stream", headers=headers).get_environ()
        held.append(entry(environ, lambda *args: None))
        next(iter(held[-1]))
    try:
        ours = answer(entry, "/events/stream", headers)
        flasks = answer(entry.flask_wsgi_app, "/events/stream", headers)
        assert ours == flasks
        assert b"too_many_streams" in ours[2] and "Content-Length" in dict(ours[1])
    finally:
        for body in held:
            body.close()


def test_other_methods_and_paths_go_to_flask(entry):
    passed = []
    flask_wsgi_app = entry.flask_wsgi_app

    def flask_spy(environ, start_response):
        passed.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return flask_wsgi_app(environ, start_response)

    entry.flask_wsgi_app = flask_spy
    statuses = []
    for method, path in [
        ("GET", "/events/stream"),
        ("HEAD", "/events/stream"),
        ("GET", "/events/stream/"),
        ("POST", "/api/events/stream"),
    ]:
        environ = EnvironBuilder(path=path, method=method).get_environ()
        body = entry(environ, lambda status, headers, exc_info=None: statuses.append(status))
        getattr(body, "close", lambda: None)()
    assert passed == [
        ("HEAD", "/events/stream"),
        ("GET", "/events/stream/"),
        ("POST", "/api/events/stream"),
    ]
    assert statuses == [
        "401 UNAUTHORIZED",
        "401 UNAUTHORIZED",
        "404 NOT FOUND",
        "405 METHOD NOT ALLOWED",
    ]


def test_a_hook_the_entry_would_skip_stops_the_app_from_starting(entry):
    app = entry.app
    app.after_request_funcs.setdefault(None, []).append(lambda response: response)
    with pytest.raises(RuntimeError, match="after-request hook"):
        StreamEntry(app, entry.flask_wsgi_app, entry.prepare_request, {"events.stream": None})
