"""The simulated bank: the rules BANECO has, its notifications, its page and its switches.

Raw HTTP where the point is the wire (what the bank accepts and refuses); the production
client where the point is what a merchant sees.
"""

import base64
import struct
import time
import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import requests
import segno
import simplejson

from qrevents.banks import BankRejected, QrOrder, open_bank
from qrevents.banks.crypto import encrypt
from qrevents.simulator.ledger import LA_PAZ
from tests.bank_sim import BankSimulator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def la_paz_today():
    return datetime.now(LA_PAZ).date()


def order(transaction_id="tx-1", amount_cents=1000, **changes):
    fields = {
        "transaction_id": transaction_id,
        "amount_cents": amount_cents,
        "currency": "BOB",
        "description": "Cuota",
        "due_date": la_paz_today() + timedelta(days=1),
        "single_use": True,
        "modify_amount": False,
    }
    fields.update(changes)
    return QrOrder(**fields)


def token_for(simulator, link):
    """A bearer token straight from the bank's authenticate (encrypted password)."""
    response = requests.post(
        simulator.base_url + "api/authentication/authenticate",
        json={"userName": link.user_name, "password": encrypt(link.aes_key, link.password)},
        timeout=5,
    )
    body = response.json()
    assert (response.status_code, body["responseCode"]) == (200, 0), body
    return body["token"]


def generate(simulator, link, token, **changes):
    body = {
        "transactionId": "tx-raw",
        "accountCredit": encrypt(link.aes_key, link.account_number),
        "currency": "BOB",
        "amount": 10.5,
        "description": "Cuota",
        "dueDate": (la_paz_today() + timedelta(days=2)).isoformat(),
        "singleUse": True,
        "modifyAmount": False,
    }
    body.update(changes)
    body = {name: value for name, value in body.items() if value is not None}
    return requests.post(
        simulator.base_url + "api/qrsimple/generateQR",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


# Authentication and tokens


def test_authentication_checks_the_decrypted_password(bank_simulator):
    link = bank_simulator.register()
    url = bank_simulator.base_url + "api/authentication/authenticate"
    for password in (
        link.password,  # in the clear
        encrypt("Z" * 32, link.password),  # with another key
        encrypt(link.aes_key, link.password + "x"),  # another password
    ):
        body = requests.post(url, json={"userName": link.user_name, "password": password}).json()
        assert body["responseCode"] != 0 and body["message"] == "Usuario o contraseña incorrectos"
        assert "token" not in body
    assert token_for(bank_simulator, link)


def test_tokens_really_expire(bank_simulator):
    bank_simulator.settings(tokenLifetimeSeconds=2.0)
    link = bank_simulator.register()
    token = token_for(bank_simulator, link)
    url = bank_simulator.base_url + "api/qrsimple/v2/paidQR/20260101"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, headers=headers, timeout=5).json()["responseCode"] == 0
    time.sleep(2.05)
    expired = requests.get(url, headers=headers, timeout=5)
    assert expired.status_code == 401 and expired.json()["message"] == "Token expirado"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer abc.def.ghi", "Basic dXNlcjpwYXNz"],
    ids=["none", "empty", "garbage", "basic"],
)
def test_requests_without_a_valid_token_are_refused(bank_simulator, header):
    headers = {"Authorization": header} if header else {}
    response = requests.get(
        bank_simulator.base_url + "api/qrsimple/v2/paidQR/20260101", headers=headers, timeout=5
    )
    assert response.status_code == 401 and response.json()["responseCode"] != 0


def test_there_is_no_encrypt_endpoint(bank_simulator):
    url = bank_simulator.base_url + "api/authentication/encrypt?text=1234&aesKey=" + "A" * 32
    assert requests.get(url, timeout=5).status_code == 404


# generateQR: what the bank accepts


def test_generate_answers_a_qr_id_in_the_banks_format_and_a_png(bank_simulator):
    link = bank_simulator.register()
    token = token_for(bank_simulator, link)
    first, second = (generate(bank_simulator, link, token).json() for _ in range(2))
    for body in (first, second):
        assert body["responseCode"] == 0 and body["message"] == ""
        assert len(body["qrId"]) == 20 and body["qrId"].isdigit()
        assert body["qrId"][:6] == la_paz_today().strftime("%y%m%d")
        assert not body["qrImage"].startswith("data:")
        png = base64.b64decode(body["qrImage"], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        width = int.from_bytes(png[16:20], "big")
        assert width >= 200  # big enough to scan from a screen
    assert first["qrId"] != second["qrId"]


def test_qr_image_encodes_the_bank_the_qr_id_and_the_amount(bank_simulator):
    bank = open_bank(bank_simulator.register())
    issued = bank.issue(order(amount_cents=1250))
    expected = segno.make(
        f"BANCO SIMULADO QR SIMPLE|{issued.qr_id}|12.50 BOB", error="m", micro=False
    )
    assert png_modules(issued.image_png, scale=8, border=4) == [
        [bool(module) for module in row] for row in expected.matrix
    ]


def png_modules(png, scale, border):
    """The dark modules of a 1-bit greyscale PNG of a QR code, row by row (stdlib only)."""
    assert png.startswith(PNG_SIGNATURE)
    pos, data, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, chunk = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            data += chunk
    width, height, depth, colour = header[:4]
    assert (depth, colour) == (1, 0)
    stride = (width + 7) // 8
    raw, rows, previous = zlib.decompress(data), [], bytes(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            if kind == 1:
                line[x] = (line[x] + (line[x - 1] if x else 0)) % 256
            elif kind == 2:
                line[x] = (line[x] + previous[x]) % 256
            else:
                assert kind == 0, f"PNG filter {kind}"
        previous = bytes(line)
        rows.append([not (line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    size = width // scale - 2 * border
    centres = [(border + i) * scale + scale // 2 for i in range(size)]
    return [[rows[y][x] for x in centres] for y in centres]


BAD_ORDERS = {
    "three-decimals": {"amount": Decimal("1.234")},
    "amount-as-text": {"amount": "10.50"},
    "amount-zero": {"amount": 0},
    "amount-negative": {"amount": -5},
    "amount-missing": {"amount": None},
    "due-date-slashes": {"dueDate": "2030/12/31"},
    "due-date-day-first": {"dueDate": "31-12-2030"},
    "due-date-impossible": {"dueDate": "2030-02-30"},
    "due-date-past": {"dueDate": "2020-01-01"},
    "branch-code-6-chars": {"branchCode": "E00001"},
    "transaction-id-31-chars": {"transactionId": "t" * 31},
    "transaction-id-missing": {"transactionId": None},
    "currency-eur": {"currency": "EUR"},
    "single-use-text": {"singleUse": "true"},
    "modify-amount-missing": {"modifyAmount": None},
}


@pytest.mark.parametrize("changes", BAD_ORDERS.values(), ids=BAD_ORDERS.keys())
def test_generate_refuses_what_the_bank_refuses(bank_simulator, changes):
    link = bank_simulator.register()
    token = token_for(bank_simulator, link)
    before = len(bank_simulator.qrs())
    response = generate(bank_simulator, link, token, **changes)
    assert response.status_code == 400
    body = response.json()
    assert body["responseCode"] != 0 and body["message"]
    assert "qrId" not in body
    assert len(bank_simulator.qrs()) == before


BAD_REQUESTS = {
    "authenticate-not-json": ("POST", "api/authentication/authenticate", b"{userName"),
    "authenticate-array": ("POST", "api/authentication/authenticate", b"[]"),
    "authenticate-no-user": ("POST", "api/authentication/authenticate", b'{"password": "x"}'),
    "generate-not-json": ("POST", "api/qrsimple/generateQR", b"not json"),
    "cancel-no-qr-id": ("DELETE", "api/qrsimple/cancelQR", b"{}"),
    "cancel-qr-id-number": ("DELETE", "api/qrsimple/cancelQR", b'{"qrId": 5}'),
    "paid-day-with-dashes": ("GET", "api/qrsimple/v2/paidQR/2026-01-01", None),
    "paid-day-short": ("GET", "api/qrsimple/v2/paidQR/260101", None),
}


@pytest.mark.parametrize("method,path,body", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_requests_the_bank_cannot_read_are_400_with_a_response_code(
    bank_simulator, method, path, body
):
    link = bank_simulator.register()
    headers = {"Authorization": f"Bearer {token_for(bank_simulator, link)}"}
    before = len(bank_simulator.qrs())
    response = requests.request(
        method, bank_simulator.base_url + path, data=body, headers=headers, timeout=5
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["responseCode"] != 0 and answer["message"]
    assert len(bank_simulator.qrs()) == before


def test_generate_accepts_the_limits(bank_simulator):
    link = bank_simulator.register()
    token = token_for(bank_simulator, link)
    response = generate(
        bank_simulator,
        link,
        token,
        transactionId="t" * 30,
        branchCode="E0001",
        amount=Decimal("99999999.99"),
        dueDate=la_paz_today().isoformat(),
        currency="USD",
    )
    assert response.json()["responseCode"] == 0, response.text


def test_generate_refuses_an_account_credit_not_encrypted_with_the_key(bank_simulator):
    link = bank_simulator.register()
    token = token_for(bank_simulator, link)
    for credit in (link.account_number, encrypt("Q" * 32, link.account_number)):
        body = generate(bank_simulator, link, token, accountCredit=credit).json()
        assert body["responseCode"] != 0


def test_a_merchant_cannot_see_or_cancel_another_merchants_qr(bank_simulator):
    owner = open_bank(bank_simulator.register())
    stranger = open_bank(bank_simulator.register())
    issued = owner.issue(order())
    with pytest.raises(BankRejected):
        stranger.status(issued.qr_id)
    with pytest.raises(BankRejected):
        stranger.cancel(issued.qr_id)
    assert owner.status(issued.qr_id).status == "active"


# Paying


def test_a_cancelled_qr_cannot_be_paid(bank_simulator):
    bank = open_bank(bank_simulator.register())
    issued = bank.issue(order())
    bank.cancel(issued.qr_id)
    response = requests.post(bank_simulator.root + "/simulator/pay", json={"qrId": issued.qr_id})
    assert response.status_code == 409 and response.json()["error"] == "El QR está anulado"
    assert bank.status(issued.qr_id).payments == []


def test_a_single_use_qr_is_paid_once_and_a_multi_use_one_many_times(bank_simulator):
    bank = open_bank(bank_simulator.register())
    single = bank.issue(order("tx-single"))
    multi = bank.issue(order("tx-multi", single_use=False))
    bank_simulator.pay(single.qr_id)
    again = requests.post(bank_simulator.root + "/simulator/pay", json={"qrId": single.qr_id})
    assert again.status_code == 409
    first, second = bank_simulator.pay(multi.qr_id), bank_simulator.pay(multi.qr_id)
    assert first["transactionId"] != second["transactionId"]
    assert len(bank.status(single.qr_id).payments) == 1
    assert bank.status(multi.qr_id).payments == [first, second]


def test_the_amount_must_match_unless_the_qr_allows_changing_it(bank_simulator):
    bank = open_bank(bank_simulator.register())
    fixed = bank.issue(order("tx-fixed", 1000))
    free = bank.issue(order("tx-free", 1000, modify_amount=True))
    refused = requests.post(
        bank_simulator.root + "/simulator/pay", json={"qrId": fixed.qr_id, "amount": 9.99}
    )
    assert refused.status_code == 409
    assert bank_simulator.pay(free.qr_id, amount=Decimal("7.25"))["amount"] == Decimal("7.25")


@pytest.mark.parametrize(
    "body,status",
    [
        ({}, 400),
        ({"qrId": 5}, 400),
        ({"qrId": "00000000000000000000"}, 404),
        ({"amount": "5"}, 400),
        ({"amount": Decimal("1.001")}, 400),
        ({"amount": -1}, 400),
        ({"paymentDate": "ayer"}, 400),
        ({"senderName": 5}, 400),
        ({"senderAccount": ""}, 400),
    ],
)
def test_bad_payments_are_refused_and_record_nothing(bank_simulator, body, status):
    bank = open_bank(bank_simulator.register())
    issued = bank.issue(order())
    full = {"qrId": issued.qr_id, **body} if "qrId" not in body and body else body
    response = requests.post(
        bank_simulator.root + "/simulator/pay",
        data=simplejson.dumps(full, use_decimal=True),
        timeout=5,
    )
    assert response.status_code == status, response.text
    assert bank.status(issued.qr_id).payments == []


def test_payment_is_the_banks_payment_qr(bank_simulator):
    bank = open_bank(bank_simulator.register(branch_code="E0009"))
    issued = bank.issue(order(amount_cents=120))
    payment = bank_simulator.pay(issued.qr_id, senderName="PEDRO PEREZ")
    assert set(payment) == {
        "qrId",
        "transactionId",
        "paymentDate",
        "paymentTime",
        "currency",
        "amount",
        "senderBankCode",
        "senderName",
        "senderDocumentId",
        "senderAccount",
        "description",
        "branchCode",
    }
    assert payment["amount"] == Decimal("1.20") and payment["currency"] == "BOB"
    assert payment["paymentDate"] == la_paz_today().strftime("%Y-%m-%dT00:00:00")
    assert len(payment["paymentTime"]) == 8 and payment["senderDocumentId"] == "0"
    assert (payment["senderName"], payment["branchCode"]) == ("PEDRO PEREZ", "E0009")


def test_status_changed_behind_the_merchants_back(bank_simulator, notification_receiver):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    cancelled, paid = bank.issue(order("tx-c")), bank.issue(order("tx-p"))
    bank_simulator.set_status(cancelled.qr_id, "cancelled")
    payment = bank_simulator.set_status(paid.qr_id, "paid")
    assert bank.status(cancelled.qr_id).status == "cancelled"
    assert bank.status(paid.qr_id).payments == [payment]
    time.sleep(0.3)
    assert receiver.received == []  # nobody was told


# Notifications


def test_notification_is_retried_until_the_merchant_answers_response_code_0(
    bank_simulator, notification_receiver
):
    receiver = notification_receiver(answers=(1, 1, 0))
    bank = open_bank(bank_simulator.register(notify_url=receiver.url, notify_bearer="s3cret"))
    issued = bank.issue(order())
    payment = bank_simulator.pay(issued.qr_id)
    bodies = receiver.wait_for(3)
    assert bodies == [{"payment": payment}] * 3
    assert all(headers["Authorization"] == "Bearer s3cret" for headers, _ in receiver.received)
    attempts = bank_simulator.wait_for_notifications(
        lambda seen: len([a for a in seen if a["qrId"] == issued.qr_id]) == 3
    )
    mine = [a for a in attempts if a["qrId"] == issued.qr_id]
    assert [(a["attempt"], a["delivered"]) for a in mine] == [(1, False), (2, False), (3, True)]
    time.sleep(0.3)
    assert len(receiver.received) == 3  # none after the answer with responseCode 0


def test_notification_attempts_stop_at_the_setting(bank_simulator, notification_receiver):
    bank_simulator.settings(notifyAttempts=4)
    receiver = notification_receiver(answers=(5,))
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    bank_simulator.pay(bank.issue(order()).qr_id)
    receiver.wait_for(4)
    time.sleep(0.4)
    assert len(receiver.received) == 4


def test_notifications_are_ten_one_second_apart_by_default(tmp_path, notification_receiver):
    receiver = notification_receiver(answers=(1, 0))
    simulator = BankSimulator(tmp_path).start()
    try:
        bank = open_bank(simulator.register(notify_url=receiver.url))
        simulator.pay(bank.issue(order()).qr_id)
        receiver.wait_for(1)
        started = time.monotonic()
        receiver.wait_for(2, timeout=5)
        assert 0.9 <= time.monotonic() - started < 2.0
        assert simulator.current_settings()["notifyAttempts"] == 10
    finally:
        simulator.stop()


def test_paying_answers_before_the_notification_is_delivered(bank_simulator, notification_receiver):
    receiver = notification_receiver(delay=1.5)
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    issued = bank.issue(order())
    started = time.monotonic()
    bank_simulator.pay(issued.qr_id)
    assert time.monotonic() - started < 0.5
    receiver.wait_for(1)


def test_dropped_notification_is_never_sent_but_the_bank_lists_the_payment(
    bank_simulator, notification_receiver
):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    bank_simulator.faults(notify={"drop": True})
    payment = bank_simulator.pay(bank.issue(order()).qr_id)
    time.sleep(0.4)
    assert receiver.received == []
    assert payment in bank.paid_on(la_paz_today())


def test_notification_sent_twice(bank_simulator, notification_receiver):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    bank_simulator.faults(notify={"twice": True})
    payment = bank_simulator.pay(bank.issue(order()).qr_id)
    assert receiver.wait_for(2) == [{"payment": payment}] * 2
    time.sleep(0.3)
    assert len(receiver.received) == 2


def test_notifications_out_of_order(bank_simulator, notification_receiver):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    bank_simulator.faults(notify={"outOfOrder": True})
    first = bank_simulator.pay(bank.issue(order("tx-1")).qr_id)
    time.sleep(0.3)
    assert receiver.received == []  # held back until the next one
    second = bank_simulator.pay(bank.issue(order("tx-2")).qr_id)
    assert receiver.wait_for(2) == [{"payment": second}, {"payment": first}]


def test_a_held_notification_is_sent_when_the_switches_are_cleared(
    bank_simulator, notification_receiver
):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    bank_simulator.faults(notify={"outOfOrder": True})
    payment = bank_simulator.pay(bank.issue(order()).qr_id)
    bank_simulator.clear_faults()
    assert receiver.wait_for(1) == [{"payment": payment}]


# Switches, page, state


BAD_SWITCHES = {
    "unknown-operation": {"fooQR": {"latency": 1}},
    "unknown-switch": {"statusQR": {"slow": True}},
    "not-an-object": {"statusQR": 3},
    "latency-text": {"statusQR": {"latency": "2"}},
    "latency-negative": {"statusQR": {"latency": -1}},
    "http-status-600": {"statusQR": {"httpStatus": 600}},
    "response-code-text": {"statusQR": {"responseCode": "7"}},
    "times-zero": {"statusQR": {"times": 0}},
    "act-first-text": {"cancelQR": {"actFirst": "yes"}},
    "notify-unknown": {"notify": {"late": True}},
    "notify-not-bool": {"notify": {"drop": 1}},
    "tokens-unknown": {"tokens": {"revoke": True}},
    "good-then-bad": {"paidQR": {"latency": 5}, "statusQR": {"latency": "x"}},
}


@pytest.mark.parametrize("switches", BAD_SWITCHES.values(), ids=BAD_SWITCHES.keys())
def test_bad_fault_switches_are_refused_and_change_nothing(bank_simulator, switches):
    response = requests.post(bank_simulator.root + "/simulator/faults", json=switches, timeout=5)
    assert response.status_code == 400 and response.json()["error"]
    started = time.monotonic()
    open_bank(bank_simulator.register()).paid_on(la_paz_today())
    assert time.monotonic() - started < 1.0  # the good half of a bad request is not on


BAD_SETTINGS = {
    "unknown": {"tokenLifetime": 5},
    "wrong-kind": {"notifyAttempts": "3"},
    "bool": {"paymentShape": True},
    "unknown-choice": {"statusField": "status"},
    "negative": {"notifyIntervalSeconds": -1},
    "zero-attempts": {"notifyAttempts": 0},
    "good-then-bad": {"notifyAttempts": 3, "expiredTokenAnswer": "http403"},
}


@pytest.mark.parametrize("settings", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_settings_are_refused_and_change_nothing(bank_simulator, settings):
    before = bank_simulator.current_settings()
    response = requests.post(bank_simulator.root + "/simulator/settings", json=settings, timeout=5)
    assert response.status_code == 400 and response.json()["error"]
    assert bank_simulator.current_settings() == before


MERCHANT = {"userName": "u", "password": "p", "aesKey": "A" * 32, "accountNumber": "1"}


@pytest.mark.parametrize(
    "changes",
    [{"aesKey": "short"}, {"aesKey": None}, {"accountNumber": 1}, {"notifyUrl": 3}],
    ids=["short-key", "no-key", "number-not-text", "url-not-text"],
)
def test_bad_merchant_registrations_are_refused(bank_simulator, changes):
    body = {**MERCHANT, **changes}
    response = requests.post(bank_simulator.root + "/simulator/accounts", json=body, timeout=5)
    assert response.status_code == 400


def test_page_lists_qrs_and_its_pay_button_pays_and_notifies(bank_simulator, notification_receiver):
    receiver = notification_receiver()
    bank = open_bank(bank_simulator.register(notify_url=receiver.url))
    issued = bank.issue(order(description="<b>Entrada</b>"))
    page = requests.get(bank_simulator.root + "/", timeout=5).text
    assert issued.qr_id in page and "Pagar" in page
    assert "&lt;b&gt;Entrada&lt;/b&gt;" in page  # escaped
    image = requests.get(f"{bank_simulator.root}/simulator/qr/{issued.qr_id}/image.png", timeout=5)
    assert image.headers["Content-Type"] == "image/png" and image.content == issued.image_png

    paid = requests.post(f"{bank_simulator.root}/pay/{issued.qr_id}", timeout=5)
    assert paid.status_code == 200 and "pagado" in paid.text  # after the redirect to the page
    assert bank.status(issued.qr_id).status == "paid"
    assert receiver.wait_for(1)[0]["payment"]["qrId"] == issued.qr_id


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "bank.db"
    first = BankSimulator(tmp_path, state=state).start()
    try:
        link = first.register()
        bank = open_bank(link)
        issued = bank.issue(order())
        payment = first.pay(issued.qr_id)
    finally:
        first.stop()
    second = BankSimulator(tmp_path, state=state).start()
    try:
        again = open_bank(replace(link, base_url=second.base_url))  # the merchant is still known
        assert again.status(issued.qr_id).payments == [payment]
        assert again.issue(order("tx-2")).qr_id > issued.qr_id  # numbers never reused
    finally:
        second.stop()
