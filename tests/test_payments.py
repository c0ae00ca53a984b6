"""Bank payments: idempotent, always recorded, held for review when anomalous, then released."""

from decimal import Decimal

import pytest

from tests.live import payment_body


def account(api, tenant):
    return api.get("/accounts/me", headers=tenant.headers).json(parse_float=Decimal)["data"]


def test_duplicate_notification_credits_once_and_announces_nothing(api, tenant):
    qr = api.create_qr(tenant, "50.00")
    body = payment_body(qr["qrId"], "50.00", "TXN_DUP_1")
    with api.stream(tenant) as stream:
        stream.next()
        first = api.bank("/bank/payments", body)
        stream.take(3)
        retries = [api.bank("/bank/payments", body) for _ in range(3)]
        assert stream.quiet_for(0.4) == []
    assert first.status_code == 200 and first.json()["duplicate"] is False
    for retry in retries:
        assert retry.status_code == 200
        assert retry.json()["duplicate"] is True and retry.json()["responseCode"] == 0
    assert account(api, tenant)["balance"] == Decimal("50.00")


def test_same_transaction_id_with_other_data_is_a_conflict(api, tenant):
    qr = api.create_qr(tenant, "50.00", modifyAmount=True)
    assert api.pay(qr["qrId"], "50.00", "TXN_CONFLICT").status_code == 200
    conflict = api.pay(qr["qrId"], "60.00", "TXN_CONFLICT")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "transaction_id_reused"
    assert account(api, tenant)["balance"] == Decimal("50.00")


def test_baneco_wrapped_body_with_static_secret_on_its_own_path(api, tenant):
    from tests.live import BANK_SECRET, dumps

    qr = api.create_qr(tenant, "20.00")
    body = {
        "payment": payment_body(
            qr["qrId"], "20.00", paymentDate="2026-01-15", paymentTime="10:30:00"
        )
    }
    response = api.post(
        "/hooks/baneco/notifyPayment",
        data=dumps(body),
        headers={"Authorization": f"Bearer {BANK_SECRET}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["responseCode"] == 0
    payment = response.json()["data"]
    # A bare date with its time beside it is La Paz time (UTC-4).
    assert payment["paymentDate"] == "2026-01-15T14:30:00.000Z"
    assert payment["paymentTime"] == "10:30:00"
    assert account(api, tenant)["availableBalance"] == Decimal("20.00")


@pytest.mark.parametrize(
    "payment_date, payment_time, moment, time_of_day",
    [
        ("20240101", "10:30:00", "2024-01-01T14:30:00.000Z", "10:30:00"),
        ("20240101", None, "2024-01-01T04:00:00.000Z", "00:00:00"),
        ("2024-01-01", "10:30:00", "2024-01-01T14:30:00.000Z", "10:30:00"),
        ("2024-01-01", None, "2024-01-01T04:00:00.000Z", "00:00:00"),
        ("2021-06-14T00:00:00", "17:06:29", "2021-06-14T21:06:29.000Z", "17:06:29"),
        ("2021-06-14T00:00:00.000", "17:06:29", "2021-06-14T21:06:29.000Z", "17:06:29"),
        ("2021-06-14T00:00:00", None, "2021-06-14T04:00:00.000Z", "00:00:00"),
        ("2021-06-14T17:06:29", None, "2021-06-14T21:06:29.000Z", "17:06:29"),
        ("2021-06-14T17:06:29-04:00", None, "2021-06-14T21:06:29.000Z", "17:06:29"),
        ("2021-06-14T21:06:29.000Z", None, "2021-06-14T21:06:29.000Z", "21:06:29"),
        ("2021-06-14T21:06:29Z", "17:06:29", "2021-06-14T21:06:29.000Z", "17:06:29"),
        ("2021-06-14T00:00:00Z", "17:06:29", "2021-06-14T17:06:29.000Z", "17:06:29"),
    ],
    ids=["yyyyMMdd-with-time", "yyyyMMdd-alone", "yyyy-MM-dd-with-time", "yyyy-MM-dd-alone",
         "baneco-midnight-with-time", "baneco-midnight-ms-with-time", "midnight-alone",
         "naive-date-time", "la-paz-offset", "utc", "utc-keeps-its-time",
         "utc-midnight-with-time"],
)  # fmt: skip
def test_bank_dates_without_an_offset_are_la_paz_time(api, tenant, payment_date, payment_time,
                                                      moment, time_of_day):  # fmt: skip
    qr = api.create_qr(tenant, "20.00", singleUse=False)
    fields = {"paymentDate": payment_date}
    if payment_time is not None:
        fields["paymentTime"] = payment_time
    response = api.bank("/bank/payments", {"payment": payment_body(qr["qrId"], "20.00", **fields)})
    assert response.status_code == 200, response.text
    payment = response.json()["data"]
    assert (payment["paymentDate"], payment["paymentTime"]) == (moment, time_of_day)


@pytest.mark.parametrize(
    "setup, reason",
    [
        ("amount_mismatch", "amount_mismatch"),
        ("cancelled", "qr_cancelled"),
        ("used", "qr_used"),
        ("late", "past_due_date"),
    ],
)
def test_anomalous_payment_is_recorded_but_held_for_review(api, tenant, setup, reason):
    qr = api.create_qr(tenant, "30.00")
    expected_balance = Decimal("0")
    fields = {}
    if setup == "cancelled":
        assert api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers).status_code == 200
    if setup == "used":
        assert api.pay(qr["qrId"], "30.00").status_code == 200
        expected_balance = Decimal("30.00")
    if setup == "late":
        fields["paymentDate"] = "2099-01-01T00:00:00Z"
    amount = "31.00" if setup == "amount_mismatch" else "30.00"
    with api.stream(tenant) as stream:
        stream.next()
        response = api.pay(qr["qrId"], amount, **fields)
        payment_event, balance_event = stream.take(2)
        assert stream.quiet_for(0.3) == []  # no status change for a held payment
    assert response.status_code == 200
    assert response.json()["data"]["review"] is True
    assert payment_event.data["review"] is True and payment_event.data["reviewReason"] == reason
    assert balance_event.data["movementType"] == "qr_payment_held"
    me = account(api, tenant)
    assert me["balance"] == expected_balance + Decimal(amount)
    assert me["availableBalance"] == expected_balance


def test_releasing_a_held_payment_makes_its_money_available_once(api, tenant):
    qr = api.create_qr(tenant, "30.00")
    api.pay(qr["qrId"], "35.00", "TXN_HELD")
    with api.stream(tenant) as stream:
        stream.next()
        released = api.post("/payments/TXN_HELD/release", headers=tenant.headers)
        (event,) = stream.take(1)
        again = api.post("/payments/TXN_HELD/release", headers=tenant.headers)
        assert stream.quiet_for(0.3) == []
    assert released.status_code == 200
    assert event.data["movementType"] == "review_release"
    assert event.data["previousBalance"] == event.data["newBalance"] == Decimal("35.00")
    assert event.data["previousAvailableBalance"] == 0
    assert event.data["newAvailableBalance"] == Decimal("35.00")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_released"
    me = account(api, tenant)
    assert me["balance"] == me["availableBalance"] == Decimal("35.00")


def test_only_held_payments_of_ones_own_account_can_be_released(api, tenant):
    qr = api.create_qr(tenant, "30.00")
    api.pay(qr["qrId"], "30.00", "TXN_NORMAL")
    normal = api.post("/payments/TXN_NORMAL/release", headers=tenant.headers)
    assert normal.status_code == 409 and normal.json()["error"]["code"] == "not_held"
    other = api.new_tenant()
    other_qr = api.create_qr(other, "30.00")
    api.pay(other_qr["qrId"], "31.00", "TXN_OTHERS")
    assert api.post("/payments/TXN_OTHERS/release", headers=tenant.headers).status_code == 404


def test_modify_amount_qr_accepts_any_amount_and_multi_use_qr_stays_active(api, tenant):
    qr = api.create_qr(tenant, "10.00", modifyAmount=True, singleUse=False)
    with api.stream(tenant) as stream:
        stream.next()
        assert api.pay(qr["qrId"], "12.34").status_code == 200
        assert api.pay(qr["qrId"], "0.66").status_code == 200
        events = stream.take(4)
        assert stream.quiet_for(0.3) == []
    assert [e.event for e in events] == ["qr_payment", "account_balance_update"] * 2
    assert all(e.data.get("review", False) is False for e in events)
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"] == "active"
    assert account(api, tenant)["availableBalance"] == Decimal("13.00")


def test_payments_and_movements_are_listed_newest_first_with_cursors(api, tenant):
    qr = api.create_qr(tenant, "1.00", singleUse=False)
    for n in range(5):
        api.pay(qr["qrId"], "1.00", f"TXN_LIST_{n}")
    page = api.get("/payments", params={"limit": 2}, headers=tenant.headers).json()["data"]
    assert [p["transactionId"] for p in page["items"]] == ["TXN_LIST_4", "TXN_LIST_3"]
    rest = api.get(
        "/payments", params={"limit": 10, "cursor": page["nextCursor"]}, headers=tenant.headers
    ).json()["data"]
    assert [p["transactionId"] for p in rest["items"]] == ["TXN_LIST_2", "TXN_LIST_1", "TXN_LIST_0"]
    assert rest["nextCursor"] is None
    movements = api.get("/accounts/me/movements", params={"limit": 3}, headers=tenant.headers)
    data = movements.json(parse_float=Decimal)["data"]
    assert [m["seq"] for m in data["items"]] == [5, 4, 3]
    assert data["items"][0]["balance"] == Decimal("5.00")
