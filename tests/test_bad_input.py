"""Every route's bad input: a clear 4xx in the envelope, nothing written, nothing announced.

One tenant watches its stream for the whole module. Each case snapshots the tenant's REST
view and the row count of every table, sends one bad request, checks the refusal, checks
that nothing changed and that the server logged no traceback or 5xx, then creates a marker
QR: the next durable event on the stream must be that marker's ``qr_created``, so the bad
request announced nothing.
"""

import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest

from models.db import open_database
from tests.live import ADMIN_KEY, BANK_SECRET, Api, dumps, payment_body

# Rows of the watched account; accounts and users only come from the admin routes.
ACCOUNT_TABLES = ("api_key", "stream_ticket", "qr", "payment", "movement", "event")
SERVER_ERROR = re.compile(r'" 5\d\d |"status": 5\d\d')
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def table_counts(server, account_id):
    """Rows per table, read straight from the server's database: every account and user, and
    the account's own rows elsewhere (other accounts' QRs may expire meanwhile)."""
    db = open_database(server.env["QREVENTS_DATABASE_URL"])
    db.connect()
    try:
        counts = {t: db.execute_sql(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
                  for t in ("account", "user")}  # fmt: skip
        for table in ACCOUNT_TABLES:
            query = f'SELECT COUNT(*) FROM "{table}" WHERE account_id = {db.param}'
            counts[table] = db.execute_sql(query, (account_id,)).fetchone()[0]
        return counts
    finally:
        db.close()


@dataclass
class Watch:
    """A tenant with an open stream, and the fixtures the bad requests aim at."""

    server: object
    api: Api
    tenant: object
    other: object
    stream: object
    qr: dict  # active, 10.00 BOB, fixed amount, merchant transactionId MERCHANT-1
    cancelled_qr: dict
    other_qr: dict  # another account's
    paid_txn: str  # a normal payment (not held)
    released_txn: str  # a held payment, released
    other_txn: str  # another account's held payment

    @property
    def headers(self):
        return self.tenant.headers

    @property
    def user_headers(self):
        """The user's JWT: managing API keys needs one."""
        return {"Authorization": f"Bearer {self.tenant.jwt}"}

    def snapshot(self):
        """What the tenant can see over REST, and what the database holds."""
        views = {}
        for path in ("/accounts/me", "/accounts/me/movements", "/qr", "/payments", "/api-keys"):
            response = self.api.get(path, headers=self.headers)
            assert response.status_code == 200, response.text
            views[path] = response.json()["data"]
        return views, table_counts(self.server, self.tenant.account_id)

    def assert_quiet_since(self, before, log_offset):
        """Nothing written, no 5xx or traceback logged, and nothing announced on the stream."""
        assert self.snapshot() == before
        log = self.server.log()[log_offset:]
        assert "Traceback" not in log, log
        assert not SERVER_ERROR.search(log), log
        marker = self.api.create_qr(self.tenant, "1.00", description="marker")
        seen = []
        while True:
            event = self.stream.take(1, timeout=5)[0]
            seen.append(event)
            if event.event == "qr_created" and event.data["qrId"] == marker["qrId"]:
                break
        assert [e.event for e in seen] == ["qr_created"], f"announced before the marker: {seen}"


@pytest.fixture(scope="module")
def watch(server):
    api = Api(server.base)
    tenant, other = api.new_tenant(), api.new_tenant()
    qr = api.create_qr(tenant, "10.00", transactionId="MERCHANT-1", singleUse=False)
    cancelled = api.create_qr(tenant, "10.00")
    assert api.post(f"/qr/{cancelled['qrId']}/cancel", headers=tenant.headers).ok
    paid = api.pay(qr["qrId"], "10.00")
    assert paid.status_code == 200, paid.text
    held = api.pay(qr["qrId"], "11.00")  # another amount than the QR's: held for review
    assert held.json()["data"]["review"] is True, held.text
    released_txn = held.json()["data"]["transactionId"]
    release = api.post(f"/payments/{released_txn}/release", headers=tenant.headers)
    assert release.status_code == 200, release.text
    other_qr = api.create_qr(other, "5.00")
    other_held = api.pay(other_qr["qrId"], "6.00")
    assert other_held.json()["data"]["review"] is True, other_held.text
    with api.stream(tenant) as stream:
        assert stream.next().event == "connection"
        yield Watch(
            server=server,
            api=api,
            tenant=tenant,
            other=other,
            stream=stream,
            qr=qr,
            cancelled_qr=cancelled,
            other_qr=other_qr,
            paid_txn=paid.json()["data"]["transactionId"],
            released_txn=released_txn,
            other_txn=other_held.json()["data"]["transactionId"],
        )


# ---- how the bad requests are sent ------------------------------------------------------


def qr_body(**changes):
    body = {"amount": Decimal("12.34"), "currency": "BOB", "description": "Pago de servicios"}
    body.update(changes)
    return body


def raw(value):
    """A body given as JSON text (so it can hold what ``json.dumps`` would not write)."""
    return value if isinstance(value, str) else dumps(value)


def post_qr(body):
    return lambda w: w.api.post("/qr", data=raw(body), headers=w.headers)


def pay(path="/bank/payments", **changes):
    """A signed payment to the watched QR with some fields changed (``None`` removes one)."""

    def send(w):
        body = payment_body(w.qr["qrId"], "10.00")
        for name, value in changes.items():
            if value is None:
                body.pop(name)
            else:
                body[name] = value
        return w.api.bank(path, body)

    return send


def pay_raw(text, path="/bank/payments"):
    return lambda w: w.api.bank(path, text.encode())


def pay_signed(*, timestamp=None, header=None, authorization=None, body_for_signature=None):
    """A valid payment body sent with a chosen bank credential."""

    def send(w):
        raw_body = dumps(payment_body(w.qr["qrId"], "10.00")).encode()
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["X-Bank-Signature"] = header()
        if timestamp is not None or body_for_signature is not None:
            from qrevents import bank_signature

            signed = body_for_signature or raw_body
            stamp = time.time() + (timestamp or 0)
            headers["X-Bank-Signature"] = bank_signature.sign(BANK_SECRET, signed, stamp)
        if authorization is not None:
            headers["Authorization"] = authorization
        return w.api.post("/bank/payments", data=raw_body, headers=headers)

    return send


def qr_status(body, sign=True):
    def send(w):
        return w.api.bank("/bank/qr-status", body(w) if callable(body) else body, sign=sign)

    return send


def get(path, **kw):
    return lambda w: w.api.get(path.format(w=w), headers=w.headers, **kw)


def post(path, body=None, headers=None):
    def send(w):
        data = None if body is None else raw(body(w) if callable(body) else body)
        return w.api.post(path.format(w=w), data=data, headers=headers or w.headers)

    return send


def post_as_user(path, body):
    return lambda w: w.api.post(path, data=raw(body), headers=w.user_headers)


def delete_as_user(path):
    return lambda w: w.api.delete(path.format(w=w), headers=w.user_headers)


def admin(path, body, headers=ADMIN):
    def send(w):
        value = body(w) if callable(body) else body
        return w.api.post(path.format(w=w), data=raw(value), headers=headers)

    return send


def new_email():
    return f"n{uuid.uuid4().hex[:10]}@example.com"


BIG = "x" * (64 * 1024 + 1)


def chunked(text, size=4096):
    """A body sent with ``Transfer-Encoding: chunked`` (no Content-Length to refuse up front)."""
    data = text.encode()
    return (data[i : i + size] for i in range(0, len(data), size))


def over_the_cap_as_valid_json():
    """Valid JSON whose first 64 KiB alone would parse too: a cut body must not pass as whole."""
    return dumps(qr_body(description="x")) + " " * (64 * 1024)


# (send, status, code, field)
CASES = [
    # ---- POST /qr: the body
    pytest.param(post_qr("{bad"), 400, "invalid_json", None, id="qr-malformed-json"),
    pytest.param(post_qr("[1, 2]"), 400, "invalid_json", None, id="qr-array-body"),
    pytest.param(post_qr('"a string"'), 400, "invalid_json", None, id="qr-string-body"),
    pytest.param(post_qr(""), 400, "invalid_json", None, id="qr-empty-body"),
    pytest.param(post_qr("{}"), 422, "validation_failed", "amount", id="qr-empty-object"),
    pytest.param(post_qr(qr_body(amount=None)), 422, "validation_failed", "amount",
                 id="qr-amount-null"),
    pytest.param(post_qr(qr_body(amount="12.34")), 422, "validation_failed", "amount",
                 id="qr-amount-as-string"),
    pytest.param(post_qr(qr_body(amount=True)), 422, "validation_failed", "amount",
                 id="qr-amount-as-boolean"),
    pytest.param(post_qr(qr_body(amount=0)), 422, "validation_failed", "amount", id="qr-amount-0"),
    pytest.param(post_qr(qr_body(amount=-5)), 422, "validation_failed", "amount",
                 id="qr-amount-negative"),
    pytest.param(post_qr('{"amount": 1.005, "currency": "BOB", "description": "x"}'), 422,
                 "validation_failed", "amount", id="qr-amount-3-decimals"),
    pytest.param(post_qr('{"amount": 100000000.00, "currency": "BOB", "description": "x"}'),
                 422, "validation_failed", "amount", id="qr-amount-above-maximum"),
    pytest.param(post_qr('{"amount": NaN, "currency": "BOB", "description": "x"}'),
                 400, "invalid_json", None, id="qr-amount-nan-literal"),
    pytest.param(post_qr('{"amount": Infinity, "currency": "BOB", "description": "x"}'),
                 400, "invalid_json", None, id="qr-amount-infinity-literal"),
    pytest.param(post_qr('{"amount": 1e999999, "currency": "BOB", "description": "x"}'),
                 422, "validation_failed", "amount", id="qr-amount-huge-exponent"),
    pytest.param(post_qr('{"amount": 1E+99999999999999999999, "currency": "BOB", '
                         '"description": "x"}'), 400, "invalid_json", None,
                 id="qr-amount-exponent-beyond-decimal"),
    pytest.param(post_qr('{"amount": 1e-999999, "currency": "BOB", "description": "x"}'),
                 422, "validation_failed", "amount", id="qr-amount-tiny-exponent"),
    pytest.param(post_qr(qr_body(currency="EUR")), 422, "validation_failed", "currency",
                 id="qr-currency-unknown"),
    pytest.param(post_qr(qr_body(currency="USD")), 422, "validation_failed", "currency",
                 id="qr-currency-not-the-accounts"),
    pytest.param(post_qr(qr_body(currency=None)), 422, "validation_failed", "currency",
                 id="qr-currency-missing"),
    pytest.param(post_qr(qr_body(description=42)), 422, "validation_failed", "description",
                 id="qr-description-as-number"),
    pytest.param(post_qr(qr_body(description="")), 422, "validation_failed", "description",
                 id="qr-description-empty"),
    pytest.param(post_qr(qr_body(description="a\r\nb")), 422, "validation_failed",
                 "description", id="qr-description-crlf"),
    pytest.param(post_qr('{"amount": 1, "currency": "BOB", "description": "\\ud800"}'), 422,
                 "validation_failed", "description", id="qr-description-lone-surrogate"),
    pytest.param(post_qr(qr_body(singleUse="true")), 422, "validation_failed", "singleUse",
                 id="qr-singleUse-as-string"),
    pytest.param(post_qr(qr_body(modifyAmount=1)), 422, "validation_failed", "modifyAmount",
                 id="qr-modifyAmount-as-number"),
    pytest.param(post_qr(qr_body(dueDate="2020-01-01T00:00:00Z")), 422, "validation_failed",
                 "dueDate", id="qr-dueDate-in-the-past"),
    pytest.param(post_qr(qr_body(dueDate="next week")), 422, "validation_failed", "dueDate",
                 id="qr-dueDate-unparseable"),
    pytest.param(post_qr(qr_body(dueDate="9999-12-31")), 422, "validation_failed", "dueDate",
                 id="qr-dueDate-overflows-utc"),
    pytest.param(post_qr(qr_body(dueDate=1893456000)), 422, "validation_failed", "dueDate",
                 id="qr-dueDate-as-number"),
    pytest.param(post_qr(qr_body(transactionId="T" * 31)), 422, "validation_failed",
                 "transactionId", id="qr-transactionId-31-chars"),
    pytest.param(post_qr(qr_body(transactionId="T1\r\nid: x")), 422, "validation_failed",
                 "transactionId", id="qr-transactionId-crlf"),
    pytest.param(post_qr(qr_body(transactionId="pago #1")), 422, "validation_failed",
                 "transactionId", id="qr-transactionId-bad-characters"),
    pytest.param(post_qr(qr_body(transactionId="MERCHANT-1", amount=Decimal("99.00"))), 409,
                 "transaction_id_reused", None, id="qr-transactionId-reused-other-body"),
    pytest.param(lambda w: w.api.post("/qr", data=BIG, headers=w.headers), 413,
                 "request_entity_too_large", None, id="qr-body-over-64KiB"),
    pytest.param(lambda w: w.api.post("/qr", data=chunked(over_the_cap_as_valid_json()),
                                      headers=w.headers), 413,
                 "request_entity_too_large", None, id="qr-chunked-body-over-64KiB"),
    # ---- GET /qr, /qr/<id>, cancel
    pytest.param(get("/qr?status=paid"), 422, "validation_failed", "status",
                 id="qr-list-bad-status"),
    pytest.param(get("/qr?limit=0"), 422, "validation_failed", "limit", id="qr-list-limit-0"),
    pytest.param(get("/qr?limit=abc"), 422, "validation_failed", "limit", id="qr-list-limit-abc"),
    pytest.param(get("/qr?limit=%C2%B2"), 422, "validation_failed", "limit",
                 id="qr-list-limit-superscript"),
    pytest.param(get("/qr?cursor=x"), 422, "validation_failed", "cursor", id="qr-list-cursor-x"),
    pytest.param(get("/qr/12345678901234567890"), 404, "not_found", None, id="qr-get-unknown"),
    pytest.param(get("/qr/{w.other_qr[qrId]}"), 404, "not_found", None,
                 id="qr-get-other-accounts"),
    pytest.param(get("/qr/abc%0D%0Aevent:%20x"), 422, "validation_failed", "qrId",
                 id="qr-get-crlf-in-url"),
    pytest.param(get("/qr/%00"), 422, "validation_failed", "qrId", id="qr-get-nul-in-url"),
    pytest.param(get("/qr/" + "1" * 65), 422, "validation_failed", "qrId", id="qr-get-id-65-chars"),
    pytest.param(post("/qr/12345678901234567890/cancel"), 404, "not_found", None,
                 id="qr-cancel-unknown"),
    pytest.param(post("/qr/{w.other_qr[qrId]}/cancel"), 404, "not_found", None,
                 id="qr-cancel-other-accounts"),
    pytest.param(post("/qr/a%0Ab/cancel"), 422, "validation_failed", "qrId",
                 id="qr-cancel-lf-in-url"),
    pytest.param(post("/qr/{w.cancelled_qr[qrId]}/cancel"), 409, "invalid_transition", None,
                 id="qr-cancel-already-cancelled"),
    # ---- POST /bank/payments: who sends it
    # Unsigned: a trigger to ask the bank, which knows nothing of this payment (docs/BANKS.md).
    pytest.param(pay_signed(), 409, "payment_not_confirmed", None, id="pay-unsigned"),
    pytest.param(pay_signed(timestamp=-400), 401, "invalid_signature", None,
                 id="pay-signature-older-than-300s"),
    pytest.param(pay_signed(timestamp=+400), 401, "invalid_signature", None,
                 id="pay-signature-from-the-future"),
    pytest.param(pay_signed(body_for_signature=b'{"amount": 1}'), 401, "invalid_signature",
                 None, id="pay-signature-of-another-body"),
    pytest.param(pay_signed(header=lambda: "t=1,v1=00"), 401, "invalid_signature", None,
                 id="pay-signature-garbage"),
    pytest.param(pay_signed(header=lambda: f"t={int(time.time())},v1={'0' * 64}"), 401,
                 "invalid_signature", None, id="pay-signature-wrong-mac"),
    pytest.param(pay_signed(authorization="Bearer not-the-secret"), 401, "invalid_signature",
                 None, id="pay-wrong-static-bearer"),
    pytest.param(pay_signed(authorization=f"Basic {BANK_SECRET}"), 401, "invalid_signature",
                 None, id="pay-secret-as-basic"),
    pytest.param(lambda w: w.api.bank("/bank/payments", b"{bad", sign=False), 400,
                 "invalid_json", None, id="pay-unsigned-malformed"),
    pytest.param(lambda w: w.api.bank("/hooks/baneco/notifyPayment",
                                      payment_body(w.qr["qrId"], "10.00"), sign=False),
                 409, "payment_not_confirmed", None, id="baneco-unsigned"),
    pytest.param(lambda w: w.api.bank("/api/qrsimple/notifyPaymentQR",
                                      {"payment": payment_body(w.qr["qrId"], "10.00")},
                                      sign=False),
                 409, "payment_not_confirmed", None, id="baneco-own-path-unsigned"),
    pytest.param(lambda w: w.api.bank("/api/qrsimple/notifyPaymentQR",
                                      {"payment": {"qrId": "a\nb", "transactionId": "1"}},
                                      sign=False),
                 422, "validation_failed", "qrId", id="baneco-own-path-unsigned-bad-qr-id"),
    # ---- POST /bank/payments: what it says
    pytest.param(pay_raw("{bad"), 400, "invalid_json", None, id="pay-malformed-json"),
    pytest.param(pay_raw("[]"), 400, "invalid_json", None, id="pay-array-body"),
    pytest.param(pay_raw('{"payment": "x"}'), 422, "validation_failed", "qrId",
                 id="pay-wrapped-not-an-object"),
    pytest.param(pay_raw('{"payment": {}}'), 422, "validation_failed", "transactionId",
                 id="pay-wrapped-empty"),
    pytest.param(pay(amount="10.00"), 422, "validation_failed", "amount",
                 id="pay-amount-as-string"),
    pytest.param(pay(amount=0), 422, "validation_failed", "amount", id="pay-amount-0"),
    pytest.param(pay(amount=-10), 422, "validation_failed", "amount", id="pay-amount-negative"),
    pytest.param(pay_raw('{"qrId": "1", "transactionId": "T", "amount": 10.001}'), 422,
                 "validation_failed", "amount", id="pay-amount-3-decimals"),
    pytest.param(pay_raw('{"qrId": "1", "transactionId": "T", "amount": NaN}'), 400,
                 "invalid_json", None, id="pay-amount-nan-literal"),
    pytest.param(pay_raw('{"qrId": "1", "transactionId": "T", "amount": 1E+400}'), 422,
                 "validation_failed", "amount", id="pay-amount-huge-exponent"),
    pytest.param(pay(amount=None), 422, "validation_failed", "amount", id="pay-amount-missing"),
    pytest.param(pay(currency="EUR"), 422, "validation_failed", "currency",
                 id="pay-currency-unknown"),
    pytest.param(pay(currency="USD"), 422, "validation_failed", "currency",
                 id="pay-currency-not-the-qrs"),
    pytest.param(pay(qrId="123\r\nevent: qr_payment"), 422, "validation_failed", "qrId",
                 id="pay-qrId-crlf"),
    pytest.param(pay(transactionId="BNK1\r\nid: forged"), 422, "validation_failed",
                 "transactionId", id="pay-transactionId-crlf"),
    pytest.param(pay(transactionId="BNK\n1"), 422, "validation_failed", "transactionId",
                 id="pay-transactionId-lf"),
    pytest.param(pay(transactionId="T" * 65), 422, "validation_failed", "transactionId",
                 id="pay-transactionId-65-chars"),
    pytest.param(pay(transactionId="pago/1"), 422, "validation_failed", "transactionId",
                 id="pay-transactionId-slash"),
    pytest.param(pay(transactionId=12345), 422, "validation_failed", "transactionId",
                 id="pay-transactionId-as-number"),
    pytest.param(pay(transactionId=None), 422, "validation_failed", "transactionId",
                 id="pay-transactionId-missing"),
    pytest.param(pay(qrId="99999999999999999999"), 404, "not_found", None, id="pay-unknown-qr"),
    pytest.param(pay(senderName=7), 422, "validation_failed", "senderName",
                 id="pay-senderName-as-number"),
    pytest.param(pay(description=["x"]), 422, "validation_failed", "description",
                 id="pay-description-as-list"),
    pytest.param(pay(paymentDate="yesterday"), 422, "validation_failed", "paymentDate",
                 id="pay-paymentDate-unparseable"),
    pytest.param(pay(paymentDate=None), 422, "validation_failed", "paymentDate",
                 id="pay-paymentDate-missing"),
    pytest.param(pay(paymentDate="2026-01-15", paymentTime="25:00:00"), 422,
                 "validation_failed", "paymentTime", id="pay-paymentTime-hour-25"),
    pytest.param(pay(paymentDate="0001-01-01T00:00:00+05:00"), 422, "validation_failed",
                 "paymentDate", id="pay-paymentDate-overflows-utc"),
    pytest.param(lambda w: pay(transactionId=w.paid_txn, amount=20)(w), 409,
                 "transaction_id_reused", None, id="pay-transactionId-reused-other-body"),
    pytest.param(lambda w: w.api.bank("/bank/payments", ("x" * (64 * 1024 + 1)).encode()), 413,
                 "request_entity_too_large", None, id="pay-body-over-64KiB"),
    pytest.param(lambda w: w.api.post("/bank/payments", data=chunked(BIG), headers={
                     "Authorization": f"Bearer {BANK_SECRET}"}), 413,
                 "request_entity_too_large", None, id="pay-chunked-body-over-64KiB"),
    pytest.param(lambda w: w.api.bank("/hooks/baneco/notifyPayment", {"payment": payment_body(
                     w.qr["qrId"], "10.00", transaction_id="BNK\r\nid: x")}), 422,
                 "validation_failed", "transactionId", id="baneco-wrapped-transactionId-crlf"),
    pytest.param(pay(path="/hooks/baneco/notifyPayment", currency="USD"), 422,
                 "validation_failed", "currency", id="baneco-currency-not-the-qrs"),
    # ---- POST /bank/qr-status
    pytest.param(qr_status(lambda w: {"qrId": w.qr["qrId"], "status": "cancelled"}, sign=False),
                 401, "invalid_signature", None, id="qr-status-unsigned"),
    pytest.param(qr_status(lambda w: {"qrId": w.qr["qrId"], "status": "paid"}), 422,
                 "validation_failed", "status", id="qr-status-unknown-status"),
    pytest.param(qr_status(lambda w: {"qrId": w.qr["qrId"], "status": "active"}), 422,
                 "validation_failed", "status", id="qr-status-back-to-active"),
    pytest.param(qr_status({"qrId": "1\r\n2", "status": "completed"}), 422, "validation_failed",
                 "qrId", id="qr-status-qrId-crlf"),
    pytest.param(qr_status({"qrId": "99999999999999999999", "status": "completed"}), 404,
                 "not_found", None, id="qr-status-unknown-qr"),
    pytest.param(qr_status(lambda w: {"qrId": w.cancelled_qr["qrId"], "status": "used"}), 409,
                 "invalid_transition", None, id="qr-status-from-cancelled"),
    pytest.param(qr_status(b"[1]"), 400, "invalid_json", None, id="qr-status-array-body"),
    # ---- payments
    pytest.param(get("/payments?limit=0"), 422, "validation_failed", "limit",
                 id="payments-limit-0"),
    pytest.param(get("/payments?limit=1000"), 422, "validation_failed", "limit",
                 id="payments-limit-too-big"),
    pytest.param(get("/payments?cursor=x"), 422, "validation_failed", "cursor",
                 id="payments-cursor-x"),
    pytest.param(post("/payments/NOPE123/release"), 404, "not_found", None,
                 id="release-unknown"),
    pytest.param(post("/payments/{w.other_txn}/release"), 404, "not_found", None,
                 id="release-other-accounts"),
    pytest.param(post("/payments/{w.paid_txn}/release"), 409, "not_held", None,
                 id="release-not-held"),
    pytest.param(post("/payments/{w.released_txn}/release"), 409, "already_released", None,
                 id="release-twice"),
    pytest.param(post("/payments/a%0D%0Ab/release"), 422, "validation_failed", "transactionId",
                 id="release-crlf-in-url"),
    # ---- accounts and api keys
    pytest.param(get("/accounts/me/movements?limit=abc"), 422, "validation_failed", "limit",
                 id="movements-limit-abc"),
    pytest.param(get("/accounts/me/movements?cursor=-1"), 422, "validation_failed", "cursor",
                 id="movements-cursor-negative"),
    pytest.param(post_as_user("/api-keys", "{bad"), 400, "invalid_json", None,
                 id="api-key-malformed-json"),
    pytest.param(post_as_user("/api-keys", {}), 422, "validation_failed", "name",
                 id="api-key-name-missing"),
    pytest.param(post_as_user("/api-keys", {"name": 5}), 422, "validation_failed", "name",
                 id="api-key-name-as-number"),
    pytest.param(post_as_user("/api-keys", {"name": "k", "expiresAt": "2020-01-01T00:00:00Z"}), 422,
                 "validation_failed", "expiresAt", id="api-key-expiry-in-the-past"),
    pytest.param(post_as_user("/api-keys", {"name": "k", "expiresAt": "soon"}), 422,
                 "validation_failed", "expiresAt", id="api-key-expiry-unparseable"),
    pytest.param(delete_as_user("/api-keys/999999999"), 404,
                 "not_found", None, id="api-key-revoke-unknown"),
    pytest.param(delete_as_user("/api-keys/{w.other.api_key_id}"),
                 404, "not_found", None, id="api-key-revoke-other-accounts"),
    pytest.param(delete_as_user("/api-keys/99999999999999999999999"),
                 404, "not_found", None, id="api-key-revoke-id-beyond-64-bits"),
    pytest.param(post("/auth/login", "[]"), 400, "invalid_json", None, id="login-array-body"),
    pytest.param(post("/auth/login", {"email": 5, "password": "x"}), 422, "validation_failed",
                 "email", id="login-email-as-number"),
    pytest.param(post("/auth/login", {"email": "a@b.co"}), 422, "validation_failed", "password",
                 id="login-password-missing"),
    # ---- admin
    pytest.param(admin("/admin/accounts", {"name": "x", "currency": "BOB"}, headers={}), 401,
                 "missing_credentials", None, id="admin-without-key"),
    pytest.param(admin("/admin/accounts", {"name": "x", "currency": "BOB"},
                       headers={"Authorization": "Bearer qra_wrong"}), 401,
                 "invalid_credentials", None, id="admin-wrong-key"),
    pytest.param(lambda w: w.api.post("/admin/accounts", data=dumps({"name": "x", "currency":
                                      "BOB"}), headers=w.headers), 401, "invalid_credentials",
                 None, id="admin-with-account-key"),
    pytest.param(lambda w: w.api.post(f"/admin/accounts?api-key={ADMIN_KEY}",
                                      data=dumps({"name": "x", "currency": "BOB"})), 401,
                 "invalid_credentials", None, id="admin-key-in-query-string"),
    pytest.param(admin("/admin/accounts", "{bad"), 400, "invalid_json", None,
                 id="admin-account-malformed-json"),
    pytest.param(admin("/admin/accounts", {"name": "x", "currency": "EUR"}), 422,
                 "validation_failed", "currency", id="admin-account-unknown-currency"),
    pytest.param(admin("/admin/accounts", {"currency": "BOB"}), 422, "validation_failed",
                 "name", id="admin-account-name-missing"),
    pytest.param(admin("/admin/accounts", BIG), 413, "request_entity_too_large", None,
                 id="admin-account-body-over-64KiB"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/users",
                       lambda w: {"email": "not-an-email", "password": "long enough", "name": "A"}),
                 422, "validation_failed", "email", id="admin-user-bad-email"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/users",
                       lambda w: {"email": new_email(), "password": "short", "name": "A"}),
                 422, "validation_failed", "password", id="admin-user-short-password"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/users",
                       lambda w: {"email": w.tenant.email.upper(), "password": "long enough",
                                  "name": "A"}),
                 409, "email_taken", None, id="admin-user-duplicate-email"),
    pytest.param(admin("/admin/accounts/999999999/users",
                       lambda w: {"email": new_email(), "password": "long enough", "name": "A"}),
                 404, "not_found", None, id="admin-user-unknown-account"),
    pytest.param(admin("/admin/accounts/99999999999999999999999/users",
                       lambda w: {"email": new_email(), "password": "long enough", "name": "A"}),
                 404, "not_found", None, id="admin-user-account-id-beyond-64-bits"),
    pytest.param(admin("/admin/accounts/999999999/api-keys", {"name": "k"}), 404, "not_found",
                 None, id="admin-api-key-unknown-account"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/api-keys",
                       lambda w: {"name": "k", "userId": w.other.user_id}),
                 404, "not_found", None, id="admin-api-key-user-of-another-account"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/api-keys",
                       {"name": "k", "userId": "1"}),
                 422, "validation_failed", "userId", id="admin-api-key-userId-as-string"),
    pytest.param(admin("/admin/accounts/{w.tenant.account_id}/api-keys",
                       {"name": "k", "expiresAt": "2001-01-01"}),
                 422, "validation_failed", "expiresAt", id="admin-api-key-expiry-in-the-past"),
    # ---- routes and methods that do not exist
    pytest.param(get("/nope"), 404, "not_found", None, id="unknown-route"),
    pytest.param(get("/qr/1/refund"), 404, "not_found", None, id="unknown-sub-route"),
    pytest.param(get("/bank/payments"), 405, "method_not_allowed", None, id="get-on-bank-route"),
    pytest.param(post("/events/stream"), 405, "method_not_allowed", None,
                 id="post-on-stream-route"),
    pytest.param(lambda w: w.api.delete("/qr", headers=w.headers), 405, "method_not_allowed",
                 None, id="delete-on-qr-list"),
    pytest.param(lambda w: w.api.session.put(w.api.url("/auth/login"), json={}, timeout=10),
                 405, "method_not_allowed", None, id="put-on-login"),
]  # fmt: skip


@pytest.mark.parametrize("send, status, code, field", CASES)
def test_bad_request_is_refused_and_changes_nothing(watch, send, status, code, field):
    before, log_offset = watch.snapshot(), len(watch.server.log())
    response = send(watch)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    # The bank's routes add BANECO's responseCode beside the envelope: non-zero, a retry.
    assert body.pop("responseCode", 1) != 0, body
    assert set(body) == {"success", "message", "data", "error"}, body
    assert body["success"] is False and body["data"] is None
    assert isinstance(body["message"], str) and body["message"]
    assert body["error"]["code"] == code, body
    if field is not None:
        assert field in body["error"]["fields"], body
        assert all(isinstance(m, str) and m for m in body["error"]["fields"].values())
    if status == 405:
        assert response.headers["Allow"]
    watch.assert_quiet_since(before, log_offset)


def test_validation_names_every_bad_field_at_once(watch):
    response = watch.api.post(
        "/qr",
        data=raw({"amount": "1", "currency": "EUR", "singleUse": "no"}),
        headers=watch.headers,
    )
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {
        "amount", "currency", "description", "singleUse",
    }  # fmt: skip


def test_a_good_request_after_the_bad_ones_is_announced_with_the_next_sequence(watch):
    """Bad requests in a row, then a payment: its events are the very next on the stream."""
    before, log_offset = watch.snapshot(), len(watch.server.log())
    for send in (post_qr("{bad"), pay(currency="USD"), pay_signed()):
        assert send(watch).status_code >= 400
    paid = watch.api.pay(watch.qr["qrId"], "10.00")
    assert paid.status_code == 200, paid.text
    events = watch.stream.take(2)
    assert [e.event for e in events] == ["qr_payment", "account_balance_update"]
    assert events[0].data["transactionId"] == paid.json()["data"]["transactionId"]
    assert "Traceback" not in watch.server.log()[log_offset:]
    assert watch.snapshot()[1]["payment"] == before[1]["payment"] + 1


def test_oversized_body_is_refused_before_it_is_parsed(watch):
    """Well past the cap (1 MiB): still the 413 envelope, and the server stays up."""
    response = watch.api.post("/qr", data=b"{" + b" " * (1024 * 1024) + b"}",
                              headers=watch.headers)  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"
    assert watch.api.get("/health").status_code == 200


def test_chunked_body_under_the_cap_is_read_whole(watch):
    body = dumps(qr_body(description="enviado por partes")) + " " * (60 * 1024)
    response = watch.api.post("/qr", data=chunked(body), headers=watch.headers)
    assert response.status_code == 201, response.text
    created = watch.stream.take(1)[0]
    assert created.data["qrId"] == response.json()["data"]["qrId"]
