"""Webhooks against a live server: registration, signed bodies carrying the stream's
data byte for byte, per-endpoint order, retries with backoff, disabling, replay, the delivery
log, who may manage them, and the refusal of private addresses."""

import json
import time

import pytest
import requests
from qrevents_client import verify_webhook

from qrevents import __version__
from tests.conftest import fresh_database_url
from tests.live import ADMIN_KEY, Api, LiveServer
from tests.test_auth import database

FAST = {
    "webhook_allow_private": 1,
    "webhook_timeout_seconds": 1,
    "webhook_lease_seconds": 6,
    "webhook_retry_first_seconds": 0.1,
    "webhook_retry_max_seconds": 0.3,
    "webhook_poll_seconds": 0.1,
}
PAYMENT_EVENTS = ["qr_payment", "account_balance_update", "qr_status_change"]


@pytest.fixture(scope="module")
def hook_server(backend, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"webhooks-{backend}")
    live = LiveServer(folder, fresh_database_url(backend, folder), **FAST).start()
    yield live
    live.stop()


@pytest.fixture
def api(hook_server):
    return Api(hook_server.base)


@pytest.fixture
def tenant(api):
    return api.new_tenant()


def jwt_headers(tenant):
    return {"Authorization": f"Bearer {tenant.jwt}"}


def register(api, tenant, url, **body):
    response = api.post("/webhooks", json={"url": url, **body}, headers=jwt_headers(tenant))
    assert response.status_code == 201, response.text
    return response.json()["data"]


def paid_qr(api, tenant):
    """A single-use QR paid once: qr_created, then the payment's three events."""
    qr = api.create_qr(tenant)
    assert api.pay(qr["qrId"]).status_code == 200
    return qr


def deliveries(api, tenant, endpoint_id, **params):
    response = api.get(
        f"/webhooks/{endpoint_id}/deliveries", params=params, headers=jwt_headers(tenant)
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def written_log(api, tenant, endpoint_id, count, timeout=5):
    """The delivery log once it holds ``count`` attempts: acknowledged deliveries are written
    within the deliverer's flush interval (0.25 s), not one by one."""
    deadline = time.monotonic() + timeout
    while True:
        items = deliveries(api, tenant, endpoint_id)["items"]
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def test_registration_shows_the_secret_once(api, tenant, receiver):
    made = register(api, tenant, receiver.url(), events=["qr_payment"], description="ERP")
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["url"] == receiver.url() and made["events"] == ["qr_payment"]
    assert made["enabled"] is True and made["disabledReason"] is None
    listed = api.get("/webhooks", headers=jwt_headers(tenant)).json()["data"]["items"]
    assert [item["id"] for item in listed] == [made["id"]]
    assert "secret" not in listed[0] and listed[0]["description"] == "ERP"


def test_each_event_is_posted_signed_with_the_stream_data_byte_for_byte(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    with api.stream(tenant) as stream:
        stream.until("connection")
        qr = paid_qr(api, tenant)
        frames = stream.take(4)
    got = receiver.wait_for(4)
    assert [r.json["type"] for r in got] == ["qr_created", *PAYMENT_EVENTS]
    data_lines = [
        line.decode().removeprefix("data: ").rstrip("\n")
        for line in stream.raw
        if line.startswith(b"data: {") and b'"connectionId"' not in line
    ]
    for received, frame, data_line in zip(got, frames, data_lines, strict=True):
        body = received.json
        assert body["id"] == frame.id and body["type"] == frame.event
        assert body["accountId"] == tenant.account_id and isinstance(body["seq"], int)
        assert body["createdAt"].endswith("Z")
        assert set(body) == {"id", "type", "accountId", "seq", "createdAt", "data"}
        # data inserted as the log holds it: the stream's data line, byte for byte
        assert received.body.endswith(b',"data":' + data_line.encode() + b"}")
        headers = received.headers
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == f"qrevents/{__version__}"
        assert headers["X-QrEvents-Event-Id"] == frame.id
        assert headers["X-QrEvents-Delivery-Id"].startswith("dlv_")
        verified = verify_webhook(received.body, headers["X-QrEvents-Signature"], made["secret"])
        assert verified["data"]["qrId"] == qr["qrId"]
    assert [r.json["seq"] for r in got] == sorted(r.json["seq"] for r in got)
    log = written_log(api, tenant, made["id"], 4)
    assert [(d["eventId"], d["attempt"], d["statusCode"], d["succeeded"]) for d in log] == [
        (r.json["id"], 1, 200, True) for r in reversed(got)
    ]
    assert all(d["latencyMs"] >= 0 and d["error"] is None for d in log)


def test_a_forged_or_altered_body_fails_verification(api, tenant, receiver):
    made = register(api, tenant, receiver.url(), events=["qr_created"])
    api.create_qr(tenant)
    (got,) = receiver.wait_for(1)
    signature = got.headers["X-QrEvents-Signature"]
    from qrevents_client.errors import WebhookSignatureError

    with pytest.raises(WebhookSignatureError):
        verify_webhook(got.body.replace(b"100.50", b"900.50"), signature, made["secret"])
    with pytest.raises(WebhookSignatureError):
        verify_webhook(got.body, signature, "whsec_not_the_secret")


def test_an_endpoint_gets_only_the_event_types_it_chose(api, tenant, receiver):
    register(api, tenant, receiver.url("/payments"), events=["qr_payment"])
    register(api, tenant, receiver.url("/all"))
    paid_qr(api, tenant)
    paid_qr(api, tenant)
    assert len(receiver.wait_for(8, "/all")) == 8
    got = receiver.wait_for(2, "/payments")
    time.sleep(0.3)
    assert [r.json["type"] for r in receiver.at("/payments")] == ["qr_payment", "qr_payment"]
    assert got[0].json["seq"] < got[1].json["seq"]


def test_a_failing_endpoint_is_retried_in_order_and_each_attempt_logged(api, tenant, receiver):
    receiver.behave("/flaky", statuses=[500, 503, 200])
    made = register(api, tenant, receiver.url("/flaky"))
    paid_qr(api, tenant)
    got = receiver.wait_for(4, "/flaky")
    everything = receiver.at("/flaky")
    assert [r.status for r in everything[:3]] == [500, 503, 200]
    assert len({r.json["id"] for r in everything[:3]}) == 1  # the same event, retried
    assert [r.json["type"] for r in got] == ["qr_created", *PAYMENT_EVENTS]
    gaps = [b.arrived - a.answered for a, b in zip(everything[:2], everything[1:3], strict=True)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # backoff: at least half of 0.1 s
    log = list(reversed(written_log(api, tenant, made["id"], 6)))
    assert [(d["attempt"], d["statusCode"], d["succeeded"]) for d in log[:3]] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert log[0]["error"] == "HTTP 500"
    assert len({d["deliveryId"] for d in log}) == len(log)


def test_a_slow_endpoint_delays_only_itself(api, tenant, receiver):
    receiver.behave("/slow", delay=3)  # past the 1 s timeout: each attempt times out
    slow = register(api, tenant, receiver.url("/slow"))
    register(api, tenant, receiver.url("/fast"))
    started = time.monotonic()
    paid_qr(api, tenant)
    receiver.wait_for(4, "/fast", timeout=5)
    assert time.monotonic() - started < 1.5
    time.sleep(1.2)
    log = deliveries(api, tenant, slow["id"])["items"]
    assert log and not log[-1]["succeeded"] and log[-1]["statusCode"] is None
    assert "1 s" in log[-1]["error"] and 900 <= log[-1]["latencyMs"] < 2000
    shown = api.get(f"/webhooks/{slow['id']}", headers=jwt_headers(tenant)).json()["data"]
    assert shown["enabled"] and shown["failedAttempts"] >= 1 and shown["lastError"]


def test_a_redirect_is_a_failure_and_is_not_followed(api, tenant, receiver):
    receiver.behave("/moved", statuses=[302], location=receiver.url("/target"))
    made = register(api, tenant, receiver.url("/moved"), events=["qr_created"])
    api.create_qr(tenant)
    receiver.wait_for(2, "/moved", accepted=False)
    assert receiver.at("/target") == []
    (last, *_) = deliveries(api, tenant, made["id"])["items"]
    assert last["statusCode"] == 302 and not last["succeeded"]


def test_replay_sends_again_from_the_given_event_in_order(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    paid_qr(api, tenant)
    first = receiver.wait_for(4)
    replayed = api.post(
        f"/webhooks/{made['id']}/replay",
        json={"fromEventId": first[1].json["id"]},
        headers=jwt_headers(tenant),
    )
    assert replayed.status_code == 200, replayed.text
    again = receiver.wait_for(7)
    assert [r.json["id"] for r in again[4:]] == [r.json["id"] for r in first[1:]]
    unknown = api.post(
        f"/webhooks/{made['id']}/replay",
        json={"fromEventId": "qr_payment_NOPE"},
        headers=jwt_headers(tenant),
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_event"
    missing = api.post(f"/webhooks/{made['id']}/replay", json={}, headers=jwt_headers(tenant))
    assert missing.status_code == 422


def test_disabled_by_the_user_holds_events_until_enabled_again(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    path = f"/webhooks/{made['id']}"
    off = api.session.patch(api.url(path), json={"enabled": False}, headers=jwt_headers(tenant))
    assert off.status_code == 200 and off.json()["data"]["disabledReason"] == "disabled_by_user"
    paid_qr(api, tenant)
    time.sleep(0.5)
    assert receiver.at() == []
    on = api.session.patch(api.url(path), json={"enabled": True}, headers=jwt_headers(tenant))
    assert on.json()["data"]["enabled"] is True and on.json()["data"]["disabledReason"] is None
    assert [r.json["type"] for r in receiver.wait_for(4)] == ["qr_created", *PAYMENT_EVENTS]


def test_a_deleted_endpoint_receives_nothing_more(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    gone = api.delete(f"/webhooks/{made['id']}", headers=jwt_headers(tenant))
    assert gone.status_code == 200
    api.create_qr(tenant)
    time.sleep(0.5)
    assert receiver.at() == []
    again = api.delete(f"/webhooks/{made['id']}", headers=jwt_headers(tenant))
    assert again.status_code == 404


def test_the_delivery_log_is_paginated_newest_first(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    paid_qr(api, tenant)
    receiver.wait_for(4)
    written_log(api, tenant, made["id"], 4)
    page = deliveries(api, tenant, made["id"], limit=3)
    assert len(page["items"]) == 3 and page["nextCursor"]
    rest = deliveries(api, tenant, made["id"], limit=3, cursor=page["nextCursor"])
    seqs = [d["eventSeq"] for d in page["items"] + rest["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 4


def test_only_a_users_jwt_manages_webhooks_of_its_own_account(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    with_key = api.post("/webhooks", json={"url": receiver.url()}, headers=tenant.headers)
    assert with_key.status_code == 403
    assert api.get("/webhooks", headers=tenant.headers).status_code == 403
    other = api.new_tenant()
    for method, path in [
        ("get", f"/webhooks/{made['id']}"),
        ("delete", f"/webhooks/{made['id']}"),
        ("get", f"/webhooks/{made['id']}/deliveries"),
    ]:
        response = getattr(api, method)(path, headers=jwt_headers(other))
        assert response.status_code == 404, (method, path)
    assert api.get("/webhooks", headers=jwt_headers(other)).json()["data"]["items"] == []
    assert api.get("/webhooks").status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({}, "url"),
        ({"url": "http://127.0.0.1/", "events": []}, "events"),
        ({"url": "http://127.0.0.1/", "events": ["heartbeat"]}, "events"),
        ({"url": "http://127.0.0.1/", "events": "qr_payment"}, "events"),
        ({"url": "http://127.0.0.1/", "description": 5}, "description"),
        ({"url": "http://no-such-host.invalid/"}, "url"),
    ],
    ids=[
        "ftp",
        "not-a-url",
        "credentials-in-url",
        "bad-port",
        "no-url",
        "no-events",
        "not-durable",
        "events-not-list",
        "bad-description",
        "unresolvable",
    ],
)
def test_bad_registrations_are_422_and_register_nothing(api, tenant, body, field):
    response = api.post("/webhooks", json=body, headers=jwt_headers(tenant))
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["fields"]
    assert api.get("/webhooks", headers=jwt_headers(tenant)).json()["data"]["items"] == []


def test_bad_changes_are_422_and_change_nothing(api, tenant, receiver):
    made = register(api, tenant, receiver.url())
    path = api.url(f"/webhooks/{made['id']}")
    for body in ({"enabled": "no"}, {"secret": "x"}, {"events": ["nope"]}, {"url": "ftp://x"}):
        response = api.session.patch(path, json=body, headers=jwt_headers(tenant))
        assert response.status_code == 422, body
    bad_json = api.session.patch(path, data=b"{", headers=jwt_headers(tenant))
    assert bad_json.status_code == 400
    shown = api.get(f"/webhooks/{made['id']}", headers=jwt_headers(tenant)).json()["data"]
    assert {k: v for k, v in shown.items() if k != "secret"} == {
        k: v for k, v in made.items() if k != "secret"
    }


def test_an_endpoint_failing_past_the_horizon_is_disabled_with_the_reason_shown(
    make_server, receiver
):
    live = make_server(**FAST, webhook_retry_horizon_seconds=0.5)
    api = Api(live.base)
    tenant = api.new_tenant()
    receiver.behave("/down", statuses=[500])
    made = register(api, tenant, receiver.url("/down"), events=["qr_created"])
    api.create_qr(tenant)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = api.get(f"/webhooks/{made['id']}", headers=jwt_headers(tenant)).json()["data"]
        if not shown["enabled"]:
            break
        time.sleep(0.1)
    assert shown["enabled"] is False
    assert shown["disabledReason"] == "retries_exhausted" and shown["lastError"] == "HTTP 500"
    count = len(receiver.at("/down"))
    assert count >= 2
    time.sleep(0.5)
    assert len(receiver.at("/down")) == count  # no attempt once disabled
    metrics = requests.get(
        live.base + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5
    ).text
    assert 'qrevents_webhook_deliveries_total{outcome="http_error"}' in metrics
    assert "qrevents_webhook_endpoints_disabled 1.0" in metrics


def test_delivery_lag_is_measured(api, tenant, receiver, hook_server):
    register(api, tenant, receiver.url(), events=["qr_created"])
    api.create_qr(tenant)
    receiver.wait_for(1)
    metrics = requests.get(
        hook_server.base + "/metrics",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=5,
    ).text
    count = [
        line
        for line in metrics.splitlines()
        if line.startswith("qrevents_webhook_delivery_lag_seconds_count")
    ]
    assert count and float(count[0].split()[-1]) >= 1
    assert 'qrevents_webhook_deliveries_total{outcome="success"}' in metrics


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """A server that refuses private addresses, as a deployment does (SQLite: the check is
    the same on every backend)."""
    folder = tmp_path_factory.mktemp("webhooks-strict")
    live = LiveServer(folder, f"sqlite:///{folder / 'q.db'}", webhook_allow_private=0).start()
    yield live
    live.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://localhost/",
        "http://10.1.2.3/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)
def test_private_and_metadata_addresses_are_refused(strict_server, url):
    api = Api(strict_server.base)
    tenant = api.new_tenant()
    response = api.post("/webhooks", json={"url": url}, headers=jwt_headers(tenant))
    assert response.status_code == 422, response.text
    assert "url" in response.json()["error"]["fields"]
    assert api.get("/webhooks", headers=jwt_headers(tenant)).json()["data"]["items"] == []


def stored_secret(server, endpoint_id):
    db = database(server)
    try:
        return db.execute_sql(
            f"SELECT secret FROM webhook_endpoint WHERE id = {db.param}", (endpoint_id,)
        ).fetchone()[0]
    finally:
        db.close()


def test_a_secret_is_never_listed_nor_logged_and_is_stored_sealed(
    api, tenant, receiver, hook_server
):
    made = register(api, tenant, receiver.url())
    listed = json.dumps(api.get("/webhooks", headers=jwt_headers(tenant)).json())
    assert made["secret"] not in listed
    assert made["secret"] not in hook_server.log()
    stored = stored_secret(hook_server, made["id"])
    assert made["secret"] not in stored and made["secret"][6:] not in stored


def test_a_secret_sealed_under_another_key_disables_its_endpoint_with_the_reason(
    make_server, receiver
):
    live = make_server(**FAST)
    api = Api(live.base)
    tenant = api.new_tenant()
    made = register(api, tenant, receiver.url(), events=["qr_created"])
    # As if QREVENTS_SECRET_KEY had changed since: a value sealed under another key.
    from qrevents.secret_box import WEBHOOK_PURPOSE, SecretBox

    foreign = SecretBox("another-deployment-key", purpose=WEBHOOK_PURPOSE).seal(made["secret"])
    db = database(live)
    try:
        db.execute_sql(
            f"UPDATE webhook_endpoint SET secret = {db.param} WHERE id = {db.param}",
            (foreign, made["id"]),
        )
    finally:
        db.close()
    api.create_qr(tenant)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = api.get(f"/webhooks/{made['id']}", headers=jwt_headers(tenant)).json()["data"]
        if not shown["enabled"]:
            break
        time.sleep(0.1)
    assert shown["enabled"] is False and shown["disabledReason"] == "secret_unreadable"
    assert "QREVENTS_SECRET_KEY" in shown["lastError"]
    assert receiver.at() == []  # nothing sent unsigned or signed with something else
