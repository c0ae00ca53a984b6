"""Structured logs: a JSON line per request and per stream event, a request id, no credential."""

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
