"""A bank behind every QR, over real HTTP: qrevents (gunicorn) and the simulated bank (its own
process and port), never a mock of the adapter.

Linking, issuing, the PNG, cancelling at the bank first, refusals and hangs of each
operation (502/504, nothing written, nothing announced), notifications signed and not
(a trigger, never a credit), and the ledger invariants after all of it.
"""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.bank_sim import BankSimulator
from tests.conftest import fresh_database_url
from tests.ledger_check import assert_ledger_invariants
from tests.live import ADMIN_KEY, BANK_SECRET, Api, LiveServer, dumps

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bank_pair(backend, tmp_path_factory):
    """A simulator and a server of their own (faults switched here touch no other test);
    the periodic bank round is off (tests run it on demand)."""
    tmp = tmp_path_factory.mktemp(f"bank-{backend}")
    simulator = BankSimulator(tmp, notify_interval=0.2).start()
    server = LiveServer(
        tmp,
        fresh_database_url(backend, tmp),
        bank_sync_seconds=3600,
        bank_read_timeout_seconds=1,
        bank_connect_timeout_seconds=1,
        bank_trigger_limit="1000 per minute",
    ).start()
    yield server, simulator
    server.stop()
    simulator.stop()


@pytest.fixture
def bank(bank_pair):
    server, simulator = bank_pair
    yield Api(server.base, simulator=simulator), simulator
    simulator.clear_faults()


def creds_of(link):
    """The merchant's credentials at the bank, as an operator types them in."""
    return {
        "userName": link.user_name,
        "password": link.password,
        "aesKey": link.aes_key,
        "accountNumber": link.account_number,
    }


def qr_body(**fields):
    body = {"amount": Decimal("25.50"), "currency": "BOB", "description": "Pago de prueba"}
    body.update(fields)
    return body


def post_qr(api, tenant, **fields):
    return api.post("/qr", data=dumps(qr_body(**fields)), headers=tenant.headers)


def qr_count(api, tenant):
    return len(api.get("/qr", headers=tenant.headers).json()["data"]["items"])


# -- linking -------------------------------------------------------------------------------


def test_linking_answers_the_link_and_never_a_secret(bank, bank_pair):
    api, simulator = bank
    tenant = api.new_tenant(bank=False)
    creds = creds_of(simulator.register())
    body = {"adapter": "simulator", "baseUrl": simulator.base_url, **creds}
    first = api.post(f"/admin/accounts/{tenant.account_id}/bank", json=body, headers=ADMIN)
    again = api.post(
        f"/admin/accounts/{tenant.account_id}/bank",
        json={**body, "branchCode": "E0001"},
        headers=ADMIN,
    )
    assert (first.status_code, again.status_code) == (201, 200)
    link = again.json()["data"]
    assert link["accountId"] == tenant.account_id and link["branchCode"] == "E0001"
    assert link["baseUrl"] == simulator.base_url and link["userName"] == creds["userName"]
    for secret in (creds["password"], creds["aesKey"], creds["accountNumber"]):
        assert secret not in first.text and secret not in again.text
    # The linked account issues QRs at the bank, with the secrets opened again.
    assert post_qr(api, tenant).status_code == 201
    simulator.faults(generateQR={"responseCode": 4, "message": "Rechazado"})
    assert post_qr(api, tenant).status_code == 502  # a refusal is logged: still no secret
    server_log = bank_pair[0].log()
    assert "generateQR" in server_log
    for secret in (creds["password"], creds["aesKey"], creds["accountNumber"]):
        assert secret not in server_log


def test_a_bank_refusing_to_authenticate_is_502_and_leaves_nothing(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    simulator.faults(
        tokens={"expire": True}, authenticate={"responseCode": 2, "message": "Usuario bloqueado"}
    )
    with api.stream(tenant) as stream:
        stream.next()
        response = post_qr(api, tenant)
        assert stream.quiet_for(0.3) == []
    assert response.status_code == 502, response.text
    assert "Usuario bloqueado" in response.json()["message"]
    assert qr_count(api, tenant) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("adapter", "bancosol"),
        ("baseUrl", "ftp://bank.example/"),
        ("baseUrl", "no es una url"),
        ("userName", ""),
        ("password", 12345),
        ("aesKey", "short"),
        ("aesKey", "x" * 33),
        ("accountNumber", "12 34"),
        ("branchCode", "TOOLONG"),
    ],
)
def test_linking_refuses_each_bad_field_and_writes_nothing(bank, field, value):
    api, simulator = bank
    tenant = api.new_tenant(bank=False)
    creds = creds_of(simulator.register())
    body = {"adapter": "simulator", "baseUrl": simulator.base_url, **creds, field: value}
    response = api.post(f"/admin/accounts/{tenant.account_id}/bank", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert list(response.json()["error"]["fields"]) == [field]
    refused = post_qr(api, tenant)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "bank_not_linked"


def test_linking_needs_the_admin_key_and_an_account(bank):
    api, simulator = bank
    creds = creds_of(simulator.register())
    body = {"adapter": "baneco", "baseUrl": simulator.base_url, **creds}
    assert api.post("/admin/accounts/999999/bank", json=body, headers=ADMIN).status_code == 404
    tenant = api.new_tenant(bank=False)
    path = f"/admin/accounts/{tenant.account_id}/bank"
    assert api.post(path, json=body, headers=tenant.headers).status_code == 401
    missing = api.post(path, json={}, headers=ADMIN).json()["error"]["fields"]
    assert set(missing) == {"adapter", "baseUrl", "userName", "password", "aesKey", "accountNumber"}


def test_an_account_without_a_bank_cannot_create_qrs(bank):
    api, _ = bank
    tenant = api.new_tenant(bank=False)
    with api.stream(tenant) as stream:
        stream.next()
        response = post_qr(api, tenant)
        assert stream.quiet_for(0.3) == []
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "bank_not_linked"
    assert qr_count(api, tenant) == 0


# -- issuing -------------------------------------------------------------------------------


def test_a_qr_is_the_banks_with_its_png(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    transaction_id = "T" + uuid.uuid4().hex[:12]
    with api.stream(tenant) as stream:
        stream.next()
        response = post_qr(api, tenant, transactionId=transaction_id)
        (created,) = stream.take(1)
    assert response.status_code == 201, response.text
    qr = response.json()["data"]
    at_bank = {q["qrId"]: q for q in simulator.qrs()}[qr["qrId"]]
    assert at_bank["transactionId"] == transaction_id and at_bank["amount"] == Decimal("25.50")
    assert len(qr["qrId"]) == 20 and qr["qrId"].isdigit()
    assert created.event == "qr_created" and created.data["qrId"] == qr["qrId"]
    image = api.get(f"/qr/{qr['qrId']}/image.png", headers=tenant.headers)
    assert image.status_code == 200 and image.content.startswith(PNG_SIGNATURE)
    assert image.headers["Content-Type"] == "image/png"
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    cache = image.headers["Cache-Control"]
    assert "private" in cache and int(cache.split("max-age=")[1].split(",")[0]) >= 86400
    stranger = api.new_tenant()
    assert api.get(f"/qr/{qr['qrId']}/image.png", headers=stranger.headers).status_code == 404
    assert api.get(f"/qr/{qr['qrId']}/image.png").status_code == 401


def test_a_repeated_creation_returns_the_issued_qr_without_asking_the_bank(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    transaction_id = "R" + uuid.uuid4().hex[:12]
    first = post_qr(api, tenant, transactionId=transaction_id)
    asked = simulator.requests().get("generateQR", 0)
    again = post_qr(api, tenant, transactionId=transaction_id)
    other = post_qr(api, tenant, transactionId=transaction_id, amount=Decimal("9.99"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["data"]["qrId"] == first.json()["data"]["qrId"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "transaction_id_reused"
    assert simulator.requests().get("generateQR", 0) == asked
    assert qr_count(api, tenant) == 1


def test_concurrent_identical_creations_record_one_qr(bank):
    api, _ = bank
    tenant = api.new_tenant()
    transaction_id = "C" + uuid.uuid4().hex[:12]
    with api.stream(tenant) as stream:
        stream.next()
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda _: Api(api.base).post(
                        "/qr",
                        data=dumps(qr_body(transactionId=transaction_id)),
                        headers=tenant.headers,
                    ),
                    range(6),
                )
            )
        events = stream.take(1) + stream.quiet_for(0.5)
    assert sorted(a.status_code for a in answers).count(201) == 1, [a.text for a in answers]
    assert all(a.status_code in (200, 201) for a in answers), [
        (a.status_code, a.json()["message"]) for a in answers
    ]
    assert {a.json()["data"]["qrId"] for a in answers} == {events[0].data["qrId"]}
    assert [e.event for e in events] == ["qr_created"]
    assert qr_count(api, tenant) == 1


@pytest.mark.parametrize(
    ("switch", "status", "code"),
    [
        ({"responseCode": 7, "message": "Cuenta inhabilitada"}, 502, "bank_rejected"),
        ({"httpStatus": 500}, 504, "bank_unavailable"),
        ({"latency": 2}, 504, "bank_unavailable"),
    ],
    ids=["refused", "http-error", "hangs"],
)
def test_a_bank_that_refuses_or_hangs_on_issue_leaves_nothing(bank, switch, status, code):
    api, simulator = bank
    tenant = api.new_tenant()
    simulator.faults(generateQR=switch)
    with api.stream(tenant) as stream:
        stream.next()
        response = post_qr(api, tenant)
        assert stream.quiet_for(0.3) == []
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if code == "bank_rejected":
        assert "Cuenta inhabilitada" in response.json()["message"]
    assert qr_count(api, tenant) == 0


def test_while_the_bank_hangs_the_same_accounts_other_requests_answer_at_once(backend, tmp_path):
    """The issue waits 1.5 s at the bank; meanwhile the same account lists its QRs, is paid
    and cancels at once: no connection, no account lock (SQLite: no write lock) is held."""
    simulator = BankSimulator(tmp_path, notify_interval=0.2).start()
    server = LiveServer(
        tmp_path, fresh_database_url(backend, tmp_path), bank_read_timeout_seconds=5
    )
    try:
        server.start()
        api = Api(server.base, simulator=simulator)
        tenant = api.new_tenant()
        paid, cancelled, warm = (api.create_qr(tenant) for _ in range(3))
        api.pay(warm["qrId"], "100.50")  # the client's own first-use costs, paid before timing
        simulator.faults(generateQR={"latency": 1.5})
        slow = {}
        issuing = threading.Thread(target=lambda: slow.update(r=post_qr(Api(api.base), tenant)))
        issuing.start()
        time.sleep(0.3)  # the issue is at the bank now
        timings = {}
        for name, call in (
            ("list", lambda: api.get("/qr", headers=tenant.headers)),
            ("pay", lambda: api.pay(paid["qrId"], "100.50")),
            ("read", lambda: api.get("/accounts/me", headers=tenant.headers)),
        ):
            started = time.monotonic()
            response = call()
            timings[name] = time.monotonic() - started
            assert response.status_code == 200, response.text
        simulator.clear_faults()
        cancel_started = time.monotonic()
        response = api.post(f"/qr/{cancelled['qrId']}/cancel", headers=tenant.headers)
        timings["cancel"] = time.monotonic() - cancel_started
        assert response.status_code == 200, response.text
        issuing.join(10)
        assert slow["r"].status_code == 201
        assert max(timings.values()) < 0.5, timings
        assert_ledger_invariants(server, tenant)
    finally:
        server.stop()
        simulator.stop()


# -- cancelling ----------------------------------------------------------------------------


def test_cancel_happens_at_the_bank_first(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    with api.stream(tenant) as stream:
        stream.next()
        response = api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers)
        (event,) = stream.take(1)
    assert response.status_code == 200 and response.json()["data"]["status"] == "cancelled"
    assert event.data["syncSource"] == "user" and event.data["newStatus"] == "cancelled"
    at_bank = {q["qrId"]: q for q in simulator.qrs()}[qr["qrId"]]
    assert at_bank["statusQrCode"] == 9


def test_a_refused_cancel_is_409_and_records_what_the_bank_says(bank):
    """The QR was paid at the bank (its notification lost): the bank refuses the cancel, and
    the status sync that follows records the payment it lists."""
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    simulator.set_status(qr["qrId"], "paid")  # paid, nobody told
    with api.stream(tenant) as stream:
        stream.next()
        response = api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers)
        events = stream.take(3)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "bank_rejected"
    assert [e.event for e in events] == ["qr_payment", "account_balance_update", "qr_status_change"]
    assert events[2].data["newStatus"] == "used" and events[2].data["syncSource"] == "bank_api"
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"] == "used"


@pytest.mark.parametrize(
    ("switch", "status", "code"),
    [
        ({"responseCode": 5, "message": "No se puede anular"}, 409, "bank_rejected"),
        ({"latency": 2}, 504, "bank_unavailable"),
    ],
    ids=["refused", "hangs"],
)
def test_a_cancel_the_bank_does_not_confirm_changes_nothing(bank, switch, status, code):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant)
    simulator.faults(cancelQR=switch)
    with api.stream(tenant) as stream:
        stream.next()
        response = api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers)
        assert stream.quiet_for(0.3) == []
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"] == "active"


# -- notifications -------------------------------------------------------------------------


def banks_payment(simulator, qr_id):
    """Pay at the bank with its notification dropped: the PaymentQR only the bank knows."""
    simulator.faults(notify={"drop": True})
    try:
        return simulator.pay(qr_id)
    finally:
        simulator.faults(notify={"drop": False})


@pytest.mark.parametrize(
    "path", ["/api/qrsimple/notifyPaymentQR", "/bank/payments", "/hooks/baneco/notifyPayment"]
)
def test_a_notification_with_the_bearer_secret_is_recorded_on_every_path(bank, path):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    payment = banks_payment(simulator, qr["qrId"])
    response = api.post(
        path,
        data=dumps({"payment": payment}),
        headers={"Authorization": f"Bearer {BANK_SECRET}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["responseCode"] == 0 and body["success"] is True
    assert body["data"]["transactionId"] == payment["transactionId"]


def test_paying_at_the_bank_notifies_and_the_stream_shows_it(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    with api.stream(tenant) as stream:
        stream.next()
        simulator.pay(qr["qrId"])
        events = stream.take(3)
    assert [e.event for e in events] == ["qr_payment", "account_balance_update", "qr_status_change"]
    assert events[1].data["newBalance"] == Decimal("25.50")
    assert events[2].data["syncSource"] == "payment"


def test_an_unsigned_notification_is_confirmed_with_the_bank(bank):
    """BANECO's own notification carries no credential: qrevents asks statusQR and records
    the payment the bank lists, with the bank's amount."""
    api, simulator = bank
    tenant = api.new_tenant(notify_bearer=None)
    qr = api.create_qr(tenant, "25.50")
    with api.stream(tenant) as stream:
        stream.next()
        simulator.pay(qr["qrId"])  # the simulator notifies without a credential
        events = stream.take(3)
    assert [e.event for e in events] == ["qr_payment", "account_balance_update", "qr_status_change"]
    assert events[0].data["amount"] == Decimal("25.50")
    attempts = simulator.wait_for_notifications(
        lambda seen: any(a["qrId"] == qr["qrId"] and a.get("delivered") for a in seen)
    )
    assert [a["responseCode"] for a in attempts if a["qrId"] == qr["qrId"]] == [0]


def test_a_forged_notification_credits_nothing(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    forged = {
        "payment": {
            "qrId": qr["qrId"],
            "transactionId": "999" + uuid.uuid4().hex[:8],
            "paymentDate": "2026-11-30T00:00:00",
            "paymentTime": "10:00:00",
            "currency": "BOB",
            "amount": 99999,
            "senderBankCode": "1016",
            "senderName": "NADIE",
            "senderDocumentId": "0",
            "senderAccount": "******0000",
            "description": "falso",
        }
    }
    unknown_qr = {"payment": {**forged["payment"], "qrId": "26113000000099999999"}}
    with api.stream(tenant) as stream:
        stream.next()
        answers = [
            api.post("/api/qrsimple/notifyPaymentQR", data=dumps(body), headers=JSON)
            for body in (forged, unknown_qr)
        ]
        assert stream.quiet_for(0.4) == []
    for response in answers:
        assert response.status_code == 409, response.text
        assert response.json()["responseCode"] == 1
        assert response.json()["error"]["code"] == "payment_not_confirmed"
    assert answers[0].json()["message"] == answers[1].json()["message"]
    me = api.get("/accounts/me", headers=tenant.headers).json()["data"]
    assert me["balance"] == 0 and qr_status(api, tenant, qr) == "active"


JSON = {"Content-Type": "application/json"}


def qr_status(api, tenant, qr):
    return api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"]


def test_an_unsigned_notification_of_a_real_payment_records_the_banks_amount(bank):
    """A notification naming a real payment but a larger amount: the bank's amount wins."""
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    payment = banks_payment(simulator, qr["qrId"])
    inflated = {"payment": {**payment, "amount": 2550}}
    response = api.post("/api/qrsimple/notifyPaymentQR", data=dumps(inflated), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["responseCode"] == 0
    assert response.json()["data"]["amount"] == Decimal("25.50")
    again = api.post("/api/qrsimple/notifyPaymentQR", data=dumps(inflated), headers=JSON)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    me = api.get("/accounts/me", headers=tenant.headers).json()["data"]
    assert me["balance"] == Decimal("25.50")


@pytest.mark.parametrize(
    ("switch", "status", "code"),
    [
        ({"responseCode": 3, "message": "Servicio en mantenimiento"}, 502, "bank_rejected"),
        ({"latency": 2}, 504, "bank_unavailable"),
    ],
    ids=["refused", "hangs"],
)
def test_an_unsigned_notification_the_bank_cannot_confirm_records_nothing(
    bank, switch, status, code
):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    payment = banks_payment(simulator, qr["qrId"])
    simulator.faults(statusQR=switch)
    with api.stream(tenant) as stream:
        stream.next()
        response = api.post(
            "/api/qrsimple/notifyPaymentQR", data=dumps({"payment": payment}), headers=JSON
        )
        assert stream.quiet_for(0.3) == []
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["responseCode"] == 1
    assert api.get("/payments", headers=tenant.headers).json()["data"]["items"] == []


def test_a_wrong_bearer_secret_is_401_and_never_a_trigger(bank):
    api, simulator = bank
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "25.50")
    payment = banks_payment(simulator, qr["qrId"])
    asked = simulator.requests().get("statusQR", 0)
    response = api.post(
        "/api/qrsimple/notifyPaymentQR",
        data=dumps({"payment": payment}),
        headers={"Authorization": "Bearer not-the-secret", **JSON},
    )
    assert response.status_code == 401 and response.json()["responseCode"] == 1
    assert simulator.requests().get("statusQR", 0) == asked


def test_unsigned_notifications_are_rate_limited_per_address(backend, tmp_path):
    simulator = BankSimulator(tmp_path).start()
    server = LiveServer(
        tmp_path, fresh_database_url(backend, tmp_path), bank_trigger_limit="2 per minute"
    )
    try:
        server.start()
        api = Api(server.base, simulator=simulator)
        tenant = api.new_tenant()
        qr = api.create_qr(tenant)
        body = dumps({"payment": {"qrId": qr["qrId"], "transactionId": "1"}})
        codes = [
            api.post("/api/qrsimple/notifyPaymentQR", data=body, headers=JSON) for _ in range(3)
        ]
        assert [c.status_code for c in codes] == [409, 409, 429]
        assert codes[2].json()["responseCode"] == 1 and "Retry-After" in codes[2].headers
        signed = api.pay(qr["qrId"], "100.50")  # the bank's signed word is never limited
        assert signed.status_code == 200
    finally:
        server.stop()
        simulator.stop()


@pytest.mark.parametrize("switch", ["twice", "outOfOrder"])
def test_duplicated_and_out_of_order_notifications_record_each_payment_once(bank, switch):
    api, simulator = bank
    tenant = api.new_tenant(notify_bearer=None)
    first, second = api.create_qr(tenant, "10.00"), api.create_qr(tenant, "20.00")
    with api.stream(tenant) as stream:
        stream.next()
        simulator.faults(notify={switch: True})
        simulator.pay(first["qrId"])
        simulator.pay(second["qrId"])
        events = stream.take(6, timeout=10)
        assert stream.quiet_for(0.6) == []
    payments = [e.data["qrId"] for e in events if e.event == "qr_payment"]
    assert sorted(payments) == sorted([first["qrId"], second["qrId"]])
    me = api.get("/accounts/me", headers=tenant.headers).json()["data"]
    assert me["balance"] == Decimal("30.00")


def test_a_link_sealed_under_another_secret_key_is_a_clear_error(backend, tmp_path):
    """QREVENTS_SECRET_KEY changed: the stored secrets cannot be opened. The answer says to
    link again (nothing issued, no secret in the log); linking again works."""
    database_url = fresh_database_url(backend, tmp_path)
    first = LiveServer(tmp_path / "a", database_url).start()
    api = Api(first.base)
    tenant = api.new_tenant()
    first.stop()
    second = LiveServer(tmp_path / "b", database_url, secret_key="another-secret-key").start()
    try:
        api = Api(second.base)
        refused = post_qr(api, tenant)
        assert refused.status_code == 500
        assert refused.json()["error"]["code"] == "bank_link_unreadable"
        assert "vuelva a vincular" in refused.json()["message"]
        assert "QREVENTS_SECRET_KEY" in second.log()
        assert tenant.bank["password"] not in second.log()
        assert qr_count(api, tenant) == 0
        api.link_bank(tenant.account_id)
        assert post_qr(api, tenant).status_code == 201
    finally:
        second.stop()
