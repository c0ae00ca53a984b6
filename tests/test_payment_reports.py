"""What a merchant reads back of its payments (docs/CONTRACT.md, payments): GET /payments
filtered by date, amount and payer, the GET /payments.csv export checked row by row against
the database, and GET /payments/summary's per-hour and per-day totals; every bad query
parameter a 422 naming it."""

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests.ledger_check import _rows
from tests.live import Api

LA_PAZ = timedelta(hours=-4)


def la_paz_today():
    return (datetime.now(UTC) + LA_PAZ).date()


def at(day, clock):
    """The bank's paymentDate (UTC, ISO) of a La Paz day and time ``HH:MM``."""
    hours, minutes = map(int, clock.split(":"))
    local = datetime(day.year, day.month, day.day, hours, minutes)
    return (local - LA_PAZ).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def shop(server):
    """A merchant with payments on three days, of several amounts and payers."""
    api = Api(server.base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "10.00", singleUse=False, modifyAmount=True)
    day = la_paz_today() - timedelta(days=1)
    earlier = day - timedelta(days=2)
    plan = [
        (day, "08:15", "10.00", "Juan Pérez"),
        (day, "08:45", "42.75", "María Quispe"),
        (day, "13:05", "100.50", "juan mamani"),
        (day, "23:59", "7.25", "Ana 100% Real"),
        (earlier, "09:00", "55.00", "Juan Pérez"),
    ]
    paid = []
    for when, clock, amount, payer in plan:
        response = api.pay(
            qr["qrId"],
            amount,
            paymentDate=at(when, clock),
            senderName=payer,
            description=f"Venta {clock}",
        )
        assert response.status_code == 200, response.text
        paid.append(response.json()["data"]["transactionId"])
    # another merchant's payment on the same day is never counted
    stranger = api.new_tenant()
    other_qr = api.create_qr(stranger, "10.00")
    assert api.pay(other_qr["qrId"], "10.00", paymentDate=at(day, "08:20")).status_code == 200
    return api, tenant, day, earlier, dict(zip(paid, plan, strict=True))


def listed(shop, **params):
    api, tenant, *_ = shop
    response = api.get("/payments", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [item["senderName"] for item in response.json()["data"]["items"]]


def test_payments_filter_by_la_paz_days(shop):
    _, _, day, earlier, _ = shop
    assert listed(shop, **{"from": day.isoformat(), "to": day.isoformat()}) == [
        "Ana 100% Real",
        "juan mamani",
        "María Quispe",
        "Juan Pérez",
    ]
    assert listed(shop, to=earlier.isoformat()) == ["Juan Pérez"]
    assert len(listed(shop, **{"from": earlier.isoformat()})) == 5
    assert listed(shop, **{"from": la_paz_today().isoformat()}) == []


def test_payments_filter_by_amount_bounds_inclusive(shop):
    assert listed(shop, minAmount="42.75", maxAmount="100.5") == [
        "Juan Pérez",
        "juan mamani",
        "María Quispe",
    ]
    assert listed(shop, maxAmount="10") == ["Ana 100% Real", "Juan Pérez"]
    assert listed(shop, minAmount="55") == ["Juan Pérez", "juan mamani"]


def test_payments_filter_by_payer_ignoring_case_and_wildcards(shop):
    assert listed(shop, payer="JUAN") == ["Juan Pérez", "juan mamani", "Juan Pérez"]
    assert listed(shop, payer="100%") == ["Ana 100% Real"]
    assert listed(shop, payer="%") == ["Ana 100% Real"]
    assert listed(shop, payer="_") == []
    assert listed(shop, payer="juan", maxAmount="20") == ["Juan Pérez"]


BAD_QUERIES = [
    ({"from": "15/01/2026"}, "from"),
    ({"from": "2026-13-01"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"from": "2026-02-02", "to": "2026-02-01"}, "to"),
    ({"minAmount": "abc"}, "minAmount"),
    ({"minAmount": "1.234"}, "minAmount"),
    ({"maxAmount": "42,75"}, "maxAmount"),
    ({"maxAmount": "-1"}, "maxAmount"),
    ({"maxAmount": "100000000"}, "maxAmount"),
    ({"minAmount": "50", "maxAmount": "10"}, "maxAmount"),
    ({"payer": " "}, "payer"),
    ({"payer": "x" * 121}, "payer"),
    ({"payer": "a\nb"}, "payer"),
]


@pytest.mark.parametrize("path", ["/payments", "/payments.csv"])
@pytest.mark.parametrize(("params", "field"), BAD_QUERIES, ids=lambda v: str(v))
def test_bad_payment_queries_are_422_naming_the_parameter(shop, path, params, field):
    api, tenant, *_ = shop
    response = api.get(path, params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "validation_failed"
    assert list(body["error"]["fields"]) == [field]


def test_every_bad_parameter_is_named_at_once(shop):
    api, tenant, *_ = shop
    params = {"from": "x", "minAmount": "y", "payer": ""}
    response = api.get("/payments", params=params, headers=tenant.headers)
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"from", "minAmount", "payer"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "month"}, "period"),
        ({"date": "30/11/2026"}, "date"),
        ({"currency": "EUR"}, "currency"),
    ],
)
def test_bad_summary_queries_are_422_naming_the_parameter(shop, params, field):
    api, tenant, *_ = shop
    response = api.get("/payments/summary", params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert list(response.json()["error"]["fields"]) == [field]


@pytest.mark.parametrize("path", ["/payments.csv", "/payments/summary"])
def test_reports_need_credentials(shop, path):
    api, *_ = shop
    response = api.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_credentials"


def test_csv_export_matches_the_ledger_row_by_row(shop, server):
    api, tenant, day, earlier, paid = shop
    params = {"from": earlier.isoformat(), "to": day.isoformat()}
    response = api.get("/payments.csv", params=params, headers=tenant.headers, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "Content-Length" not in response.headers  # streamed
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="pagos-{earlier.isoformat()}-{day.isoformat()}.csv"'
    )
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    header, *lines = rows
    assert header == [
        "transactionId",
        "qrId",
        "description",
        "amount",
        "currency",
        "senderName",
        "senderDocumentId",
        "senderAccount",
        "senderBankCode",
        "paymentDate",
        "createdAt",
        "review",
        "reviewReason",
        "releasedAt",
    ]
    ledger = _rows(
        server,
        "SELECT p.transaction_id, q.qr_id, p.description, p.amount_cents, p.currency,"
        " p.sender_name, p.sender_document_id, p.sender_account, p.sender_bank_code,"
        " p.payment_date, p.created_at, p.review, p.review_reason, p.released_at"
        " FROM payment p JOIN qr q ON q.id = p.qr_id WHERE p.account_id = %s ORDER BY p.id",
        (tenant.account_id,),
    )
    assert len(lines) == len(ledger) == len(paid) == 5
    for line, row in zip(lines, ledger, strict=True):
        record = dict(zip(header, line, strict=True))
        assert record["transactionId"] == row[0] and record["qrId"] == row[1]
        assert record["description"] == row[2]
        assert Decimal(record["amount"]) * 100 == row[3] and "," not in record["amount"]
        assert record["currency"] == row[4] == "BOB"
        assert (record["senderName"], record["senderDocumentId"]) == (row[5], row[6])
        assert (record["senderAccount"], record["senderBankCode"]) == (row[7], row[8])
        assert record["paymentDate"] == iso_of(row[9]) and record["createdAt"] == iso_of(row[10])
        assert record["review"] == ("true" if row[11] else "false")
        assert record["reviewReason"] == (row[12] or "") and record["releasedAt"] == ""
        # and it is the payment the bank was told to make
        when, clock, amount, payer = paid[record["transactionId"]]
        assert (record["paymentDate"], record["amount"], record["senderName"]) == (
            at(when, clock),
            amount,
            payer,
        )


def iso_of(value):
    """The API's ISO form of a database datetime (SQLite gives text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def test_csv_export_filters_like_the_list_and_defuses_formulas(shop, server):
    api, tenant, *_ = shop
    qr = api.create_qr(tenant, "5.00", singleUse=False, modifyAmount=True)
    day = la_paz_today() - timedelta(days=30)
    sneaky = '=HYPERLINK("http://x")'
    assert api.pay(qr["qrId"], "5.00", paymentDate=at(day, "10:00"), senderName=sneaky).ok
    params = {"from": day.isoformat(), "to": day.isoformat()}
    text = api.get("/payments.csv", params=params, headers=tenant.headers).content.decode()
    header, line = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert dict(zip(header, line, strict=True))["senderName"] == "'" + sneaky
    # the list says what the bank sent, unchanged
    assert listed(shop, **params) == [sneaky]


def test_day_summary_totals_each_la_paz_hour(shop):
    api, tenant, day, _, _ = shop
    response = api.get(
        "/payments/summary",
        params={"period": "day", "date": day.isoformat()},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["period"], data["from"], data["to"]) == ("day", day.isoformat(), day.isoformat())
    assert data["timeZone"] == "America/La_Paz" and data["currency"] == "BOB"
    assert data["count"] == 4 and Decimal(str(data["total"])) == Decimal("160.50")
    assert Decimal(str(data["average"])) == Decimal("40.13")  # 160.50 / 4, rounded
    buckets = data["buckets"]
    assert len(buckets) == 24
    assert buckets[8]["start"] == f"{day.isoformat()}T08:00:00-04:00"
    by_hour = {
        i: (b["count"], Decimal(str(b["total"]))) for i, b in enumerate(buckets) if b["count"]
    }
    assert by_hour == {
        8: (2, Decimal("52.75")),
        13: (1, Decimal("100.50")),
        23: (1, Decimal("7.25")),
    }


def test_week_summary_totals_each_of_seven_days(shop):
    api, tenant, day, earlier, _ = shop
    response = api.get(
        "/payments/summary",
        params={"period": "week", "date": day.isoformat()},
        headers=tenant.headers,
    )
    data = response.json()["data"]
    assert data["from"] == (day - timedelta(days=6)).isoformat()
    assert data["count"] == 5 and Decimal(str(data["total"])) == Decimal("215.50")
    days = {b["start"][:10]: b["count"] for b in data["buckets"]}
    assert len(days) == 7 and list(days)[-1] == day.isoformat()
    assert days[earlier.isoformat()] == 1 and days[day.isoformat()] == 4
    assert sum(days.values()) == 5


def test_summary_defaults_to_today_and_counts_a_payment_made_now(shop):
    api, tenant, *_ = shop
    before = api.get("/payments/summary", headers=tenant.headers).json()["data"]
    assert before["to"] == la_paz_today().isoformat() and before["count"] == 0
    assert before["average"] is None
    qr = api.create_qr(tenant, "12.34")
    now = datetime.now(UTC)
    paid = api.pay(qr["qrId"], "12.34", paymentDate=now.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    assert paid.status_code == 200
    after = api.get("/payments/summary", headers=tenant.headers).json()["data"]
    hour = (now + LA_PAZ).hour
    assert after["count"] == 1 and after["buckets"][hour]["count"] == 1
    assert Decimal(str(after["total"])) == Decimal("12.34")


def test_summary_of_an_empty_day_is_zeros(shop):
    api, tenant, *_ = shop
    params = {"period": "day", "date": date(2020, 1, 1).isoformat()}
    data = api.get("/payments/summary", params=params, headers=tenant.headers).json()["data"]
    assert data["count"] == 0 and Decimal(str(data["total"])) == 0
    assert all(b["count"] == 0 for b in data["buckets"])


def test_the_export_reads_batch_by_batch_oldest_first(app, monkeypatch):
    from models import database
    from qrevents.services import payment_reports
    from qrevents.services.accounts import create_account
    from qrevents.services.payments import PaymentNotice, post_payment
    from tests.conftest import create_test_qr

    account = create_account("A", "BOB")
    made = []
    for index in range(5):
        qr = create_test_qr(account.id)
        notice = PaymentNotice(
            qr_id=qr.qr_id,
            transaction_id=f"BATCH{index}",
            amount_cents=1000,
            currency="BOB",
            sender_name="Ana",
            sender_document_id="1",
            sender_account="2",
            sender_bank_code="BANECO",
            description="",
            payment_date=datetime(2026, 1, 15, 12, index),
            payment_time="08:00:00",
        )
        made.append(post_payment(notice)[0].transaction_id)
    monkeypatch.setattr(payment_reports, "EXPORT_BATCH", 2)

    def download():
        """As the streamed response does, after the request's connection is closed (another
        thread here: Peewee's connection state is per thread)."""
        sizes, ids = [], []
        for batch in payment_reports.export_batches(account.id, payment_reports.PaymentFilter()):
            assert database.is_closed()  # no connection held while a batch is written out
            sizes.append(len(batch))
            ids += [payment.transaction_id for payment in batch]
        return sizes, ids

    with ThreadPoolExecutor(1) as pool:
        sizes, ids = pool.submit(download).result()
    assert sizes == [2, 2, 1] and ids == made
