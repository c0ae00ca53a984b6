"""``/openapi.json`` is true to the code: every route described, every real response valid."""

import json
import re
from urllib.parse import urlparse

import jsonschema_rs
import pytest
import requests
import schemathesis

from qrevents.openapi import build_spec
from tests.live import ADMIN_KEY, BANK_SECRET, Api, dumps, payment_body

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _template(path):
    """``/qr/<qr_id>`` and ``/qr/{qrId}`` both become ``/qr/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_every_route_is_described_and_every_description_is_routed(app):
    routed = {
        (_template(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"  # Flask's own files: the dashboard's scripts
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {
        (_template(path), method.upper())
        for path, item in build_spec()["paths"].items()
        for method in item
    }
    assert routed - described == set(), "routes missing from the description"
    assert described - routed == set(), "described routes the app does not have"


def test_the_description_is_served_and_is_valid_openapi(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == build_spec()
    schema = schemathesis.openapi.from_dict(response.json())
    schema["/events/stream"]["GET"]  # parses and resolves
    catalog = response.json()["paths"]["/events/stream"]["get"]["x-sse-events"]
    assert set(catalog) == {
        "connection",
        "heartbeat",
        "qr_created",
        "qr_payment",
        "qr_status_change",
        "account_balance_update",
        "stream_closed",
        "resync_required",
    }


@pytest.fixture
def recorded(server):
    """An ``Api`` whose every response is kept, to be checked against the description."""
    session = requests.Session()
    responses = []
    session.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
    return Api(server.base, session=session), responses


def test_every_response_of_a_full_session_matches_the_description(recorded):
    api, responses = recorded
    _exercise_every_route(api)
    schema = schemathesis.openapi.from_dict(build_spec())
    seen = set()
    for response in responses:
        method, path = response.request.method, urlparse(response.url).path
        operation = schema.find_operation_by_path(method, path)
        assert operation is not None, f"{method} {path} is not described"
        assert operation.responses.find_by_status_code(response.status_code) is not None, (
            f"{method} {path} answered {response.status_code}, which is not described"
        )
        operation.validate_response(response)
        seen.add((method, operation.path, response.status_code))
    described_success = {
        (method.upper(), path, int(status))
        for path, item in build_spec()["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if status.startswith("2") and "stream" not in path and not path.startswith("/api/")
    }
    assert described_success - seen == set(), "success responses this session never checked"


def _exercise_every_route(api):
    """Every route, with its successes and its usual failures, as clients meet them."""
    tenant = api.new_tenant()
    auth = tenant.headers
    api.post("/auth/login", json={"email": tenant.email, "password": "wrong password"})
    api.post("/auth/login", data=b"{not json", headers={"Content-Type": "application/json"})
    api.get("/accounts/me", headers=auth)
    api.get("/accounts/me")
    api.get("/accounts/me", headers={"Authorization": "Bearer qrk_unknown"})
    user = {"Authorization": f"Bearer {tenant.jwt}"}  # key management needs a user's JWT
    created = api.post("/api-keys", json={"name": "ci"}, headers=user).json()["data"]
    api.get("/api-keys", headers=auth)
    api.delete(f"/api-keys/{created['id']}", headers=user)
    api.delete("/api-keys/999999", headers=user)
    api.post("/api-keys", json={"name": "x"}, headers=auth)
    userless = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "svc"})
    api.post(
        "/api-keys", json={"name": "x"}, headers={"Authorization": f"Bearer {userless['key']}"}
    )

    qr = api.create_qr(tenant, "10.00", transactionId="ORDER-1")
    api.create_qr(tenant, "10.00", transactionId="ORDER-1")
    api.post(
        "/qr",
        data=dumps(
            {"amount": 11, "currency": "BOB", "description": "x", "transactionId": "ORDER-1"}
        ),
        headers=auth,
    )
    api.post("/qr", json={"amount": -1, "currency": "EUR"}, headers=auth)
    api.get("/qr?status=active&limit=1", headers=auth)
    api.get("/qr?limit=0", headers=auth)
    api.get(f"/qr/{qr['qrId']}", headers=auth)
    api.get("/qr/00000000000000000000", headers=auth)
    api.get(f"/qr/{qr['qrId']}/image.png", headers=auth)

    api.pay(qr["qrId"], "10.00", "TXN_FLOW_1")
    api.pay(qr["qrId"], "10.00", "TXN_FLOW_1")
    api.pay(qr["qrId"], "12.00", "TXN_FLOW_1")
    api.pay("00000000000000000000", "10.00")
    api.post("/bank/payments", json=payment_body(qr["qrId"]))
    held = api.create_qr(tenant, "5.00")
    api.post(f"/qr/{held['qrId']}/cancel", headers=auth)
    api.post(f"/qr/{held['qrId']}/cancel", headers=auth)
    api.post(
        "/hooks/baneco/notifyPayment",
        data=dumps({"payment": payment_body(held["qrId"], "5.00", "TXN_FLOW_HELD")}),
        headers={"Authorization": f"Bearer {BANK_SECRET}", "Content-Type": "application/json"},
    )
    api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "completed"})
    api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "cancelled"})
    api.get("/payments?limit=1", headers=auth)
    api.get("/payments?from=2026-01-01&to=2030-12-31&minAmount=1&payer=juan", headers=auth)
    api.get("/payments?from=15/01/2026", headers=auth)
    api.get("/payments.csv?from=2026-01-01", headers=auth)
    api.get("/payments.csv?minAmount=1,5", headers=auth)
    api.get("/payments/summary", headers=auth)
    api.get("/payments/summary?period=week&date=2026-01-15&currency=BOB", headers=auth)
    api.get("/payments/summary?period=year", headers=auth)
    api.post("/auth/refresh")  # the login of new_tenant left its cookie in this session
    api.post("/auth/logout")
    api.post("/auth/refresh")
    api.get("/accounts/me/movements", headers=auth)
    api.post("/payments/TXN_FLOW_HELD/release", headers=auth)
    api.post("/payments/TXN_FLOW_HELD/release", headers=auth)
    api.post("/payments/TXN_NOPE/release", headers=auth)

    jwt = {"Authorization": f"Bearer {tenant.jwt}"}
    hook = api.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=jwt)
    hook_path = f"/webhooks/{hook.json()['data']['id']}"
    api.post("/webhooks", json={"url": "ftp://x"}, headers=jwt)
    api.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth)
    api.get("/webhooks", headers=jwt)
    api.get(hook_path, headers=jwt)
    api.get("/webhooks/999999", headers=jwt)
    api.session.patch(api.url(hook_path), json={"enabled": False}, headers=jwt)
    api.get(hook_path + "/deliveries", headers=jwt)
    api.post(hook_path + "/replay", json={"fromEventId": f"qr_created_{qr['qrId']}"}, headers=jwt)
    api.post(hook_path + "/replay", json={"fromEventId": "nope"}, headers=jwt)
    api.delete(hook_path, headers=jwt)

    api.get("/events/stats", headers=auth)
    api.get("/events/stats", headers=ADMIN)
    api.get("/events/stream")  # before the ticket: its stream cookie would open the stream
    api.post("/events/ticket", headers=auth)
    api.post("/admin/accounts", json={"name": "Otro"}, headers=ADMIN)
    api.post("/admin/accounts", json={"name": "Otro", "currency": "BOB"})
    api.post(
        f"/admin/accounts/{tenant.account_id}/users",
        json={"email": tenant.email, "password": "long enough", "name": "Dup"},
        headers=ADMIN,
    )
    api.post("/admin/accounts/999999/api-keys", json={"name": "k"}, headers=ADMIN)
    api.link_bank(tenant.account_id)  # linked already: 200, the link replaced
    api.post(f"/admin/accounts/{tenant.account_id}/bank", json={"adapter": "x"}, headers=ADMIN)
    api.post("/admin/accounts/999999/bank", json={}, headers=ADMIN)
    api.post(
        "/api/qrsimple/notifyPaymentQR",
        data=dumps({"payment": payment_body(qr["qrId"], "1.00", "TXN_FORGED")}),
        headers={"Content-Type": "application/json"},
    )
    api.get("/health")
    api.get("/openapi.json")
    api.get("/metrics", headers=ADMIN)
    api.get("/metrics", headers=auth)
    api.get("/dashboard")


def test_every_event_on_the_stream_matches_the_catalog(api, tenant):
    catalog = build_spec()["paths"]["/events/stream"]["get"]["x-sse-events"]
    key = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "catalog"})
    unknown = {"Last-Event-ID": "qr_created_99999999999999999999"}  # for resync_required
    with api.stream(headers={"Authorization": f"Bearer {key['key']}", **unknown}) as stream:
        events = [stream.next(), stream.next()]
        qr = api.create_qr(tenant, "10.00")
        other = api.create_qr(tenant, "20.00", singleUse=False)
        assert api.pay(qr["qrId"], "10.00", f"TXN_CAT_{qr['qrId']}").status_code == 200
        assert api.pay(other["qrId"], "5.00", f"TXN_HELD_{qr['qrId']}").status_code == 200
        api.post(f"/payments/TXN_HELD_{qr['qrId']}/release", headers=tenant.headers)
        api.post(f"/qr/{other['qrId']}/cancel", headers=tenant.headers)
        api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "completed"})
        events += stream.take(10, skip=())  # heartbeats included
        events += stream.until("heartbeat")
        api.delete(f"/api-keys/{key['id']}", headers={"Authorization": f"Bearer {tenant.jwt}"})
        events += stream.until("stream_closed")
    assert {event.event for event in events} == set(catalog)
    for event in events:
        entry = catalog[event.event]
        data = json.loads(dumps(event.data))  # amounts as JSON numbers again
        jsonschema_rs.validate(entry["data"], data)
        if entry["idPattern"] is None:
            assert event.id is None, event
        else:
            assert re.match(entry["idPattern"], event.id), event
