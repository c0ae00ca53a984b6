"""What a reconnecting client relies on: refusals that are 200 streams, connections that close
after a stream, ``resync_required`` when a resume point is gone, and the stream cookie."""

import json
import socket
import threading
import time
from datetime import timedelta

import pytest

from tests.live import Api

JSON_HEADERS = {"Content-Type": "application/json"}


def bearer(credential):
    return {"Authorization": f"Bearer {credential}"}


def stream_cookies(response):
    """``{path: (name, value, attributes)}`` of the Set-Cookie headers of a response."""
    cookies = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        attrs = {}
        for attribute in attributes:
            key, _, val = attribute.partition("=")
            attrs[key.lower()] = val
        cookies[attrs["path"]] = (name, value, attrs)
    return cookies


def cookie_of(api, credential, path="/events/ticket"):
    """``(name, value, max_age)`` of the stream cookie a ticket request sets."""
    response = api.post(path, headers=bearer(credential))
    assert response.status_code == 201, response.text
    name, value, attrs = stream_cookies(response)["/events/stream"]
    return name, value, int(attrs["max-age"])


# ---- transient refusals are 200 streams that end at once ------------------------------------


def test_a_draining_worker_answers_a_new_stream_with_server_shutdown_and_a_short_retry(app):
    from qrevents.services.accounts import create_account, create_api_key

    account = create_account("Draining", "BOB")
    _, key = create_api_key(account.id, "k")
    app.extensions["qrevents"].hub.closed = True
    answers = []  # asked from another thread: this one holds the fixture's connection
    asking = threading.Thread(
        target=lambda: answers.append(app.test_client().get("/events/stream", headers=bearer(key)))
    )
    asking.start()
    asking.join(5)
    (answer,) = answers
    retry, closed, end = answer.get_data(as_text=True).split("\n\n")
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    assert 1000 <= int(retry.removeprefix("retry: ")) <= 3000
    assert closed.startswith("event: stream_closed\ndata: ") and end == ""
    assert json.loads(closed.split("data: ")[1])["reason"] == "server_shutdown"


def test_refusal_retries_are_jittered(make_server):
    api = Api(make_server(max_streams_per_account=0).base)
    tenant = api.new_tenant()
    retries = set()
    for _ in range(5):
        with api.stream(tenant) as refused:
            assert refused.until("stream_closed")[-1].data["reason"] == "too_many_streams"
            retries.add(refused.retry)
    assert len(retries) > 1 and all(15000 <= r <= 30000 for r in retries)


def test_credential_failures_stay_401_json(api):
    with api.stream(params={"api-key": "qrk_nope"}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "invalid_credentials"


def test_a_stream_closes_its_connection_when_it_ends(api, tenant):
    """A client must not send its next request on the connection of a stream that said
    ``stream_closed``: the server says ``Connection: close`` and closes it."""
    key = api.post("/api-keys", json={"name": "closing"}, headers=bearer(tenant.jwt)).json()
    host, port = api.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        request = (
            "GET /events/stream HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {key['data']['key']}\r\n\r\n"
        )
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        api.delete(f"/api-keys/{key['data']['id']}", headers=bearer(tenant.jwt))
        deadline = time.monotonic() + 5
        # The last chunk, after the head (which may itself end in "0\r\n\r\n": a request id).
        while not received.partition(b"\r\n\r\n")[2].endswith(b"0\r\n\r\n"):
            assert time.monotonic() < deadline
            chunk = sock.recv(65536)
            assert chunk, "closed before the last chunk"
            received += chunk
        eof = sock.recv(1)  # the server closed its side: no second request on it
    head = received.split(b"\r\n\r\n")[0].decode().lower()
    assert "connection: close" in head.split("\r\n")
    assert b'"reason":"key_revoked"' in received
    assert eof == b""


# ---- resync_required ------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["header", "query"])
def test_an_unknown_last_event_id_gets_resync_required_right_after_connection(api, tenant, place):
    given = "qr_created_99999999999999999999"
    options = (
        {"headers": {**tenant.headers, "Last-Event-ID": given}}
        if place == "header"
        else {"headers": tenant.headers, "params": {"lastEventId": given}}
    )
    with api.stream(**options) as stream:
        connection, resync = stream.take(2, skip=())
    assert connection.event == "connection" and connection.data["resumed"] is False
    assert resync.event == "resync_required" and resync.id is None
    assert resync.data == {"lastEventId": given, "reason": "unknown"}


def test_no_resync_required_when_resuming_or_when_no_id_was_given(api, tenant):
    with api.stream(tenant) as stream:
        stream.next()
        api.create_qr(tenant)
        (created,) = stream.take(1)
    with api.stream(tenant) as fresh:
        assert [fresh.next().event, fresh.next(timeout=2).event] == ["connection", "heartbeat"]
    with api.stream(headers={**tenant.headers, "Last-Event-ID": created.id}) as resumed:
        connection, after = resumed.next(), resumed.next(timeout=2)
    assert connection.data["resumed"] is True and after.event == "heartbeat"


def test_an_id_pruned_by_retention_gets_resync_required_expired(api, tenant, server):
    from tests.test_retention import _age_first_event

    first = api.create_qr(tenant)
    api.create_qr(tenant)
    _age_first_event(server.env["QREVENTS_DATABASE_URL"], tenant.account_id)
    given = f"qr_created_{first['qrId']}"
    with api.stream(headers={**tenant.headers, "Last-Event-ID": given}) as stream:
        connection, resync = stream.take(2, skip=())
    assert connection.data["resumed"] is False
    assert resync.data == {"lastEventId": given, "reason": "expired"}


def test_resume_point_tells_expired_from_unknown(app):
    from models import Event
    from qrevents.clock import epoch_ms, utcnow
    from qrevents.services.accounts import create_account
    from qrevents.services.eventlog import ResumePoint, resume_point
    from qrevents.services.retention import prune
    from tests.conftest import create_test_qr

    account = create_account("Resync", "BOB")
    old = create_test_qr(account.id)
    recent = create_test_qr(account.id)
    old_id, recent_id = f"qr_created_{old.qr_id}", f"qr_created_{recent.qr_id}"
    long_ago = utcnow() - timedelta(days=30)
    old_ms = epoch_ms(long_ago)
    assert resume_point(account.id, None, 7) == ResumePoint()
    assert resume_point(account.id, recent_id, 7) == ResumePoint(seq=2)
    # Nothing pruned yet: an id of our shape that is not in the log was never ours.
    assert resume_point(account.id, f"balance_update_{old_ms}_9", 7).resync == "unknown"
    Event.update(created_at=long_ago).where(Event.seq == 1).execute()
    assert resume_point(account.id, old_id, 7) == ResumePoint(resync="expired")  # still logged
    prune(7)
    old_qr_id = long_ago.strftime("%y%m%d") + "0" * 14
    assert resume_point(account.id, f"qr_created_{old_qr_id}", 7).resync == "expired"
    assert resume_point(account.id, f"balance_update_{old_ms}_9", 7).resync == "expired"
    assert resume_point(account.id, "qr_payment_BNK0001", 7).resync == "expired"
    # Its own time is within the retention: it cannot have been pruned.
    now_ms = epoch_ms(utcnow())
    assert resume_point(account.id, f"balance_update_{now_ms}_9", 7).resync == "unknown"
    assert resume_point(account.id, old_id, 7).resync == "unknown"  # a qrId of today
    assert resume_point(account.id, "garbage\u2028id", 7).resync == "unknown"
    assert resume_point(account.id, "x" * 200, 7).resync == "unknown"


def test_a_client_supplied_id_cannot_inject_lines_into_resync_required():
    from qrevents import events, sse

    frame = sse.frame(events.resync_required("a\u2028b\u2029c\x85d", "unknown")).decode()
    assert frame.count("\n") == 3 and len(frame.splitlines()) == 3
    assert json.loads(frame.split("data: ")[1])["lastEventId"] == "a\u2028b\u2029c\x85d"


# ---- the stream cookie ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/events/ticket", "/api/events/ticket"])
def test_a_ticket_request_sets_a_narrow_http_only_strict_cookie_for_both_stream_paths(
    api, tenant, route
):
    response = api.post(route, headers=tenant.headers)
    assert response.status_code == 201
    data = response.json()["data"]
    cookies = stream_cookies(response)
    assert set(cookies) == {"/events/stream", "/api/events/stream"}
    (name, value, attrs), other = cookies.values()
    assert other[:2] == (name, value)
    assert name == f"qrevents_stream_{tenant.account_id}" and value.startswith("qrc_")
    assert value != data["ticket"]
    assert "httponly" in attrs and attrs["samesite"] == "Strict" and "secure" not in attrs
    assert data["accountId"] == tenant.account_id
    assert int(attrs["max-age"]) == data["cookieExpiresIn"]
    assert 43190 <= data["cookieExpiresIn"] <= 43200  # a key that never expires: the bound


def test_the_cookie_is_secure_in_production(make_server):
    api = Api(make_server(env="production").base)
    tenant = api.new_tenant()
    (_, _, attrs), _ = stream_cookies(api.post("/events/ticket", headers=tenant.headers)).values()
    assert "secure" in attrs


def test_a_jwt_born_cookie_lives_no_longer_than_the_jwt(api, tenant):
    _, _, max_age = cookie_of(api, tenant.jwt)
    assert 3590 <= max_age <= 3600


@pytest.mark.parametrize("path", ["/events/stream", "/api/events/stream"])
def test_the_cookie_opens_stream_after_stream_and_keeps_the_credentials_kind(api, tenant, path):
    name, value, _ = cookie_of(api, tenant.jwt)
    for _ in range(3):
        with api.stream(path=path, headers={"Cookie": f"{name}={value}"}) as stream:
            assert stream.status == 200
            connection = stream.next()
        assert connection.data["accountId"] == tenant.account_id
        assert (connection.data["authType"], connection.data["tokenSource"]) == ("jwt", "header")


def test_only_the_cookies_hash_is_stored(app):
    from models import StreamTicket
    from qrevents.auth import Identity, hash_secret, issue_stream_cookie
    from qrevents.services.accounts import create_account

    account = create_account("Hash", "BOB")
    identity = Identity(account.id, None, "apikey", "header")
    value, _ = issue_stream_cookie(identity, 60)
    stored = StreamTicket.select().where(StreamTicket.account == account.id).get()
    assert stored.ticket_hash == hash_secret(value) and value not in stored.ticket_hash


def test_revoking_the_key_ends_its_cookie_and_the_cookies_streams(api, tenant):
    created = api.post("/api-keys", json={"name": "browser"}, headers=bearer(tenant.jwt))
    key = created.json()["data"]
    name, value, _ = cookie_of(api, key["key"])
    cookie = {"Cookie": f"{name}={value}"}
    with api.stream(headers=cookie) as stream:
        stream.next()
        api.delete(f"/api-keys/{key['id']}", headers=bearer(tenant.jwt))
        closed = stream.until("stream_closed", timeout=3)[-1]
    assert closed.data["reason"] == "key_revoked"
    with api.stream(headers=cookie) as refused:
        assert refused.status == 401
        assert refused.body_json()["error"]["code"] == "key_revoked"


def test_a_jwt_born_cookie_ends_with_the_jwt(make_server):
    api = Api(make_server(jwt_expires_seconds=2).base)
    tenant = api.new_tenant()
    name, value, max_age = cookie_of(api, tenant.jwt)
    assert max_age <= 2
    time.sleep(2.1)
    with api.stream(headers={"Cookie": f"{name}={value}"}) as refused:
        assert refused.status == 401
        assert refused.body_json()["error"]["code"] == "token_expired"


def test_tickets_and_cookies_are_not_interchangeable(api, tenant):
    response = api.post("/events/ticket", headers=tenant.headers)
    ticket = response.json()["data"]["ticket"]
    name, value, _ = stream_cookies(response)["/events/stream"]
    with api.stream(params={"ticket": value}) as as_ticket:
        assert as_ticket.status == 401
    with api.stream(headers={"Cookie": f"{name}={ticket}"}) as as_cookie:
        assert as_cookie.status == 401
    with api.stream(params={"ticket": ticket}) as still_good:  # neither try spent it
        assert still_good.status == 200


def test_cookies_of_several_accounts_need_the_account_named(api, tenant):
    other = api.new_tenant()
    mine, theirs = cookie_of(api, tenant.api_key), cookie_of(api, other.api_key)
    both = {"Cookie": f"{mine[0]}={mine[1]}; {theirs[0]}={theirs[1]}"}
    with api.stream(headers=both) as ambiguous:
        assert ambiguous.status == 401
        assert ambiguous.body_json()["error"]["code"] == "missing_credentials"
    for tenant_, expected in ((tenant, tenant.account_id), (other, other.account_id)):
        with api.stream(headers=both, params={"accountId": tenant_.account_id}) as chosen:
            assert chosen.next().data["accountId"] == expected
    # A cookie under another account's name opens nothing.
    swapped = {"Cookie": f"{theirs[0]}={mine[1]}"}
    with api.stream(headers=swapped) as refused:
        assert refused.status == 401


def test_an_explicit_credential_wins_over_the_cookie(api, tenant):
    other = api.new_tenant()
    name, value, _ = cookie_of(api, tenant.api_key)
    headers = {"Cookie": f"{name}={value}", **other.headers}
    with api.stream(headers=headers) as stream:
        assert stream.next().data["accountId"] == other.account_id


@pytest.mark.parametrize(
    "cookie_account, query",
    [("\u00b2", {}), ("99999999999999999999999", {}), ("1", {"accountId": "\u00b2"})],
    ids=["superscript-digit", "too-large", "superscript-query"],
)
def test_a_malformed_cookie_name_or_account_is_a_401(api, tenant, cookie_account, query):
    _, value, _ = cookie_of(api, tenant.api_key)
    name = f"qrevents_stream_{cookie_account}".encode().decode("latin-1")
    with api.stream(headers={"Cookie": f"{name}={value}"}, params=query) as refused:
        assert refused.status == 401
        assert refused.body_json()["error"]["code"] in (
            "invalid_credentials",
            "missing_credentials",
        )
