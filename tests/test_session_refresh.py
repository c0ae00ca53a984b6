"""A password sign-in that lasts the working day (docs/CONTRACT.md, authentication): the
refresh cookie set by POST /auth/login, rotated by POST /auth/refresh, a reused token
revoking its family, POST /auth/logout, and users who may no longer sign in."""

import time
import uuid

import jwt
import pytest
import requests

from tests.live import Api
from tests.test_auth import refusal, set_active

COOKIE = "qrevents_refresh"


@pytest.fixture
def member(server):
    """A fresh merchant and a cookie jar of its own, signed in with its password."""
    api = Api(server.base)
    tenant = api.new_tenant()
    api.session.cookies.clear()
    login = api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert login.status_code == 200, login.text
    api.login = login
    yield api, tenant
    api.session.close()


def refresh_cookie(api):
    return api.session.cookies.get(COOKIE, path="/auth")


def refresh_with(api, token):
    """POST /auth/refresh with ``token`` as the only cookie (not the session's jar)."""
    return requests.post(
        api.url("/auth/refresh"), headers={"Cookie": f"{COOKIE}={token}"}, timeout=10
    )


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_login_sets_an_httponly_strict_refresh_cookie_sent_only_to_auth(member):
    api, _ = member
    header = api.login.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert header.startswith(f"{COOKIE}=")
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "Path=/auth;" in header + ";" and "SameSite=Strict" in header
    assert "Max-Age=43200" in header
    assert "secure" not in attributes  # development; production adds Secure
    data = api.login.json()["data"]
    assert data["refreshExpiresIn"] == 43200 and data["expiresIn"] == 3600
    # sent to /auth only: the cookie jar keeps it there
    assert refresh_cookie(api) and api.session.cookies.get(COOKIE, path="/") is None


def test_refresh_answers_a_working_access_token_and_rotates_the_cookie(member):
    api, tenant = member
    first = refresh_cookie(api)
    response = api.post("/auth/refresh")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Sesión renovada"
    data = body["data"]
    assert data["tokenType"] == "Bearer" and data["expiresIn"] == 3600
    assert (data["userId"], data["accountId"]) == (tenant.user_id, tenant.account_id)
    me = api.get("/accounts/me", headers=bearer(data["accessToken"]))
    assert me.status_code == 200 and me.json()["data"]["id"] == tenant.account_id
    second = refresh_cookie(api)
    assert second and second != first
    # the rotated cookie renews again, many times over
    for _ in range(5):
        assert api.post("/auth/refresh").status_code == 200
    assert refresh_cookie(api) not in (first, second)


def test_a_refresh_token_used_twice_is_refused_and_revokes_its_family(member):
    api, _ = member
    stolen = refresh_cookie(api)
    assert api.post("/auth/refresh").status_code == 200
    rightful = refresh_cookie(api)
    replay = refresh_with(api, stolen)
    refusal(replay, "invalid_credentials")
    assert "inicie sesión" in replay.json()["message"]
    # the family is revoked: the holder of the newest token is signed out as well
    api.session.cookies.clear()
    refusal(refresh_with(api, rightful), "invalid_credentials")


def test_refusing_a_refresh_forgets_the_cookie(member):
    api, _ = member
    stolen = refresh_cookie(api)
    api.post("/auth/refresh")
    replay = refresh_with(api, stolen)
    assert replay.status_code == 401
    assert f"{COOKIE}=;" in replay.headers["Set-Cookie"]
    assert "Path=/auth" in replay.headers["Set-Cookie"]


def test_logout_revokes_the_refresh_token_and_clears_the_cookie(member):
    api, _ = member
    token = refresh_cookie(api)
    response = api.post("/auth/logout")
    assert response.status_code == 200 and response.json()["message"] == "Sesión cerrada"
    assert refresh_cookie(api) is None
    refusal(refresh_with(api, token), "invalid_credentials")
    # signing out again, or without a cookie, is still a sign-out
    assert api.post("/auth/logout").status_code == 200


def test_logout_of_one_sign_in_leaves_the_others(member, server):
    api, tenant = member
    other = Api(server.base)
    other.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert api.post("/auth/logout").status_code == 200
    assert other.post("/auth/refresh").status_code == 200
    other.session.close()


@pytest.mark.parametrize("table", ["user", "account"])
def test_an_inactive_user_or_account_cannot_refresh_even_once_active_again(member, server, table):
    api, tenant = member
    token = refresh_cookie(api)
    row = tenant.user_id if table == "user" else tenant.account_id
    set_active(server, table, row, False)
    refusal(refresh_with(api, token), "invalid_credentials")
    set_active(server, table, row, True)
    refusal(refresh_with(api, token), "invalid_credentials")


def forged(server, **claims):
    now = int(time.time())
    payload = {
        "sub": "1",
        "acc": 1,
        "type": "refresh",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(payload, server.env["QREVENTS_JWT_SECRET_KEY"], algorithm="HS256")


def test_bad_refresh_cookies_are_refused_with_the_right_code(member, server):
    api, tenant = member
    api.session.cookies.clear()
    refusal(api.post("/auth/refresh"), "missing_credentials")
    for value in ("garbage", "a.b.c", forged(server, jti="unknown-jti")):
        refusal(refresh_with(api, value), "invalid_credentials")
    # an access token is not a refresh token
    refusal(refresh_with(api, tenant.jwt), "invalid_credentials")
    expired = forged(server, iat=int(time.time()) - 100, nbf=int(time.time()) - 100, exp=1)
    refusal(refresh_with(api, expired), "token_expired")


def test_a_refresh_token_is_no_access_token(member):
    api, _ = member
    token = refresh_cookie(api)
    refusal(api.get("/accounts/me", headers=bearer(token)), "invalid_credentials")
    refusal(api.post("/events/ticket", headers=bearer(token)), "invalid_credentials")


def test_renewing_never_extends_the_sign_in_past_its_working_day(make_server):
    live = make_server(refresh_expires_seconds=2)
    api = Api(live.base)
    api.new_tenant(bank=False)
    time.sleep(0.6)
    renewed = api.post("/auth/refresh")
    assert renewed.status_code == 200
    assert renewed.json()["data"]["refreshExpiresIn"] <= 2
    token = refresh_cookie(api)
    time.sleep(1.6)  # 2.2 s after the password: the family has expired, renewed or not
    refusal(refresh_with(api, token), "token_expired")
    api.session.close()


def test_in_production_the_refresh_cookie_is_secure(make_server):
    live = make_server(env="production")
    api = Api(live.base)
    tenant = api.new_tenant(bank=False)
    login = requests.post(
        api.url("/auth/login"),
        json={"email": tenant.email, "password": tenant.password},
        timeout=10,
    )
    header = login.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=") and "; Secure" in header and "HttpOnly" in header
    api.session.close()
