"""Authentication (docs/CONTRACT.md, section 1) end to end: where credentials may come
from, every 401 code, API keys shown once and kept hashed, revocation and expiry ending open
streams, stream tickets, the admin key's reach, the per-account stream limit, and no
credential in a log."""

import hashlib
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from models.db import open_database
from tests.live import ADMIN_KEY, BANK_SECRET, Api

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
INVALID = {
    "success": False,
    "message": "Credenciales no válidas",
    "data": None,
    "error": {"code": "invalid_credentials"},
}


@pytest.fixture(scope="module")
def tenant(server):
    """One merchant for the module: every test here makes its own keys, tickets and tokens."""
    return Api(server.base).new_tenant()


def refusal(response, code):
    """The 401 envelope with ``code``; returns the body."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["success"] is False and body["data"] is None, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body


def forge_jwt(server, *, secret=None, algorithm="HS256", **claims):
    """A token shaped as the server's, signed with ``secret`` (default: the server's own)."""
    now = int(time.time())
    payload = {
        "sub": "1",
        "acc": 1,
        "type": "access",
        "fresh": False,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    payload.update(claims)
    key = secret if secret is not None else server.env["QREVENTS_JWT_SECRET_KEY"]
    return jwt.encode(payload, key, algorithm=algorithm)


def iso_in(seconds):
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def database(server):
    db = open_database(server.env["QREVENTS_DATABASE_URL"])
    db.connect()
    return db


def new_key(api, tenant, **body):
    """An API key made by the tenant's user with its JWT: ``(key, id)``."""
    response = api.post(
        "/api-keys",
        json={"name": "auth test", **body},
        headers={"Authorization": f"Bearer {tenant.jwt}"},
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return data["key"], data["id"]


# ---- where a credential may come from ----------------------------------------------------

PLACES = {
    "query-api-key": lambda t: {"params": {"api-key": t.api_key}},
    "query-api-key-holding-jwt": lambda t: {"params": {"api-key": t.jwt}},
    "query-token-jwt": lambda t: {"params": {"token": t.jwt}},
    "query-token-api-key": lambda t: {"params": {"token": t.api_key}},
    "bearer-jwt": lambda t: {"headers": {"Authorization": f"Bearer {t.jwt}"}},
    "bearer-api-key": lambda t: {"headers": {"Authorization": f"Bearer {t.api_key}"}},
    "x-api-key": lambda t: {"headers": {"X-API-Key": t.api_key}},
    "x-api-key-holding-jwt": lambda t: {"headers": {"X-API-Key": t.jwt}},
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("path", ["/accounts/me", "/qr", "/payments", "/events/stats"])
def test_every_credential_place_works_for_rest_routes(api, tenant, place, path):
    response = api.get(path, **PLACES[place](tenant))
    assert response.status_code == 200, response.text
    if path == "/accounts/me":
        assert response.json()["data"]["id"] == tenant.account_id


@pytest.mark.parametrize(
    "place, auth_type, source",
    [
        ("query-api-key-holding-jwt", "jwt", "query"),
        ("x-api-key-holding-jwt", "jwt", "header"),
        ("query-token-api-key", "apikey", "query"),
    ],
)
def test_the_kind_is_told_by_the_credential_not_by_its_place(api, tenant, place, auth_type,
                                                             source):  # fmt: skip
    with api.stream(**PLACES[place](tenant)) as stream:
        assert stream.status == 200
        connection = stream.next()
    assert (connection.data["authType"], connection.data["tokenSource"]) == (auth_type, source)


# ---- the 401 codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"headers": {"Authorization": "Bearer "}},
        {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
        {"params": {"api-key": ""}},
        {"params": {"token": ""}},
        {"params": {"ticket": "qrt_x"}},  # tickets are for the stream only
    ],
    ids=["nothing", "empty-bearer", "basic-scheme", "empty-api-key", "empty-token",
         "ticket-on-rest"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/accounts/me", "/qr", "/api-keys", "/events/stats"])
def test_no_credential_is_missing_credentials(api, options, path):
    refusal(api.get(path, **options), "missing_credentials")


def test_no_credential_on_the_stream_and_ticket_routes_is_missing_credentials(api):
    with api.stream() as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "missing_credentials"
    refusal(api.post("/events/ticket"), "missing_credentials")


BAD_TOKENS = {
    "garbage": lambda s, t: "hello-world",
    "unknown-api-key": lambda s, t: "qrk_" + uuid.uuid4().hex * 2,
    "api-key-with-a-changed-character": lambda s, t: (
        t.api_key[:-1] + ("A" if t.api_key[-1] != "A" else "B")
    ),
    "three-dotted-garbage": lambda s, t: "abc.def.ghi",
    "tampered-jwt-payload": lambda s, t: tamper(t.jwt),
    "jwt-signed-with-another-secret": lambda s, t: forge_jwt(
        s, secret="another-secret-of-at-least-32-bytes!!", sub=str(t.user_id), acc=t.account_id
    ),
    "jwt-alg-none": lambda s, t: unsigned_jwt(sub=str(t.user_id), acc=t.account_id),
    "refresh-token": lambda s, t: forge_jwt(
        s, type="refresh", sub=str(t.user_id), acc=t.account_id
    ),
    "jwt-of-unknown-user": lambda s, t: forge_jwt(s, sub="987654321", acc=t.account_id),
    "jwt-naming-another-account": lambda s, t: forge_jwt(
        s, sub=str(t.user_id), acc=t.account_id + 1000
    ),
    "jwt-with-non-numeric-sub": lambda s, t: forge_jwt(s, sub="admin", acc=t.account_id),
    "jwt-without-sub": lambda s, t: jwt.encode(
        {"type": "access", "exp": int(time.time()) + 60},
        s.env["QREVENTS_JWT_SECRET_KEY"],
        algorithm="HS256",
    ),
    "admin-key": lambda s, t: ADMIN_KEY,
    "ticket-as-bearer": lambda s, t: "qrt_" + uuid.uuid4().hex,
    # Signed with the server's own key, and malformed: never a 500, never another user.
    "jwt-without-exp": lambda s, t: jwt.encode(
        {"type": "access", "sub": str(t.user_id), "acc": t.account_id},
        s.env["QREVENTS_JWT_SECRET_KEY"],
        algorithm="HS256",
    ),
    "jwt-with-exp-beyond-any-date": lambda s, t: forge_jwt(
        s, sub=str(t.user_id), acc=t.account_id, exp=1e20
    ),
    "jwt-with-exp-as-a-string": lambda s, t: forge_jwt(
        s, sub=str(t.user_id), acc=t.account_id, exp=str(int(time.time()) + 600)
    ),
    "jwt-with-40-digit-sub": lambda s, t: forge_jwt(s, sub="1" * 40, acc=t.account_id),
    "jwt-with-arabic-indic-digits-in-sub": lambda s, t: forge_jwt(
        s, sub=str(t.user_id).translate(ARABIC_INDIC), acc=t.account_id
    ),
    "jwt-with-a-leading-zero-in-sub": lambda s, t: forge_jwt(
        s, sub="0" + str(t.user_id), acc=t.account_id
    ),
    "jwt-with-integer-sub": lambda s, t: forge_jwt(s, sub=t.user_id, acc=t.account_id),
}
# "١٢" is a digit string to str.isdigit() and 12 to int(): it must name nobody.
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def tamper(token):
    """The same token with one claim changed and the old signature kept."""
    head, payload, signature = token.split(".")
    claims = jwt.utils.base64url_decode(payload.encode())
    forged = claims.replace(b'"sub":"', b'"sub":"1')
    return ".".join([head, jwt.utils.base64url_encode(forged).decode(), signature])


def unsigned_jwt(**claims):
    """An ``alg: none`` token, which must never be accepted."""
    now = int(time.time())
    payload = {"type": "access", "iat": now, "nbf": now, "exp": now + 600, **claims}
    return jwt.encode(payload, None, algorithm="none")


@pytest.mark.parametrize("bad", BAD_TOKENS)
def test_bad_credentials_are_invalid_credentials_and_reveal_nothing(server, api, tenant, bad):
    token = BAD_TOKENS[bad](server, tenant)
    for options in (
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"params": {"token": token}},
    ):
        body = refusal(api.get("/accounts/me", **options), "invalid_credentials")
        assert body == INVALID, "every miss must look alike"
    with api.stream(headers={"Authorization": f"Bearer {token}"}) as stream:
        assert stream.status == 401
        assert stream.body_json() == INVALID


def test_expired_jwt_is_token_expired(server, api, tenant):
    past = int(time.time()) - 10
    token = forge_jwt(server, sub=str(tenant.user_id), acc=tenant.account_id, exp=past)
    refusal(api.get("/accounts/me", headers={"Authorization": f"Bearer {token}"}), "token_expired")
    with api.stream(params={"token": token}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "token_expired"


def test_login_failures_look_alike(api, tenant):
    wrong_password = api.post("/auth/login", json={"email": tenant.email, "password": "nope1234"})
    unknown_email = api.post(
        "/auth/login", json={"email": f"nobody{uuid.uuid4().hex[:8]}@example.com",
                             "password": "nope1234"},
    )  # fmt: skip
    refusal(wrong_password, "invalid_credentials")
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.status_code == unknown_email.status_code == 401


def test_an_unknown_email_is_checked_against_a_hash_as_costly_as_a_new_passwords():
    from werkzeug.security import check_password_hash, generate_password_hash

    from qrevents.services.accounts import _DUMMY_HASH

    def method_and_cost(password_hash):
        return password_hash.split("$", 1)[0]  # e.g. scrypt:32768:8:1

    assert method_and_cost(_DUMMY_HASH) == method_and_cost(generate_password_hash("x"))
    assert check_password_hash(_DUMMY_HASH, "timing-equaliser")


def test_login_issues_a_bearer_jwt_for_the_user(server, api, tenant):
    response = api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["tokenType"] == "Bearer" and data["expiresIn"] == 3600
    assert (data["userId"], data["accountId"]) == (tenant.user_id, tenant.account_id)
    claims = jwt.decode(
        data["accessToken"], server.env["QREVENTS_JWT_SECRET_KEY"], algorithms=["HS256"]
    )
    assert claims["sub"] == str(tenant.user_id) and claims["exp"] - claims["iat"] == 3600


# ---- API keys: shown once, hashed at rest, revoked, expired --------------------------------


def test_api_key_is_shown_once_and_stored_only_as_a_hash(server, api, tenant):
    key, key_id = new_key(api, tenant)
    assert key.startswith("qrk_") and len(key) >= 4 + 22  # at least 128 random bits
    listed = api.get("/api-keys", headers=tenant.headers).json()["data"]["items"]
    mine = [k for k in listed if k["id"] == key_id]
    assert len(mine) == 1 and "key" not in mine[0]
    assert all("key" not in k for k in listed)
    assert mine[0]["prefix"] == key[: len(mine[0]["prefix"])] and len(mine[0]["prefix"]) < 16
    assert key not in api.get("/api-keys", headers=tenant.headers).text
    with api.stream(headers={"X-API-Key": key}) as stream:  # the key is its maker's
        connection = stream.next()
    assert (connection.data["accountId"], connection.data["userId"]) == (
        tenant.account_id,
        tenant.user_id,
    )
    db = database(server)
    try:
        rows = db.execute_sql('SELECT * FROM "api_key"').fetchall()
    finally:
        db.close()
    assert rows and not any(key in str(value) for row in rows for value in row)
    assert any(hashlib.sha256(key.encode()).hexdigest() in row for row in rows)
    url = server.env["QREVENTS_DATABASE_URL"]
    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[1]
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as handle:
                    assert key.encode() not in handle.read()
            except FileNotFoundError:
                pass


def test_revoked_key_is_refused_everywhere_and_its_stream_ends_within_a_second(api, tenant):
    key, key_id = new_key(api, tenant)
    assert api.get("/accounts/me", headers={"X-API-Key": key}).status_code == 200
    ticket = api.post("/events/ticket", headers={"X-API-Key": key}).json()["data"]["ticket"]
    with api.stream(headers={"X-API-Key": key}) as stream:
        assert stream.next().event == "connection"
        revoked = api.delete(
            f"/api-keys/{key_id}", headers={"Authorization": f"Bearer {tenant.jwt}"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["data"]["revokedAt"] is not None
        revoked_at = time.monotonic()
        closed = stream.until("stream_closed", timeout=3)[-1]
        assert time.monotonic() - revoked_at < 1.0
        assert closed.data["reason"] == "key_revoked"
        assert stream.next(timeout=2) is None  # and the server ended it
    for options in (
        {"headers": {"X-API-Key": key}},
        {"headers": {"Authorization": f"Bearer {key}"}},
        {"params": {"api-key": key}},
    ):
        refusal(api.get("/accounts/me", **options), "key_revoked")
    with api.stream(params={"ticket": ticket}) as stream:  # asked for before the revocation
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "key_revoked"
    # the account's other credentials are untouched
    assert api.get("/accounts/me", headers=tenant.headers).status_code == 200
    listed = api.get("/api-keys", headers=tenant.headers).json()["data"]["items"]
    assert [k["revokedAt"] is not None for k in listed if k["id"] == key_id] == [True]


def test_stream_opened_with_a_ticket_ends_when_the_key_behind_it_is_revoked(api, tenant):
    key, key_id = new_key(api, tenant)
    ticket = api.post("/events/ticket", params={"api-key": key}).json()["data"]["ticket"]
    with api.stream(params={"ticket": ticket}) as stream:
        assert stream.next().event == "connection"
        api.delete(f"/api-keys/{key_id}", headers={"Authorization": f"Bearer {tenant.jwt}"})
        closed = stream.until("stream_closed", timeout=2)[-1]
    assert closed.data["reason"] == "key_revoked"


def test_key_past_its_expiry_is_token_expired_and_ends_its_stream(api, tenant):
    key, _ = new_key(api, tenant, expiresAt=iso_in(3))
    assert api.get("/accounts/me", params={"api-key": key}).status_code == 200
    with api.stream(params={"api-key": key}) as stream:
        assert stream.next().event == "connection"
        closed = stream.until("stream_closed", timeout=5)[-1]
        assert closed.data["reason"] == "token_expired"
        assert stream.next(timeout=2) is None
    refusal(api.get("/accounts/me", params={"api-key": key}), "token_expired")
    with api.stream(params={"api-key": key}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "token_expired"


def test_jwt_expiry_refuses_requests_and_ends_streams_at_exp(make_server):
    # exp is whole seconds: a 2 s lifetime leaves at least 1 s to open the streams
    server = make_server(jwt_expires_seconds=2)
    api = Api(server.base)
    tenant = api.new_tenant()
    exp = jwt.decode(tenant.jwt, options={"verify_signature": False})["exp"]
    bearer = {"Authorization": f"Bearer {tenant.jwt}"}
    ticket, spare = (
        api.post("/events/ticket", headers=bearer).json()["data"]["ticket"] for _ in range(2)
    )
    with api.stream(headers=bearer) as direct, api.stream(params={"ticket": ticket}) as ticketed:
        for stream in (direct, ticketed):
            assert stream.next().data["authType"] == "jwt"
        for stream in (direct, ticketed):
            closed = stream.until("stream_closed", timeout=3)[-1]
            assert closed.data["reason"] == "token_expired"
            assert time.time() >= exp - 0.05  # not before the token's exp
        assert time.time() < exp + 1.0
    refusal(api.get("/accounts/me", headers=bearer), "token_expired")
    refusal(api.get("/accounts/me", params={"token": tenant.jwt}), "token_expired")
    for options in ({"headers": bearer}, {"params": {"ticket": spare}}):
        with api.stream(**options) as stream:  # the ticket outlived the token it stands for
            assert stream.status == 401
            assert stream.body_json()["error"]["code"] == "token_expired"
    # a new login is a new token
    again = api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    fresh = again.json()["data"]["accessToken"]
    assert api.get("/accounts/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    api.session.close()  # an idle keep-alive connection would delay the server's stop


def set_active(server, table, row_id, active):
    """Flip a user's or an account's ``active`` flag (no route does; an operator would)."""
    db = database(server)
    try:
        with db.atomic():
            db.execute_sql(
                f'UPDATE "{table}" SET active = {db.param} WHERE id = {db.param}', (active, row_id)
            )
    finally:
        db.close()


@pytest.mark.parametrize("table", ["user", "account"])
def test_credentials_of_an_inactive_user_or_account_are_refused_at_every_request(
    server, api, table
):
    member = api.new_tenant()
    ticket = api.post("/events/ticket", headers=member.headers).json()["data"]["ticket"]
    set_active(server, table, member.user_id if table == "user" else member.account_id, False)
    for headers in (member.headers, {"Authorization": f"Bearer {member.jwt}"}):
        assert refusal(api.get("/accounts/me", headers=headers), "invalid_credentials") == INVALID
    with api.stream(params={"ticket": ticket}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "invalid_credentials"
    login = api.post("/auth/login", json={"email": member.email, "password": member.password})
    assert login.status_code == 401 and login.json()["error"]["code"] == "invalid_credentials"
    set_active(server, table, member.user_id if table == "user" else member.account_id, True)
    assert api.get("/accounts/me", headers=member.headers).status_code == 200


def test_a_key_without_a_user_cannot_manage_api_keys(api, tenant):
    made = api.post(
        f"/admin/accounts/{tenant.account_id}/api-keys", json={"name": "service"}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    service = {"X-API-Key": made.json()["data"]["key"]}
    assert api.get("/accounts/me", headers=service).status_code == 200
    for response in (
        api.post("/api-keys", json={"name": "k"}, headers=service),
        api.delete(f"/api-keys/{tenant.api_key_id}", headers=service),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert api.get("/accounts/me", headers=tenant.headers).status_code == 200


@pytest.mark.parametrize(
    "lifetime, place",
    [(30, "X-API-Key"), (30, "Authorization"), (None, "X-API-Key"), (None, "api-key")],
    ids=["key-of-30-s-in-x-api-key", "key-of-30-s-as-bearer", "permanent-key",
         "permanent-key-in-the-query"],
)  # fmt: skip
def test_only_a_users_jwt_manages_api_keys(api, tenant, lifetime, place):
    key, key_id = new_key(api, tenant, **({"expiresAt": iso_in(lifetime)} if lifetime else {}))
    _, victim_id = new_key(api, tenant)
    if place == "api-key":
        options = {"params": {"api-key": key}}
    else:
        options = {"headers": {place: f"Bearer {key}" if place == "Authorization" else key}}
    jwt_headers = {"Authorization": f"Bearer {tenant.jwt}"}
    before = api.get("/api-keys", headers=jwt_headers).json()["data"]["items"]
    for response in (
        api.post("/api-keys", json={"name": "forever"}, **options),
        api.delete(f"/api-keys/{victim_id}", **options),
        api.delete(f"/api-keys/{key_id}", **options),
    ):
        assert response.status_code == 403, response.text
        body = response.json()
        assert (body["success"], body["data"], body["error"]) == (
            False,
            None,
            {"code": "forbidden"},
        )
    assert api.get("/api-keys", headers=jwt_headers).json()["data"]["items"] == before
    assert api.get("/api-keys", **options).status_code == 200  # reading the list is allowed
    # The user's JWT, in any place a credential may come, does both.
    for jwt_place in ({"headers": jwt_headers}, {"headers": {"X-API-Key": tenant.jwt}}):
        made = api.post("/api-keys", json={"name": "by the user"}, **jwt_place)
        assert made.status_code == 201, made.text
        revoked = api.delete(f"/api-keys/{made.json()['data']['id']}", **jwt_place)
        assert revoked.status_code == 200, revoked.text


# ---- stream tickets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "asked_with, auth_type, source",
    [("bearer-jwt", "jwt", "header"), ("query-api-key", "apikey", "query")],
)
def test_ticket_is_single_use_and_stands_for_its_credential(api, tenant, asked_with, auth_type,
                                                             source):  # fmt: skip
    response = api.post("/events/ticket", **PLACES[asked_with](tenant))
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["ticket"].startswith("qrt_") and data["expiresIn"] == 60
    with api.stream(params={"ticket": data["ticket"]}) as stream:
        assert stream.status == 200
        connection = stream.next()
    assert connection.data["accountId"] == tenant.account_id
    assert (connection.data["authType"], connection.data["tokenSource"]) == (auth_type, source)
    with api.stream(params={"ticket": data["ticket"]}) as again:
        assert again.status == 401
        assert again.body_json()["error"]["code"] == "invalid_credentials"


def test_expired_ticket_is_refused(server, api, tenant):
    ticket = api.post("/events/ticket", headers=tenant.headers).json()["data"]["ticket"]
    db = database(server)
    try:  # age it past its 60 s instead of waiting
        with db.atomic():
            db.execute_sql(
                f'UPDATE "stream_ticket" SET expires_at = {db.param} '
                f"WHERE ticket_hash = {db.param}",
                ("2000-01-01 00:00:00", hashlib.sha256(ticket.encode()).hexdigest()),
            )
    finally:
        db.close()
    with api.stream(params={"ticket": ticket}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "invalid_credentials"


def test_unknown_ticket_is_refused(api):
    with api.stream(params={"ticket": "qrt_" + uuid.uuid4().hex}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "invalid_credentials"


# ---- the admin key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/accounts/me"),
        ("get", "/qr"),
        ("get", "/payments"),
        ("get", "/api-keys"),
        ("post", "/events/ticket"),
    ],
)
def test_admin_key_is_not_an_account_credential(api, method, path):
    response = getattr(api, method)(path, headers=ADMIN)
    assert refusal(response, "invalid_credentials") == INVALID


def test_admin_key_does_not_open_a_stream(api):
    with api.stream(headers=ADMIN) as stream:
        assert stream.status == 401
        assert stream.body_json() == INVALID


@pytest.mark.parametrize(
    "headers",
    [
        lambda t: {"Authorization": f"Bearer {t.api_key}"},
        lambda t: {"Authorization": f"Bearer {t.jwt}"},
        lambda t: {"Authorization": f"Bearer {ADMIN_KEY}x"},
        lambda t: {"Authorization": f"Bearer {ADMIN_KEY[:-1]}"},
    ],
    ids=["account-api-key", "account-jwt", "admin-key-plus-a-char", "admin-key-minus-a-char"],
)
def test_only_the_admin_key_opens_admin_routes(api, tenant, headers):
    response = api.post("/admin/accounts", json={"name": "x", "currency": "BOB"},
                        headers=headers(tenant))  # fmt: skip
    refusal(response, "invalid_credentials")


ADMIN_KEY_ELSEWHERE = {
    "x-api-key": {"headers": {"X-API-Key": ADMIN_KEY}},
    "query-api-key": {"params": {"api-key": ADMIN_KEY}},
    "query-token": {"params": {"token": ADMIN_KEY}},
}


@pytest.mark.parametrize("place", ADMIN_KEY_ELSEWHERE)
def test_the_admin_key_counts_only_as_a_bearer_token(api, place):
    options = ADMIN_KEY_ELSEWHERE[place]
    made = api.post("/admin/accounts", json={"name": "x", "currency": "BOB"}, **options)
    refusal(made, "invalid_credentials")
    refusal(api.get("/metrics", **options), "invalid_credentials")
    stats = api.get("/events/stats", **options)  # no admin view, and no account's either
    assert refusal(stats, "invalid_credentials") == INVALID


def test_stats_show_an_account_only_its_own_entry_and_the_admin_all(api):
    one, two = api.new_tenant(), api.new_tenant()
    with api.stream(one), api.stream(two) as b1, api.stream(two) as b2:
        for stream in (b1, b2):
            assert stream.status == 200
        admin_view = api.get("/events/stats", headers=ADMIN).json()["data"]
        own_view = api.get("/events/stats", headers=one.headers).json()["data"]
    assert admin_view["subscriptionsByAccount"][str(one.account_id)] == 1
    assert admin_view["subscriptionsByAccount"][str(two.account_id)] == 2
    assert admin_view["yourAccountId"] is None
    assert admin_view["totalConnections"] >= 3
    assert own_view["subscriptionsByAccount"] == {str(one.account_id): 1}
    assert own_view["yourAccountId"] == one.account_id
    assert own_view["totalConnections"] >= 3  # the totals are the deployment's
    assert own_view["accountsWithSubscriptions"] >= 2


# ---- the per-account stream limit ------------------------------------------------------------


def test_stream_limit_per_account_ends_the_extra_stream_at_once_and_a_closed_one_frees_a_slot(
    make_server,
):
    server = make_server(max_streams_per_account=2)
    api = Api(server.base)
    tenant, neighbour = api.new_tenant(), api.new_tenant()
    first, second = api.stream(tenant), api.stream(tenant)
    try:
        assert [first.next().event, second.next().event] == ["connection", "connection"]
        with api.stream(tenant) as third:
            assert third.status == 200  # an EventSource would give up for good on a 429
            (closed,) = third.until("stream_closed")  # no connection event before it
            assert third.next() is None
        assert closed.data["reason"] == "too_many_streams"
        assert 15000 <= third.retry <= 30000  # long, and jittered
        with api.stream(neighbour) as other:  # another account is not limited by this one
            assert other.status == 200
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the server learns of the disconnect at its next write (heartbeat)
            retry = api.stream(tenant)
            opened = retry.next()
            if opened.event == "connection" or time.monotonic() > deadline:
                break
            retry.close()
            time.sleep(0.1)
        with retry:
            assert opened.event == "connection"
    finally:
        first.close()
        second.close()
        api.session.close()


# ---- credentials never reach a log -----------------------------------------------------------


def test_credentials_in_query_strings_never_reach_the_log(server, api, tenant):
    offset = len(server.log())
    unknown_key = "qrk_" + uuid.uuid4().hex + "NEVERLOGGED"
    garbage_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJub3RMb2dnZWQiOjF9.NEVERLOGGED" + uuid.uuid4().hex
    ticket = api.post("/events/ticket", headers=tenant.headers).json()["data"]["ticket"]
    secrets = [tenant.api_key, tenant.jwt, unknown_key, garbage_jwt, ticket, tenant.password]
    calls = [
        ("get", "/accounts/me", {"api-key": tenant.api_key}, 200),
        ("get", "/accounts/me", {"token": tenant.jwt}, 200),
        ("get", "/accounts/me", {"token": tenant.api_key}, 200),
        ("get", "/accounts/me", {"api-key": unknown_key}, 401),
        ("get", "/accounts/me", {"token": garbage_jwt}, 401),
        ("get", "/qr", {"api-key": tenant.api_key, "limit": "0"}, 422),
        ("post", "/qr", {"token": tenant.jwt}, 400),
        ("get", "/qr/bad%0Aid", {"api-key": tenant.api_key}, 422),
        ("get", "/no-such-route", {"token": tenant.jwt}, 404),
        ("delete", "/accounts/me", {"api-key": tenant.api_key}, 405),
        ("post", "/bank/payments", {"token": tenant.jwt}, 400),  # unsigned: read as a trigger
        ("post", "/admin/accounts", {"api-key": tenant.api_key}, 401),
    ]
    for method, path, params, status in calls:
        response = getattr(api, method)(path, params=params, data=b"{bad")
        assert response.status_code == status, (path, response.text)
    login = api.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert login.status_code == 200
    secrets.append(login.json()["data"]["accessToken"])
    for params in ({"token": tenant.jwt}, {"api-key": tenant.api_key}, {"ticket": ticket},
                   {"token": garbage_jwt}):  # fmt: skip
        with api.stream(params=params) as stream:
            if stream.status == 200:
                stream.next()
    time.sleep(0.5)  # streams are logged when they end
    log = server.log()[offset:]
    assert "/accounts/me" in log and "/events/stream" in log  # the requests were logged
    leaked = [s for s in secrets if s in log]
    assert not leaked, f"credentials in the server log: {leaked}"
    assert ADMIN_KEY not in server.log() and BANK_SECRET not in server.log()
    assert "NEVERLOGGED" not in log


def test_a_malformed_request_line_does_not_log_its_credential(server):
    key = "qrk_" + uuid.uuid4().hex + "MALFORMEDLINE"
    offset = len(server.log())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        # a raw control character after the key: the line is not HTTP, gunicorn answers 400
        conn.sendall(f"GET /accounts/me?api-key={key}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert conn.recv(100).startswith(b"HTTP/1.1 400")
    time.sleep(0.2)
    assert key not in server.log()[offset:]
