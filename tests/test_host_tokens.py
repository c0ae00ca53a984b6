"""Host applications' tokens: a legacy app signs a short JWT naming the account, and
its user's browser opens the stream with it. HS256 with the client's ``host_token``, RS256 and
ES256 with a PEM public key; issuer, audience, lifetime and account checked; read-only."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from qrevents_client import host_token

from qrevents.config import ConfigError, host_jwt_settings, load_config
from tests.live import Api, LiveServer
from tests.test_auth import set_active

SECRET = "host-app-shared-secret-of-32-bytes-or-more"
ISSUER = "https://erp.example.bo"
AUDIENCE = "qrevents"
HOST = {
    "host_jwt_key": SECRET,
    "host_jwt_issuer": ISSUER,
    "host_jwt_audience": AUDIENCE,
    "host_jwt_max_lifetime_seconds": 60,
}


@pytest.fixture(scope="module")
def host_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("host-tokens")
    live = LiveServer(folder, f"sqlite:///{folder / 'q.db'}", **HOST).start()
    yield live
    live.stop()


@pytest.fixture
def api(host_server):
    return Api(host_server.base)


@pytest.fixture
def tenant(api):
    return api.new_tenant()


def mint(account_id, lifetime=30, **overrides):
    return host_token(
        overrides.pop("secret", SECRET),
        account_id=overrides.pop("account", account_id),
        issuer=overrides.pop("issuer", ISSUER),
        audience=overrides.pop("audience", AUDIENCE),
        lifetime=lifetime,
        **overrides,
    )


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def refused_with(api, token):
    response = api.get("/accounts/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    with api.stream(params={"token": token}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == response.json()["error"]["code"]
    return response.json()["error"]["code"]


def test_a_host_token_opens_the_accounts_stream_and_reads(api, tenant):
    token = mint(tenant.account_id, subject="erp-user-7")
    with api.stream(params={"token": token}) as stream:
        (connection,) = stream.until("connection")
        assert connection.data["accountId"] == tenant.account_id
        assert connection.data["authType"] == "jwt" and connection.data["userId"] is None
        assert connection.data["tokenSource"] == "query"
        qr = api.create_qr(tenant)
        (created,) = stream.take(1)
        assert created.event == "qr_created" and created.data["qrId"] == qr["qrId"]
    me = api.get("/accounts/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["data"]["id"] == tenant.account_id
    assert api.get("/payments", headers=bearer(token)).status_code == 200
    ticket = api.post("/events/ticket", headers=bearer(token))
    assert ticket.status_code == 201


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/qr"),
        ("post", "/webhooks"),
        ("get", "/webhooks"),
        ("post", "/api-keys"),
        ("delete", "/api-keys/1"),
    ],
)
def test_a_host_token_never_writes_nor_manages_keys_or_webhooks(api, tenant, method, path):
    token = mint(tenant.account_id)
    response = getattr(api, method)(path, json={}, headers=bearer(token))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_our_own_jwts_keep_working_beside_host_tokens(api, tenant):
    assert api.get("/accounts/me", headers=bearer(tenant.jwt)).status_code == 200


def expired(account_id):
    return host_token(
        SECRET,
        account_id=account_id,
        issuer=ISSUER,
        audience=AUDIENCE,
        lifetime=30,
        now=time.time() - 60,
    )


def unsigned(account_id):
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time())}
    claims.update(exp=claims["iat"] + 30, qrevents_account=account_id)
    return jwt.encode(claims, key=None, algorithm="none")


def without(claim):
    def make(account_id):
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 30}
        claims["qrevents_account"] = account_id
        del claims[claim]
        return jwt.encode(claims, SECRET, algorithm="HS256")

    return make


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda a: mint(a, issuer="https://other.example"), "invalid_credentials"),
        (lambda a: mint(a, audience="someone-else"), "invalid_credentials"),
        (expired, "token_expired"),
        (lambda a: mint(a, lifetime=3600), "invalid_credentials"),
        (lambda a: mint(a, account=987654), "invalid_credentials"),
        (lambda a: mint(a, account="1e3"), "invalid_credentials"),
        (lambda a: mint(a, secret="x" * 40), "invalid_credentials"),
        (lambda a: mint(a, claim="account"), "invalid_credentials"),
        (unsigned, "invalid_credentials"),
        (without("exp"), "invalid_credentials"),
        (without("iat"), "invalid_credentials"),
        (without("aud"), "invalid_credentials"),
    ],
    ids=[
        "wrong-issuer",
        "wrong-audience",
        "expired",
        "lifetime-too-long",
        "unknown-account",
        "account-not-an-id",
        "wrong-secret",
        "claim-under-another-name",
        "alg-none",
        "no-exp",
        "no-iat",
        "no-aud",
    ],
)
def test_bad_host_tokens_are_401_with_their_code(api, tenant, make, code):
    assert refused_with(api, make(tenant.account_id)) == code


def test_a_host_token_for_an_inactive_account_is_refused(host_server, api, tenant):
    token = mint(tenant.account_id)
    set_active(host_server, "account", tenant.account_id, False)
    try:
        assert refused_with(api, token) == "invalid_credentials"
    finally:
        set_active(host_server, "account", tenant.account_id, True)


def test_the_stream_of_a_host_token_ends_at_its_expiry(api, tenant):
    token = mint(tenant.account_id, lifetime=2)
    started = time.monotonic()
    with api.stream(params={"token": token}) as stream:
        events = stream.until("stream_closed", timeout=6)
    assert events[-1].data["reason"] == "token_expired"
    assert 0.5 < time.monotonic() - started < 4


def hs256_by_hand(claims, key):
    """An HS256 token keyed with any bytes (PyJWT refuses a PEM key as an HMAC secret)."""

    def segment(value):
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = segment({"alg": "HS256", "typ": "JWT"}) + b"." + segment(claims)
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def pem_keys(kind):
    """``(private key object, public PEM)`` for RS256 or ES256."""
    if kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_tokens_signed_with_a_private_key_are_verified_with_the_public_key_file(
    tmp_path, algorithm
):
    private, public_pem = pem_keys(algorithm)
    key_file = tmp_path / "host.pub.pem"
    key_file.write_text(public_pem)
    live = LiveServer(
        tmp_path,
        f"sqlite:///{tmp_path / 'q.db'}",
        **{**HOST, "host_jwt_key": str(key_file), "host_jwt_algorithms": algorithm},
    ).start()
    try:
        api = Api(live.base)
        tenant = api.new_tenant()
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 30,
            "qrevents_account": str(tenant.account_id),
        }
        token = jwt.encode(claims, private, algorithm=algorithm)
        with api.stream(params={"token": token}) as stream:
            (connection,) = stream.until("connection")
            assert connection.data["accountId"] == tenant.account_id
        # The public key used as an HMAC secret (algorithm confusion) opens nothing.
        forged = hs256_by_hand(claims, public_pem.encode())
        assert refused_with(api, forged) == "invalid_credentials"
        other, _ = pem_keys(algorithm)
        assert refused_with(api, jwt.encode(claims, other, algorithm=algorithm)) == (
            "invalid_credentials"
        )
    finally:
        live.stop()


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"HOST_JWT_KEY": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----"}, "PEM"),
        ({"HOST_JWT_KEY": "short"}, "32 bytes"),
        ({"HOST_JWT_ALGORITHMS": "RS256"}, "PEM public key"),
        ({"HOST_JWT_ALGORITHMS": "none"}, "unknown"),
        ({"HOST_JWT_ISSUER": ""}, "ISSUER"),
    ],
)
def test_a_host_token_setting_that_cannot_be_trusted_stops_the_start(tmp_path, settings, says):
    environ = {f"QREVENTS_{name.upper()}": str(value) for name, value in HOST.items()}
    environ.update({f"QREVENTS_{name}": value for name, value in settings.items()})
    with pytest.raises(ConfigError, match=says):
        load_config(environ, tmp_path)


def test_no_host_key_trusts_no_host_token(tmp_path):
    assert host_jwt_settings(load_config({}, tmp_path)) is None
