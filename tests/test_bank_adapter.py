"""The BANECO client over real HTTP, against the simulated bank on a loopback port.

Each test registers a merchant of its own; the simulator counts the requests each operation
got, which is how retries, repeats and shared authentication are seen from the bank's side.
"""

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from qrevents.banks import (
    BankRejected,
    BankUnavailable,
    QrOrder,
    open_bank,
)
from qrevents.banks.baneco import UNKNOWN_TOKEN_LIFETIME, _lifetime
from qrevents.simulator.ledger import LA_PAZ

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
READS = ("statusQR", "paidQR")


def la_paz_today():
    return datetime.now(LA_PAZ).date()


def order(transaction_id="tx-1", amount_cents=1250, **changes):
    fields = {
        "transaction_id": transaction_id,
        "amount_cents": amount_cents,
        "currency": "BOB",
        "description": "Entrada general",
        "due_date": la_paz_today() + timedelta(days=1),
        "single_use": True,
        "modify_amount": False,
    }
    fields.update(changes)
    return QrOrder(**fields)


def run(bank, operation, qr_id):
    """Call one operation of the interface (by the bank's name for it)."""
    if operation == "generateQR":
        return bank.issue(order("tx-other"))
    if operation == "cancelQR":
        return bank.cancel(qr_id)
    if operation == "statusQR":
        return bank.status(qr_id)
    if operation == "paidQR":
        return bank.paid_on(la_paz_today())
    raise AssertionError(operation)


def bank_requests(operation, outcome):
    value = REGISTRY.get_sample_value(
        "qrevents_bank_requests_total", {"operation": operation, "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def link(bank_simulator):
    return bank_simulator.register(branch_code="E0001")


@pytest.fixture
def bank(link):
    return open_bank(link, connect_timeout=1.0, read_timeout=2.0)


def test_every_operation_succeeds(bank_simulator, bank, link):
    issued = bank.issue(order("tx-every", 1250))
    assert issued.qr_id.isdigit() and len(issued.qr_id) == 20
    assert issued.qr_id[:6] == la_paz_today().strftime("%y%m%d")
    assert issued.image_png.startswith(PNG_SIGNATURE)

    fresh = bank.status(issued.qr_id)
    assert (fresh.code, fresh.status, fresh.payments) == (0, "active", [])

    paid = bank_simulator.pay(issued.qr_id, senderName="PEDRO PEREZ")
    status = bank.status(issued.qr_id)
    assert (status.code, status.status) == (1, "paid")
    assert status.payments == [paid]
    assert paid["amount"] == Decimal("12.50") and paid["branchCode"] == "E0001"

    assert bank.paid_on(la_paz_today()) == [paid]

    other = bank.issue(order("tx-every-2"))
    assert other.qr_id != issued.qr_id
    assert bank.cancel(other.qr_id) is None
    assert bank.status(other.qr_id).status == "cancelled"


def test_generate_sends_the_order_in_the_banks_terms(bank_simulator, bank, link):
    due = la_paz_today() + timedelta(days=30)
    issued = bank.issue(order("tx-terms", 120, currency="USD", due_date=due, modify_amount=True))
    [qr] = [qr for qr in bank_simulator.qrs() if qr["qrId"] == issued.qr_id]
    # the simulator decrypted accountCredit with the merchant's key and found its account
    assert qr["userName"] == link.user_name
    assert qr["transactionId"] == "tx-terms"
    assert (qr["amount"], qr["currency"]) == (Decimal("1.20"), "USD")
    assert qr["dueDate"] == due.isoformat()
    assert (qr["singleUse"], qr["modifyAmount"]) == (True, True)
    assert qr["branchCode"] == "E0001"
    assert qr["description"] == "Entrada general"


def test_open_bank_returns_one_client_per_link(link):
    assert open_bank(link) is open_bank(link)
    assert open_bank(link) is not open_bank(replace(link, password="otra"))


def test_unknown_adapter_is_refused(link):
    with pytest.raises(ValueError):
        open_bank(replace(link, adapter="banco-fantasma"))


def test_wrong_password_is_rejected_with_the_banks_message(bank_simulator, link):
    bank = open_bank(replace(link, password="equivocada"))
    with pytest.raises(BankRejected) as refused:
        bank.issue(order())
    assert refused.value.operation == "authenticate"
    assert refused.value.message == "Usuario o contraseña incorrectos"
    assert bank_simulator.requests().get("generateQR") is None


def test_account_number_not_the_merchants_is_rejected(bank_simulator, link):
    bank = open_bank(replace(link, account_number="9999999999"))
    with pytest.raises(BankRejected) as refused:
        bank.issue(order())
    assert refused.value.message == "La cuenta de abono no corresponde al cliente"
    assert all(qr["userName"] != link.user_name for qr in bank_simulator.qrs())


def test_one_token_serves_every_request_while_it_is_valid(bank_simulator, bank):
    issued = bank.issue(order())
    bank.status(issued.qr_id)
    bank.paid_on(la_paz_today())
    bank.cancel(issued.qr_id)
    assert bank_simulator.requests()["authenticate"] == 1


def test_token_is_renewed_a_minute_before_it_expires(bank_simulator, bank):
    bank_simulator.settings(tokenLifetimeSeconds=61.0)  # good for one second more than the margin
    issued = bank.issue(order())
    bank.status(issued.qr_id)
    assert bank_simulator.requests()["authenticate"] == 1
    time.sleep(1.2)
    assert bank.status(issued.qr_id).status == "active"
    seen = bank_simulator.requests()
    assert seen["authenticate"] == 2
    assert "expiredToken" not in seen  # renewed before the bank had to refuse it


@pytest.mark.parametrize("answer", ["http401", "responseCode"])
def test_token_expired_between_two_requests_is_renewed_once(bank_simulator, bank, answer):
    bank_simulator.settings(expiredTokenAnswer=answer)
    issued = bank.issue(order())
    bank_simulator.faults(tokens={"expire": True})  # the bank now holds our token expired
    assert bank.status(issued.qr_id).status == "active"
    seen = bank_simulator.requests()
    assert seen["authenticate"] == 2
    assert seen["expiredToken"] == 1
    assert seen["statusQR"] == 2


@pytest.mark.parametrize("answer", ["http401", "responseCode"])
def test_a_token_refused_again_after_renewal_fails(bank_simulator, bank, answer):
    issued = bank.issue(order())
    bank_simulator.settings(tokenLifetimeSeconds=0.0, expiredTokenAnswer=answer)
    bank_simulator.faults(tokens={"expire": True})  # and every new token is born expired
    with pytest.raises(BankRejected) as refused:
        bank.cancel(issued.qr_id)
    assert refused.value.message == "Token expirado"
    seen = bank_simulator.requests()
    assert seen["cancelQR"] == 2  # the request, and once more with a new token: no more
    assert seen["authenticate"] == 2


# The token of the bank's specification (section 6.1): issued 2021-06-11, 30 minutes, long expired.
BANK_EXAMPLE_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c3IiOiIyNjU1MTAxMCIsIm5iZiI6MTYyMzQ0NzU1OCwiZXhw"
    "IjoxNjIzNDQ5MzU4LCJpYXQiOjE2MjM0NDc1NTgsImlzcyI6ImFwaS5iYW5lY28uY29tLmJvIiwiYXVkIjoiQmFu"
    "ZWNvQ3VzdG9tZXJzIn0.wvSQgpy4aheJew7QNjVfdgO7wv8uRFVZzXToCykcdC0"
)


def test_token_lifetime_is_read_from_the_banks_jwt_whatever_our_clock_says():
    assert _lifetime(BANK_EXAMPLE_TOKEN) == 1800.0  # exp - iat, though exp is years past
    assert _lifetime("not-a-jwt") == UNKNOWN_TOKEN_LIFETIME


def test_concurrent_requests_share_one_authentication(bank_simulator, link):
    bank_simulator.faults(authenticate={"latency": 0.3})
    bank = open_bank(link)
    results = run_concurrently(lambda: bank.paid_on(la_paz_today()), 12)
    assert results == [[]] * 12
    assert bank_simulator.requests()["authenticate"] == 1


def test_concurrent_requests_meeting_an_expired_token_renew_it_once(bank_simulator, bank):
    issued = bank.issue(order())
    bank_simulator.faults(tokens={"expire": True}, authenticate={"latency": 0.2})
    results = run_concurrently(lambda: bank.status(issued.qr_id).status, 10)
    assert results == ["active"] * 10
    assert bank_simulator.requests()["authenticate"] == 2


def test_a_failed_authentication_fails_its_waiters_at_once(bank_simulator, link):
    bank_simulator.faults(authenticate={"latency": 3.0})
    bank = open_bank(link, connect_timeout=1.0, read_timeout=0.5, read_attempts=1)
    started = time.monotonic()
    results = run_concurrently(lambda: bank.paid_on(la_paz_today()), 5)
    assert all(isinstance(result, BankUnavailable) for result in results), results
    assert time.monotonic() - started < 1.5  # not five read timeouts one after the other
    assert bank_simulator.requests()["authenticate"] == 1


OPERATIONS = ("authenticate", "generateQR", "cancelQR", "statusQR", "paidQR")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_refusal_of_each_operation_is_bank_rejected_with_the_banks_message(
    bank_simulator, link, operation
):
    bank = open_bank(link)
    issued = bank.issue(order())
    client = open_bank(replace(link, branch_code="E0002"))  # a new client: a new token
    message = "Servicio temporalmente restringido"
    bank_simulator.reset()
    bank_simulator.faults(**{operation: {"responseCode": 77, "message": message}})
    before = bank_requests(operation, "rejected")
    with pytest.raises(BankRejected) as refused:
        run(client, "statusQR" if operation == "authenticate" else operation, issued.qr_id)
    assert (refused.value.operation, refused.value.response_code) == (operation, 77)
    assert refused.value.message == message
    assert bank_requests(operation, "rejected") == before + 1
    # a refusal on a token fetched for this very request is final: nothing is repeated
    assert bank_simulator.requests()[operation] == 1


def test_refusal_with_a_kept_token_is_asked_once_more_with_a_new_one(bank_simulator, bank):
    """The specification does not say which responseCode an expired token gets, so a refusal
    met with a kept token is asked once more after authenticating again."""
    issued = bank.issue(order())
    bank_simulator.faults(cancelQR={"responseCode": 77, "message": "No"})
    with pytest.raises(BankRejected):
        bank.cancel(issued.qr_id)
    seen = bank_simulator.requests()
    assert (seen["cancelQR"], seen["authenticate"]) == (2, 2)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_hang_of_each_operation_is_bank_unavailable_within_the_timeout(
    bank_simulator, link, operation
):
    issued = open_bank(link).issue(order())
    client = open_bank(replace(link, branch_code="E0003"), read_timeout=0.4)
    bank_simulator.reset()
    bank_simulator.faults(**{operation: {"latency": 2.0}})
    target = "statusQR" if operation == "authenticate" else operation
    started = time.monotonic()
    with pytest.raises(BankUnavailable) as unavailable:
        run(client, target, issued.qr_id)
    elapsed = time.monotonic() - started
    assert unavailable.value.operation == operation
    if operation in READS:  # three tries, 0.2 s and 0.4 s apart
        assert 3 * 0.4 + 0.6 <= elapsed < 3 * 0.4 + 0.6 + 1.0
        assert bank_simulator.requests()[operation] == 3
    else:
        assert 0.4 <= elapsed < 1.2
        assert bank_simulator.requests()[operation] == 1


@pytest.mark.parametrize("operation", OPERATIONS)
def test_http_error_is_bank_unavailable_and_only_reads_are_retried(bank_simulator, link, operation):
    issued = open_bank(link).issue(order())
    client = open_bank(replace(link, branch_code="E0004"))
    bank_simulator.reset()
    bank_simulator.faults(**{operation: {"httpStatus": 503}})
    before = bank_requests(operation, "unavailable")
    target = "statusQR" if operation == "authenticate" else operation
    with pytest.raises(BankUnavailable):
        run(client, target, issued.qr_id)
    tries = 3 if operation in READS else 1
    assert bank_simulator.requests()[operation] == tries
    assert bank_requests(operation, "unavailable") - before == tries


def test_a_read_that_fails_once_is_retried_and_succeeds(bank_simulator, bank):
    issued = bank.issue(order())
    bank_simulator.faults(statusQR={"httpStatus": 502, "times": 1})
    assert bank.status(issued.qr_id).status == "active"
    assert bank_simulator.requests()["statusQR"] == 2


def test_a_write_is_not_retried_even_when_the_bank_acted(bank_simulator, bank):
    issued = bank.issue(order())
    bank_simulator.faults(cancelQR={"httpStatus": 500, "actFirst": True})
    with pytest.raises(BankUnavailable):
        bank.cancel(issued.qr_id)
    assert bank_simulator.requests()["cancelQR"] == 1
    bank_simulator.clear_faults()
    assert bank.status(issued.qr_id).status == "cancelled"  # the answer was lost, not the act


@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize("field", ["statusQrCode", "statusQRCode"])
def test_status_reads_payment_as_object_or_array_and_both_spellings(
    bank_simulator, bank, shape, field
):
    bank_simulator.settings(paymentShape=shape, statusField=field)
    issued = bank.issue(order())
    assert bank.status(issued.qr_id).payments == []
    paid = bank_simulator.pay(issued.qr_id)
    status = bank.status(issued.qr_id)
    assert (status.code, status.status, status.payments) == (1, "paid", [paid])


def test_unknown_status_code_is_unknown_and_logged(bank_simulator, bank, caplog):
    issued = bank.issue(order())
    bank_simulator.set_status(issued.qr_id, code=5)
    with caplog.at_level(logging.WARNING, logger="qrevents.events"):
        status = bank.status(issued.qr_id)
    assert (status.code, status.status) == (5, "unknown")
    assert '"code": 5' in caplog.text and "unknown_status" in caplog.text


GARBLED = {
    "generateQR": [
        {"responseCode": 0, "message": ""},
        {"responseCode": 0, "qrId": "26113000000000000001", "qrImage": "%%%"},
        {"responseCode": 0, "qrId": "26113000000000000001", "qrImage": "aGVsbG8="},
        {"responseCode": 0, "qrId": None, "qrImage": "iVBORw0KGgo="},
    ],
    "statusQR": [
        {"responseCode": 0, "message": ""},
        {"responseCode": 0, "statusQrCode": "pagado"},
        {"responseCode": 0, "statusQrCode": 1, "payment": 7},
        {"responseCode": 0, "statusQrCode": 1, "payment": ["x"]},
        {"statusQrCode": 1, "payment": []},
    ],
    "paidQR": [
        {"responseCode": 0, "message": ""},
        {"responseCode": 0, "paymentList": "ninguno"},
        {"responseCode": 0, "paymentList": [{"qrId": "x"}, 3]},
        {"responseCode": "cero", "paymentList": []},
        ["not", "an", "object"],
    ],
    "authenticate": [
        {"responseCode": 0, "message": ""},
        {"responseCode": 0, "token": 12},
    ],
}


@pytest.mark.parametrize(
    "operation,body",
    [(operation, body) for operation, bodies in GARBLED.items() for body in bodies],
)
def test_missing_or_garbled_fields_are_bank_unavailable(bank_simulator, link, operation, body):
    issued = open_bank(link).issue(order())
    client = open_bank(replace(link, branch_code="E0005"), read_attempts=1)
    bank_simulator.faults(**{operation: {"body": body}})
    target = "statusQR" if operation == "authenticate" else operation
    with pytest.raises(BankUnavailable):
        run(client, target, issued.qr_id)


def test_a_body_that_is_not_json_is_bank_unavailable(bank_simulator, bank):
    bank_simulator.faults(paidQR={"httpStatus": 200})  # an HTML page with status 200
    with pytest.raises(BankUnavailable):
        bank.paid_on(la_paz_today())


def test_status_code_and_payment_null_are_read_defensively(bank_simulator, bank):
    issued = bank.issue(order())
    bank_simulator.faults(
        statusQR={"body": {"statusQRCode": "0", "payment": None, "responseCode": "0"}}
    )
    status = bank.status(issued.qr_id)
    assert (status.code, status.status, status.payments) == (0, "active", [])


def test_paid_on_a_day_lists_that_days_payments_of_this_merchant_only(bank_simulator, bank):
    yesterday = la_paz_today() - timedelta(days=1)
    early = bank.issue(order("tx-a", due_date=la_paz_today()))
    late = bank.issue(order("tx-b"))
    paid_early = bank_simulator.pay(
        early.qr_id, paymentDate=yesterday.isoformat(), paymentTime="23:59:58"
    )
    paid_late = bank_simulator.pay(late.qr_id)
    stranger = open_bank(bank_simulator.register())
    bank_simulator.pay(stranger.issue(order("tx-c")).qr_id)

    assert bank.paid_on(yesterday) == [paid_early]
    assert paid_early["paymentDate"] == yesterday.strftime("%Y-%m-%dT00:00:00")
    assert paid_early["paymentTime"] == "23:59:58"
    assert bank.paid_on(la_paz_today()) == [paid_late]
    assert bank.paid_on(date(2001, 1, 1)) == []


def test_a_refusal_without_a_message_gets_one_to_show(bank_simulator, bank):
    bank_simulator.faults(paidQR={"body": {"responseCode": 12}})
    with pytest.raises(BankRejected) as refused:
        bank.paid_on(la_paz_today())
    assert refused.value.message == "El banco rechazó la operación (código 12)"


def test_a_paid_single_use_qr_cannot_be_cancelled(bank_simulator, bank):
    issued = bank.issue(order())
    bank_simulator.pay(issued.qr_id)
    with pytest.raises(BankRejected) as refused:
        bank.cancel(issued.qr_id)
    assert refused.value.message == "El QR de uso único ya fue pagado y no puede anularse"
    assert bank.status(issued.qr_id).status == "paid"


def test_a_paid_multi_use_qr_can_be_cancelled(bank_simulator, bank):
    issued = bank.issue(order(single_use=False))
    bank_simulator.pay(issued.qr_id)
    bank_simulator.pay(issued.qr_id)
    bank.cancel(issued.qr_id)
    status = bank.status(issued.qr_id)
    assert status.status == "cancelled" and len(status.payments) == 2


def test_refusals_and_outages_log_a_warning_without_secrets_or_tokens(bank_simulator, link, caplog):
    bank = open_bank(link, read_timeout=0.3, read_attempts=1)
    issued = bank.issue(order())
    bank_simulator.faults(
        cancelQR={"responseCode": 77, "message": "No se puede"},
        statusQR={"latency": 1.0},
    )
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(BankRejected) as refused:
            bank.cancel(issued.qr_id)
        with pytest.raises(BankUnavailable) as unavailable:
            bank.status(issued.qr_id)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any('"operation": "cancelQR"' in r.getMessage() for r in warnings)
    assert any('"operation": "statusQR"' in r.getMessage() for r in warnings)
    assert all(r.exc_info is None for r in caplog.records)  # no tracebacks
    texts = caplog.text + str(refused.value) + str(unavailable.value)
    for secret in (link.password, link.aes_key, link.account_number, "Bearer", "eyJ"):
        assert secret not in texts


def test_requests_and_latency_are_counted_by_operation(bank):
    ok_before = bank_requests("generateQR", "ok")
    latency = "qrevents_bank_request_seconds_count"
    seen_before = REGISTRY.get_sample_value(latency, {"operation": "generateQR"}) or 0.0
    bank.issue(order())
    assert bank_requests("generateQR", "ok") == ok_before + 1
    assert REGISTRY.get_sample_value(latency, {"operation": "generateQR"}) == seen_before + 1


def run_concurrently(call, count):
    """``call()`` in ``count`` threads released together; results (or errors) in order."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def one(index):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # the test looks at what each thread met
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


GREENLETS_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import json, sys
from datetime import date

import gevent
import requests

from qrevents.banks import BankLink, open_bank

link, control = BankLink(**json.loads(sys.argv[1])), sys.argv[2]
bank = open_bank(link)
rounds = []
for _ in range(2):
    jobs = [gevent.spawn(bank.paid_on, date(2026, 1, 1)) for _ in range(20)]
    gevent.joinall(jobs, raise_error=True)
    rounds.append([job.value for job in jobs])
    requests.post(control + "/simulator/faults", json={"tokens": {"expire": True}})
print(json.dumps(rounds))
"""


def test_greenlets_under_gevent_share_one_authentication(bank_simulator, link):
    """Under a gevent worker the token lock is gevent's: twenty greenlets wait on one
    authentication, and after the bank expires the token, on one renewal."""
    bank_simulator.faults(authenticate={"latency": 0.3})
    done = subprocess.run(
        [sys.executable, "-c", GREENLETS_SCRIPT, json.dumps(asdict(link)), bank_simulator.root],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [[[]] * 20] * 2
    seen = bank_simulator.requests()
    assert seen["authenticate"] == 2 and seen["paidQR"] == 40 + seen.get("expiredToken", 0)
