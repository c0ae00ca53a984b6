"""Reconciliation and status sync against the simulated bank, over real HTTP.

Payments whose notification never came are found from the bank's paid list within one
round and recorded exactly once; QR statuses the bank changed are announced with
syncSource ``bank_api``; several workers ask the bank once per account per round.
"""

import random
import subprocess
import time
from decimal import Decimal

import pytest

from tests.bank_sim import BankSimulator
from tests.conftest import fresh_database_url, redis_prefix
from tests.ledger_check import assert_ledger_invariants
from tests.live import BANK_SECRET, BIN, ROOT, Api, LiveServer, dumps
from tests.test_metrics import scrape, value

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def bank_pair(backend, tmp_path):
    """A simulator and a server of their own; ``start(**settings)`` starts the server."""
    simulator = BankSimulator(tmp_path, notify_interval=0.1).start()
    servers = []

    def start(**settings):
        settings.setdefault("bank_sync_seconds", 3600)
        folder = tmp_path / f"s{len(servers)}"
        database_url = settings.pop("database_url", None) or fresh_database_url(backend, folder)
        server = LiveServer(folder, database_url, **settings).start()
        servers.append(server)
        return server, Api(server.base, simulator=simulator)

    yield start, simulator
    for server in servers:
        server.stop(wait=False)
    simulator.stop()


def reconcile(server, *args):
    """``flask bank-reconcile`` in a process of its own, as an operator runs it."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "bank-reconcile", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def pay_silently(simulator, qr_id):
    """A payment the bank records but whose notification is lost."""
    simulator.faults(notify={"drop": True})
    try:
        return simulator.pay(qr_id)
    finally:
        simulator.faults(notify={"drop": False})


def test_dropped_notifications_are_recovered_within_one_round(bank_pair):
    start, simulator = bank_pair
    server, api = start(bank_sync_seconds=1)
    tenant = api.new_tenant()
    first, second = api.create_qr(tenant, "10.00"), api.create_qr(tenant, "20.00")
    with api.stream(tenant) as stream:
        stream.next()
        started = time.monotonic()
        paid = [pay_silently(simulator, qr["qrId"]) for qr in (first, second)]
        events = stream.take(6, timeout=4)
        took = time.monotonic() - started
        assert stream.quiet_for(1.5) == []  # the next rounds record nothing twice
    assert took < 2.5, took  # one round is 1 s
    payments = [e for e in events if e.event == "qr_payment"]
    assert sorted(e.data["transactionId"] for e in payments) == sorted(
        p["transactionId"] for p in paid
    )
    changes = [e for e in events if e.event == "qr_status_change"]
    assert {e.data["syncSource"] for e in changes} == {"bank_api"}
    me = api.get("/accounts/me", headers=tenant.headers).json()["data"]
    assert me["balance"] == Decimal("30.00")
    assert value(scrape(api), "qrevents_bank_payments_recovered_total") == 2
    assert assert_ledger_invariants(server, tenant) == 2


def test_the_reconcile_command_records_a_missed_payment_once(bank_pair):
    start, simulator = bank_pair
    server, api = start()
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "15.00")
    paid = pay_silently(simulator, qr["qrId"])
    with api.stream(tenant) as stream:
        stream.next()
        assert f"account {tenant.account_id}: 1 payment(s) recovered" in reconcile(server)
        events = stream.take(3)
        again = reconcile(server)
        today = reconcile(server, "--date", paid["paymentDate"][:10])
        assert stream.quiet_for(1.5) == []
    assert f"account {tenant.account_id}: 0 payment(s) recovered" in again
    assert f"account {tenant.account_id}: 0 payment(s) recovered" in today
    assert [e.event for e in events] == ["qr_payment", "account_balance_update", "qr_status_change"]
    assert events[0].data["transactionId"] == paid["transactionId"]
    assert assert_ledger_invariants(server, tenant) == 1


def test_the_reconcile_command_refuses_a_bad_date(bank_pair):
    start, _ = bank_pair
    server, _ = start()
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "bank-reconcile", "--date", "30/11/2026"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("at_bank", "events", "new_status"),
    [
        ("cancelled", ["qr_status_change"], "cancelled"),
        ("paid", ["qr_payment", "account_balance_update", "qr_status_change"], "used"),
    ],
)
def test_a_qr_changed_at_the_bank_is_announced_with_bank_api(
    bank_pair, at_bank, events, new_status
):
    start, simulator = bank_pair
    server, api = start()
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "12.00")
    simulator.set_status(qr["qrId"], at_bank)  # behind our back: no notification
    with api.stream(tenant) as stream:
        stream.next()
        reconcile(server)
        got = stream.take(len(events))
        assert stream.quiet_for(0.5) == []
    assert [e.event for e in got] == events
    assert got[-1].data["newStatus"] == new_status and got[-1].data["syncSource"] == "bank_api"
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"] == (
        new_status
    )


def test_status_sync_asks_in_bounded_batches_least_recently_checked_first(bank_pair):
    start, simulator = bank_pair
    server, api = start(bank_sync_batch=2)
    tenant = api.new_tenant()
    qrs = [api.create_qr(tenant, "5.00") for _ in range(5)]
    simulator.set_status(qrs[-1]["qrId"], "cancelled")
    simulator.reset()  # count from here
    statuses = []
    for _ in range(3):
        reconcile(server)
        statuses.append(simulator.requests().get("statusQR", 0))
        status = api.get(f"/qr/{qrs[-1]['qrId']}", headers=tenant.headers).json()["data"]
        if status["status"] == "cancelled":
            break
    # Two a round; the fifth QR (checked last) is reached in the third round, not before.
    assert statuses == [2, 4, 6]
    assert status["status"] == "cancelled"


def test_a_disagreement_is_counted_and_nothing_is_undone(bank_pair):
    """A multi-use QR we hold a (signed) payment for, that the bank calls active and unpaid."""
    start, _ = bank_pair
    server, api = start(bank_sync_seconds=1)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "8.00", singleUse=False)
    assert api.pay(qr["qrId"], "8.00").status_code == 200

    def counted():
        return value(scrape(api), "qrevents_bank_disagreements_total", kind="active_with_payment")

    deadline = time.monotonic() + 5
    while counted() < 1:
        assert time.monotonic() < deadline, "the disagreement was never counted"
        time.sleep(0.1)
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).json()["data"]["status"] == "active"
    assert api.get("/accounts/me", headers=tenant.headers).json()["data"]["balance"] == 8
    assert "active_with_payment" in server.log()


def test_a_bank_that_fails_the_paid_list_leaves_nothing_recorded(bank_pair):
    start, simulator = bank_pair
    server, api = start(bank_read_timeout_seconds=0.5)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "9.00")
    pay_silently(simulator, qr["qrId"])
    simulator.faults(paidQR={"httpStatus": 503})
    out = reconcile(server)
    assert "reconciled 0 linked account(s)" in out
    assert api.get("/payments", headers=tenant.headers).json()["data"]["items"] == []
    simulator.clear_faults()
    assert f"account {tenant.account_id}: 1 payment(s) recovered" in reconcile(server)


def test_a_notification_racing_the_reconciliation_records_once(bank_pair):
    """A round every 0.2 s and the bank's late notifications, sent at random moments
    after each payment: whichever comes first records it, the other finds it recorded."""
    start, simulator = bank_pair
    server, api = start(bank_sync_seconds=0.2)
    tenant = api.new_tenant()
    rng = random.Random(12)
    firsts = []
    for _ in range(6):
        qr = api.create_qr(tenant, "7.00")
        payment = pay_silently(simulator, qr["qrId"])
        time.sleep(rng.uniform(0, 0.3))
        answer = api.post(
            "/api/qrsimple/notifyPaymentQR",
            data=dumps({"payment": payment}),
            headers={"Authorization": f"Bearer {BANK_SECRET}", **JSON},
        )
        assert answer.status_code == 200 and answer.json()["responseCode"] == 0, answer.text
        firsts.append("reconciliation" if answer.json()["duplicate"] else "notification")
    time.sleep(0.5)
    assert assert_ledger_invariants(server, tenant) == 6, firsts


def test_two_workers_record_each_missed_payment_once_and_ask_once_per_round(
    backend, tmp_path, redis_url
):
    """PostgreSQL + Redis, two workers, a round every 1.5 s: the lease in the bank link row
    lets one worker a round ask the bank (paidQR for the day and the day before)."""
    if backend != "postgres":
        pytest.skip("several workers need PostgreSQL and Redis")
    simulator = BankSimulator(tmp_path, notify_interval=0.1).start()
    server = LiveServer(
        tmp_path,
        fresh_database_url(backend, tmp_path),
        workers=2,
        redis_url=redis_url,
        redis_prefix=redis_prefix(),
        bank_sync_seconds=1.5,
    )
    try:
        server.start()
        api = Api(server.base, simulator=simulator)
        tenant = api.new_tenant()
        qrs = [api.create_qr(tenant, "3.00") for _ in range(3)]
        simulator.reset()
        window_start = time.monotonic()
        simulator.faults(notify={"drop": True})
        paid = [simulator.pay(qr["qrId"]) for qr in qrs]
        deadline = time.monotonic() + 6
        while True:
            items = api.get("/payments", headers=tenant.headers).json()["data"]["items"]
            if len(items) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(3)  # two more rounds: nothing twice
        window = time.monotonic() - window_start
        asked = simulator.requests().get("paidQR", 0)
        items = api.get("/payments", headers=tenant.headers).json()["data"]["items"]
        assert sorted(p["transactionId"] for p in items) == sorted(p["transactionId"] for p in paid)
        rounds = int(window / 1.5) + 1
        # Two paidQR calls (the day and the day before) per round for the one account; without
        # the lease both workers would ask, twice as often.
        assert 2 <= asked <= 2 * rounds, (asked, window)
        assert assert_ledger_invariants(server, tenant) == 3
    finally:
        server.stop()
        simulator.stop()
