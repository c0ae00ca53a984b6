"""Ids in the path (``<safe_id(...)>``): a malformed one is the same 422 on every route that
takes one, answered before any credential is read."""

import pytest

from qrevents import create_app

REFUSED = {
    "qrId": "no es un id de QR",
    "transactionId": "no es un id de transacción",
}


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'unit.db'}")
    return create_app().test_client()


@pytest.mark.parametrize(
    "method, path, field",
    [
        ("get", "/qr/a%0Db", "qrId"),
        ("get", "/qr/" + "1" * 65, "qrId"),
        ("get", "/qr/%00/image.png", "qrId"),
        ("post", "/qr/a%0Ab/cancel", "qrId"),
        ("post", "/payments/pago%20%231/release", "transactionId"),
    ],
)
def test_a_malformed_path_id_is_a_422_naming_its_field(client, method, path, field):
    response = getattr(client, method)(path)
    assert response.status_code == 422
    assert response.json["error"] == {
        "code": "validation_failed",
        "fields": {field: REFUSED[field]},
    }


def test_a_well_formed_path_id_reaches_the_view(client):
    response = client.get("/qr/261130-abc_1.2:3")
    assert response.status_code == 401  # the view asked for a credential
