"""Structured logs: a JSON line per request and per stream event, a request id, no credential."""

import http.client
import socket
import time

import pytest

from tests.live import ADMIN_KEY, BANK_SECRET, Api


@pytest.fixture
def logged(make_server):
    server = make_server()
    return server, Api(server.base)


def entries(server, event, timeout=5):
    """The log's ``event`` lines, waiting briefly for ones a stream writes as it ends."""
    deadline = time.monotonic() + timeout
    while not (found := [e for e in server.json_log() if e["event"] == event]):
        assert time.monotonic() < deadline, f"no {event} line in the log"
        time.sleep(0.05)
    return found


def test_each_request_is_one_json_line_with_its_request_id(logged):
    server, api = logged
    tenant = api.new_tenant()
    response = api.get(
        "/qr?status=active", headers={**tenant.headers, "X-Request-ID": "client-req-42"}
    )
    assert response.headers["X-Request-ID"] == "client-req-42"
    generated = api.get("/qr/none", headers=tenant.headers).headers["X-Request-ID"]
    injected = api.get("/health", headers={"X-Request-ID": "a b\tforged"}).headers["X-Request-ID"]
    assert injected != "a b\tforged"

    lines = {e["requestId"]: e for e in entries(server, "request")}
    first = lines["client-req-42"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/qr", 200)
    assert first["durationMs"] >= 0 and first["remoteAddr"] == "127.0.0.1"
    assert lines[generated]["status"] == 404
    assert injected in lines


def test_stream_open_resume_and_close_are_logged_with_reason_and_duration(logged):
    server, api = logged
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    api.create_qr(tenant)
    key = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "short-lived"})
    headers = {"Authorization": f"Bearer {key['key']}", "X-Request-ID": "stream-1"}
    with api.stream(headers=headers, params={"lastEventId": f"qr_created_{qr['qrId']}"}) as s:
        s.next()
        api.delete(f"/api-keys/{key['id']}", headers={"Authorization": f"Bearer {tenant.jwt}"})
        s.until("stream_closed")
    with api.stream(tenant) as plain:
        plain.next()
    (resumed,) = entries(server, "stream_resume")
    assert resumed["requestId"] == "stream-1"
    assert (resumed["accountId"], resumed["replayed"]) == (tenant.account_id, 1)
    assert (resumed["authType"], resumed["tokenSource"]) == ("apikey", "header")
    (opened,) = entries(server, "stream_open")
    closes = {e["connectionId"]: e for e in entries(server, "stream_close")}
    deadline = time.monotonic() + 5
    while opened["connectionId"] not in closes:  # noticed at its next heartbeat
        assert time.monotonic() < deadline
        time.sleep(0.05)
        closes = {e["connectionId"]: e for e in entries(server, "stream_close")}
    assert closes[resumed["connectionId"]]["reason"] == "key_revoked"
    assert closes[resumed["connectionId"]]["requestId"] == "stream-1"
    assert closes[opened["connectionId"]]["reason"] == "client_disconnected"
    assert all(isinstance(e["durationMs"], int) for e in closes.values())


def test_no_credential_ever_reaches_the_log(logged):
    server, api = logged
    tenant = api.new_tenant()
    api.get("/accounts/me", params={"api-key": tenant.api_key})
    api.get("/accounts/me", params={"token": tenant.jwt})
    api.get("/accounts/me", headers={"X-API-Key": tenant.api_key})
    api.post("/auth/login", json={"email": tenant.email, "password": "a wrong one 123"})
    ticket = api.post("/events/ticket", headers=tenant.headers).json()["data"]["ticket"]
    with api.stream(params={"ticket": ticket}) as stream:
        stream.next()
    with api.stream(params={"token": tenant.jwt}) as stream:
        stream.next()
    api.bank("/bank/payments", {"qrId": "1"})
    api.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    entries(server, "stream_open")
    log = server.log()
    secrets = {
        "api key": tenant.api_key,
        "jwt": tenant.jwt,
        "password": tenant.password,
        "wrong password": "a wrong one 123",
        "ticket": ticket,
        "admin key": ADMIN_KEY,
        "bank secret": BANK_SECRET,
    }
    leaked = [name for name, secret in secrets.items() if secret in log]
    assert leaked == []
    assert any(e["path"] == "/accounts/me" for e in server.json_log() if e["event"] == "request")


# Every atom of gunicorn's access log that can hold a request line, URL, query or header.
EVERY_ATOM = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(m)s %(U)s ?%(q)s '
    '"%({authorization}i)s" "%({x-api-key}i)s" "%({cookie}i)s" "%({referer}i)s" '
    '"%({x-bank-signature}i)s" %({raw_uri}e)s %({query_string}e)s %({path_info}e)s '
    '"%({http_authorization}e)s" "%({http_x_api_key}e)s" "%({http_cookie}e)s" '
    '"%({set-cookie}o)s"'
)


def raw_request(server, data):
    """Bytes no HTTP client would send; gunicorn's answer (a 400 for malformed ones)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(data)
        return conn.recv(200)


@pytest.mark.parametrize(
    "to_files", [False, True], ids=["access-and-error-log-on-stdout", "log-files"]
)
def test_gunicorn_logs_hold_no_credential_whatever_flags_turn_them_on(make_server, tmp_path,
                                                                      to_files):  # fmt: skip
    access, errors = ("-", "-") if not to_files else (tmp_path / "a.log", tmp_path / "e.log")
    flags = ["--access-logfile", str(access), "--error-logfile", str(errors),
             "--access-logformat", EVERY_ATOM, "--log-level", "debug"]  # fmt: skip
    server = make_server(gunicorn_args=flags)
    api = Api(server.base)
    tenant = api.new_tenant()
    key, token = tenant.api_key, tenant.jwt
    ticket = api.post("/events/ticket", headers=tenant.headers).json()["data"]["ticket"]
    me = "/accounts/me"
    for query in (
        f"api-key={key}",
        f"token={token}",
        f"%74oken={token}",
        f"%61pi-key={key}",
        f"to%6Ben={token}",
        f"limit=5&api-key={key}&x=1",
    ):
        # http.client sends the target as written (requests would decode "%74" to "t")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", f"{me}?{query}")
        assert conn.getresponse().status == 200, query  # Werkzeug decodes the names
        conn.close()
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"bearer {token}"},
        {"X-API-Key": key},
        {"X-API-Key": token, "Cookie": f"qrevents_stream={ticket}; theme=dark"},
        {"X-API-Key": key, "Referer": f"https://shop.example/pay?token={token}"},
    ):
        assert api.get(me, headers=headers).status_code == 200, headers
    assert api.get(f"/qr/{key}", headers=tenant.headers).status_code in (404, 422)
    api.post(
        "/hooks/baneco/notifyPayment", json={}, headers={"Authorization": f"Bearer {BANK_SECRET}"}
    )
    api.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    with api.stream(params={"ticket": ticket}) as stream:
        assert stream.next().event == "connection"
    malformed = [
        f"GET {me} HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {key}\r\n\r\n",
        f"GET {me} HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {BANK_SECRET}\r\n\r\n",
        f"GET {me} HTTP/1.1\r\nHost: x\r\nX-API-Key\x01: {key}\r\n\r\n",
        f"GET {me} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\x01\r\n\r\n",
        f"GET {me}?api-key={key}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET {me}?%74oken={token}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET {me}?ticket={ticket} HTTP/9.9\r\nHost: x\r\n\r\n",
    ]
    for data in malformed:
        assert raw_request(server, data.encode()).startswith(b"HTTP/1.1 4"), data
    server.stop()  # every line flushed

    logs = {"stdout and stderr": server.log()}
    if to_files:
        logs.update(access=access.read_text(), error=errors.read_text())
    secrets = {
        "api key": key[4:],
        "jwt payload": token.split(".")[1],
        "jwt signature": token.split(".")[2],
        "ticket": ticket[4:],
        "admin key": ADMIN_KEY[4:],
        "bank secret": BANK_SECRET,
        "password": tenant.password,
    }
    leaks = [(name, where) for name, secret in secrets.items() for where, text in logs.items()
             if secret in text]  # fmt: skip
    assert leaks == []
    gunicorn_lines = logs["access"] + logs["error"] if to_files else logs["stdout and stderr"]
    assert f'"GET {me}?api-key=[scrubbed] HTTP/1.1"' in gunicorn_lines  # the access log was on
    assert "Invalid HTTP Header" in gunicorn_lines  # and the error log quoted the bad ones
