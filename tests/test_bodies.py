"""A request body's reader and its OpenAPI schema come from one declaration
(``qrevents.bodies``): what one takes the other takes, what one refuses for a limit the
other refuses too."""

import jsonschema_rs
import pytest

from qrevents import bodies
from qrevents.errors import ValidationFailed

NOTICE = {
    "qrId": "26113000000000000001",
    "transactionId": "BNK1",
    "amount": 10,
    "currency": "BOB",
    "senderName": "Juan Pérez",
    "senderDocumentId": "1234567",
    "senderAccount": "10000001",
    "senderBankCode": "1016",
    "paymentDate": "20261130",
    "paymentTime": "17:06:29",
}
QR = {"amount": 10, "currency": "BOB", "description": "Pedido 1"}
USER = {"email": "ana@example.com", "password": "correct horse", "name": "Ana"}

CASES = [
    (bodies.PAYMENT_NOTICE, NOTICE, "senderName", "x" * 121),
    (bodies.PAYMENT_NOTICE, NOTICE, "senderBankCode", "x" * 41),
    (bodies.PAYMENT_NOTICE, NOTICE, "transactionId", "a b"),
    (bodies.PAYMENT_NOTICE, NOTICE, "currency", "EUR"),
    (bodies.PAYMENT_NOTICE, NOTICE, "paymentTime", "25:00"),
    (bodies.QR, QR, "description", "x" * 141),
    (bodies.QR, QR, "transactionId", "T" * 31),
    (bodies.USER, USER, "password", "short"),
    (bodies.USER, USER, "email", "not-an-email"),
]


@pytest.mark.parametrize(
    "body, good, name, bad", CASES, ids=[f"{name}-{bad[:8]}" for _, _, name, bad in CASES]
)
def test_the_reader_and_the_schema_agree_on_a_field(body, good, name, bad):
    validator = jsonschema_rs.validator_for(body.schema())
    body.read(good)
    assert validator.is_valid(good)
    with pytest.raises(ValidationFailed) as refused:
        body.read({**good, name: bad})
    assert list(refused.value.fields) == [name]
    assert not validator.is_valid({**good, name: bad})


def test_a_missing_required_field_is_refused_by_both():
    validator = jsonschema_rs.validator_for(bodies.PAYMENT_NOTICE.schema())
    without = {k: v for k, v in NOTICE.items() if k != "senderAccount"}
    with pytest.raises(ValidationFailed) as refused:
        bodies.PAYMENT_NOTICE.read(without)
    assert refused.value.fields == {"senderAccount": "es obligatorio"}
    assert not validator.is_valid(without)


def test_a_body_of_changes_reads_only_what_it_holds_and_refuses_other_names():
    assert bodies.WEBHOOK_CHANGE.read({"enabled": False}) == {"enabled": False}
    with pytest.raises(ValidationFailed) as refused:
        bodies.WEBHOOK_CHANGE.read({"secret": "x", "enabled": None})
    assert refused.value.fields == {
        "secret": "no se puede cambiar",
        "enabled": "debe ser true o false",
    }
    validator = jsonschema_rs.validator_for(bodies.WEBHOOK_CHANGE.schema())
    assert validator.is_valid({"enabled": False})
    assert not validator.is_valid({"secret": "x"})
