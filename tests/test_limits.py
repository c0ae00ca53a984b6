"""Abuse limits: failed logins per email and per address, a REST rate per credential."""

import time
import uuid

import jwt
import redis
import requests
from flask import Flask

from qrevents.config import Settings
from qrevents.throttle import Throttle
from tests.conftest import fresh_database_url, redis_prefix
from tests.live import ADMIN_KEY, Api, LiveServer


def login(api, email, password="wrong password", headers=None):
    return api.post("/auth/login", json={"email": email, "password": password}, headers=headers)


def assert_rate_limited(response):
    assert response.status_code == 429, response.text
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_failed_logins_are_throttled_per_email(make_server):
    api = Api(make_server(login_limit_per_email="3 per minute").base)
    tenant = api.new_tenant()
    for _ in range(3):
        assert login(api, tenant.email).status_code == 401
    assert_rate_limited(login(api, tenant.email))
    # Even the right password waits: the guesser must not learn it now.
    assert_rate_limited(login(api, tenant.email, tenant.password))
    assert_rate_limited(login(api, tenant.email.upper()))
    other = api.new_tenant()
    assert login(api, other.email, other.password).status_code == 200


def test_successful_logins_do_not_count(make_server):
    api = Api(make_server(login_limit_per_email="2 per minute").base)
    tenant = api.new_tenant()
    for _ in range(4):
        assert login(api, tenant.email, tenant.password).status_code == 200


def test_failed_logins_are_throttled_per_client_address(make_server):
    api = Api(make_server(login_limit_per_address="4 per minute").base)
    tenant = api.new_tenant()
    for n in range(4):
        assert login(api, f"nobody{n}@example.com").status_code == 401
    assert_rate_limited(login(api, "someone-else@example.com"))
    assert_rate_limited(login(api, tenant.email, tenant.password))


def test_a_forged_forwarded_for_does_not_escape_the_address_limit(make_server):
    api = Api(make_server(login_limit_per_address="2 per minute").base)
    for n in range(2):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert login(api, "x@example.com", headers=forged).status_code == 401
    assert_rate_limited(login(api, "x@example.com", headers={"X-Forwarded-For": "198.51.100.9"}))


def test_behind_a_trusted_proxy_each_client_address_counts_alone(make_server):
    api = Api(make_server(login_limit_per_address="2 per minute", proxy_hops=1).base)
    first = {"X-Forwarded-For": "203.0.113.1"}
    for _ in range(2):
        assert login(api, "x@example.com", headers=first).status_code == 401
    assert_rate_limited(login(api, "x@example.com", headers=first))
    second = {"X-Forwarded-For": "203.0.113.2"}
    assert login(api, "x@example.com", headers=second).status_code == 401


def test_rest_requests_are_rate_limited_per_credential(make_server):
    api = Api(make_server(api_rate_limit="5 per minute").base)
    tenant = api.new_tenant()
    for _ in range(5):
        assert api.get("/accounts/me", headers=tenant.headers).status_code == 200
    assert_rate_limited(api.get("/accounts/me", headers=tenant.headers))
    assert_rate_limited(api.post("/qr", json={}, headers=tenant.headers))
    # Another credential of the same account has a budget of its own.
    assert api.get("/accounts/me", headers={"Authorization": f"Bearer {tenant.jwt}"}).ok


def test_stream_bank_callbacks_and_admin_are_not_rate_limited(make_server):
    api = Api(make_server(api_rate_limit="2 per minute").base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    assert api.get("/qr", headers=tenant.headers).status_code == 200
    assert api.get("/qr", headers=tenant.headers).status_code == 429
    for _ in range(3):
        with api.stream(tenant) as stream:
            assert stream.status == 200
            assert stream.next().event == "connection"
    payments = [api.pay(qr["qrId"], "100.50", f"TXN_LIMIT_{n}") for n in range(4)]
    assert [p.status_code for p in payments] == [200] * 4
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for _ in range(4):
        assert api.get("/events/stats", headers=admin).status_code == 200


def test_limits_are_shared_by_every_worker_through_redis(redis_url, tmp_path):
    prefix = redis_prefix()
    live = LiveServer(
        tmp_path,
        fresh_database_url("postgres", tmp_path),
        workers=2,
        redis_url=redis_url,
        redis_prefix=prefix,
        api_rate_limit="6 per minute",
    ).start()
    try:
        tenant = Api(live.base).new_tenant()
        statuses = []
        while len(statuses) < 12 or len(live.served_by("GET", "/accounts/me")) < 2:
            assert len(statuses) < 100, "one worker answered every request"
            # A new connection each time, so that both workers answer some of them.
            with requests.Session() as session:
                response = Api(live.base, session=session).get(
                    "/accounts/me", headers=tenant.headers
                )
            statuses.append(response.status_code)
    finally:
        live.stop()
    assert statuses == [200] * 6 + [429] * (len(statuses) - 6)
    keys = redis.Redis.from_url(redis_url).keys(prefix + "limits*")
    assert keys and not any(tenant.api_key.encode() in key for key in keys)


def test_an_unreachable_counter_store_lets_requests_through():
    app = Flask(__name__)
    app.config["QREVENTS"] = Settings.from_mapping({"ADMIN_API_KEY": "qra_admin"})
    app.add_url_rule("/accounts/me", "accounts.me", lambda: "")
    one = "1 per minute"
    throttle = Throttle(
        Settings.from_mapping(
            {
                "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
                "REDIS_PREFIX": "t:",
                "LOGIN_LIMIT_PER_EMAIL": one,
                "LOGIN_LIMIT_PER_ADDRESS": one,
                "API_RATE_LIMIT": one,
                "BANK_TRIGGER_LIMIT": one,
                "AUTH_FAILURE_LIMIT_PER_ADDRESS": one,
                "AUTH_FAILURE_LIMIT_PER_ACCOUNT": one,
            }
        )
    )
    with app.test_request_context("/accounts/me", headers={"Authorization": "Bearer qrk_x"}):
        for _ in range(3):
            throttle.check_request()
            throttle.count_failed_login("ana@example.com")
            throttle.check_login("ana@example.com")
            throttle.check_bank_trigger()
            throttle.count_failed_authentication(7)
    assert throttle.storage_down_until > time.monotonic()


def bogus_credentials():
    """A different made-up credential each time, in each place one may come."""
    yield {"headers": {"Authorization": f"Bearer qrk_{uuid.uuid4().hex}"}}
    yield {"headers": {"X-API-Key": f"qrk_{uuid.uuid4().hex}"}}
    yield {"params": {"token": f"eyJhbGciOiJIUzI1NiJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}"}}
    yield {"params": {"api-key": uuid.uuid4().hex}}
    while True:
        yield {"headers": {"Authorization": f"Bearer qrk_{uuid.uuid4().hex}"}}


def test_failed_authentications_are_limited_per_client_address(make_server):
    api = Api(make_server(auth_failure_limit_per_address="4 per minute").base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    for _ in range(6):  # no credential at all is no guess: it does not count
        assert api.get("/accounts/me").status_code == 401
    guesses = bogus_credentials()
    for _ in range(4):
        assert api.get("/accounts/me", **next(guesses)).status_code == 401
    assert_rate_limited(api.get("/qr", **next(guesses)))
    # The address is out of tries: the right credential waits too, on every route.
    assert_rate_limited(api.get("/accounts/me", headers=tenant.headers))
    with api.stream(tenant) as stream:
        assert stream.status == 429 and int(stream.headers["Retry-After"]) >= 1
    assert_rate_limited(api.post("/admin/accounts", json={}, headers={"Authorization": "Bearer x"}))
    # A new login's JWT resets nothing.
    login = api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    fresh = {"Authorization": f"Bearer {login.json()['data']['accessToken']}"}
    assert_rate_limited(api.get("/accounts/me", headers=fresh))
    assert api.pay(qr["qrId"]).status_code == 200  # bank callbacks are never turned away


def test_a_failure_limited_address_behind_a_proxy_is_one_client(make_server):
    api = Api(make_server(auth_failure_limit_per_address="2 per minute", proxy_hops=1).base)
    tenant = api.new_tenant()
    guesser, neighbour = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    for _ in range(2):
        assert api.get("/accounts/me", headers={**guesser, "X-API-Key": "qrk_x"}).status_code == 401
    assert_rate_limited(api.get("/accounts/me", headers={**guesser, **tenant.headers}))
    assert api.get("/accounts/me", headers={**neighbour, **tenant.headers}).status_code == 200
    assert api.get("/accounts/me", headers={**neighbour, "X-API-Key": "qrk_y"}).status_code == 401


def test_a_forged_forwarded_for_does_not_escape_the_failure_limit(make_server):
    api = Api(make_server(auth_failure_limit_per_address="2 per minute").base)
    for n in range(2):
        headers = {"X-Forwarded-For": f"203.0.113.{n}", "X-API-Key": f"qrk_{n}"}
        assert api.get("/accounts/me", headers=headers).status_code == 401
    headers = {"X-Forwarded-For": "198.51.100.9", "X-API-Key": "qrk_z"}
    assert_rate_limited(api.get("/accounts/me", headers=headers))


def test_failures_that_name_an_account_are_limited_per_account(make_server):
    server = make_server(auth_failure_limit_per_account="3 per minute", proxy_hops=1)
    api = Api(server.base)
    tenant, other = api.new_tenant(), api.new_tenant()
    jwt_headers = {"Authorization": f"Bearer {tenant.jwt}"}
    key = api.post("/api-keys", json={"name": "old"}, headers=jwt_headers).json()["data"]
    assert api.delete(f"/api-keys/{key['id']}", headers=jwt_headers).status_code == 200
    expired = jwt.encode(
        {"type": "access", "sub": str(tenant.user_id), "acc": tenant.account_id,
         "exp": int(time.time()) - 60},
        server.env["QREVENTS_JWT_SECRET_KEY"], algorithm="HS256",
    )  # fmt: skip
    tries = [{"X-API-Key": key["key"]}, {"Authorization": f"Bearer {expired}"}] * 3
    codes = []
    for n, headers in enumerate(tries):  # each from another address: the account counts
        response = api.get("/accounts/me", headers={**headers, "X-Forwarded-For": f"10.0.0.{n}"})
        codes.append(response.json()["error"]["code"])
        if response.status_code == 429:
            assert_rate_limited(response)
    assert codes == ["key_revoked", "token_expired", "key_revoked"] + ["rate_limited"] * 3
    # Its valid credentials keep working (an old key's holder cannot lock the account out),
    # and another account's failures have their own budget.
    assert api.get("/accounts/me", headers=tenant.headers).status_code == 200
    assert api.get("/accounts/me", headers=jwt_headers).status_code == 200
    others = {"Authorization": f"Bearer {other.jwt}"}
    other_key = api.post("/api-keys", json={"name": "x"}, headers=others).json()["data"]
    api.delete(f"/api-keys/{other_key['id']}", headers=others)
    refused = api.get("/accounts/me", headers={"X-API-Key": other_key["key"]})
    assert refused.json()["error"]["code"] == "key_revoked"
