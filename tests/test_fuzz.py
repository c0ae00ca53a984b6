"""schemathesis against a live server, driven by ``/openapi.json``.

Every described operation (but the endless stream) gets a bounded number of generated
requests, valid and invalid, signed or authenticated as a real client would be. Each must:
not be a 5xx; match the description (status, content type, headers, body); be refused (4xx)
when the input breaks the description; and, when refused, leave the database exactly as it
was: a refused request writes nothing.

The examples are the same on every run, so the suite stays reproducible; explore further
with ``QREVENTS_FUZZ_EXAMPLES=500 QREVENTS_FUZZ_RANDOM=1 pytest tests/test_fuzz.py``.
"""

import os
import sqlite3

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qrevents import bank_signature
from qrevents.openapi import build_spec
from tests.live import ADMIN_KEY, BANK_SECRET, Api, LiveServer

EXAMPLES_PER_OPERATION = int(os.environ.get("QREVENTS_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TABLES = ("account", "user", "api_key", "stream_ticket", "qr", "payment", "movement", "event")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server of its own, so the database holds only what the fuzzer did; no sweeps."""
    folder = tmp_path_factory.mktemp("fuzz")
    live = LiveServer(
        folder,
        f"sqlite:///{folder / 'fuzz.db'}",
        expiry_sweep_seconds=86400,
        retention_sweep_seconds=86400,
    ).start()
    live.database_path = folder / "fuzz.db"
    yield live
    live.stop()


@pytest.fixture(scope="module")
def merchant(fuzz_server):
    """A merchant with a QR and a payment, so that ids the fuzzer may hit exist."""
    api = Api(fuzz_server.base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "10.00")
    assert api.pay(qr["qrId"], "10.00").status_code == 200
    return tenant


# The description the server serves (``test_openapi`` proves they are the same document).
schema = schemathesis.openapi.from_dict(
    build_spec(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "with-security-parameters": False,
                "deterministic": os.environ.get("QREVENTS_FUZZ_RANDOM") != "1",
            }
        }
    ),
).exclude(path_regex=r"/events/stream$")


class BankSignature(requests.auth.AuthBase):
    """Signs the exact bytes sent, as the bank does."""

    def __call__(self, request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers["X-Bank-Signature"] = bank_signature.sign(BANK_SECRET, body)
        return request


def snapshot(database_path):
    """Every row of every table: what a refused request must leave as it found it."""
    with sqlite3.connect(database_path) as db:
        return {
            table: db.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall() for table in TABLES
        }


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    database=None,
)
def test_no_generated_request_breaks_the_api_or_writes_when_refused(case, fuzz_server, merchant):
    path = case.operation.path
    kwargs = {}
    if path.startswith(("/bank/", "/hooks/")):
        kwargs["auth"] = BankSignature()
    elif path.startswith("/admin/") or path == "/metrics":
        kwargs["headers"] = {"Authorization": f"Bearer {ADMIN_KEY}"}
    else:
        # A JWT: a fuzzed DELETE /api-keys/{id} may revoke keys but cannot lock us out.
        kwargs["headers"] = {"Authorization": f"Bearer {merchant.jwt}"}
    before = snapshot(fuzz_server.database_path)
    response = case.call(base_url=fuzz_server.base, timeout=10, **kwargs)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert snapshot(fuzz_server.database_path) == before, (
            f"{case.method} {path} answered {response.status_code} but changed the database"
        )
