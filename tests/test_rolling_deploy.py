"""A rolling deploy on PostgreSQL: fresh servers and respawned workers boot on the same
database while payments flow, and none of them halts or fails a payment."""

import os
import signal
import time

import psycopg2
import pytest

from tests.conftest import fresh_database_url, redis_prefix
from tests.live import Api, BankTraffic, LiveServer


@pytest.fixture
def database_url(tmp_path):
    return fresh_database_url("postgres", tmp_path)


def ledger(database_url, account_id):
    """``{transaction_id: (payments, movements)}`` of the account, and its balance in cents."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT p.transaction_id, count(DISTINCT p.id), count(m.id) FROM payment p "
            "LEFT JOIN movement m ON m.transaction_id = p.transaction_id "
            "WHERE p.account_id = %s GROUP BY p.transaction_id",
            [account_id],
        )
        rows = {tx: (payments, movements) for tx, payments, movements in cursor.fetchall()}
        cursor.execute("SELECT balance_cents FROM account WHERE id = %s", [account_id])
        return rows, cursor.fetchone()[0]


def test_servers_booting_while_payments_flow_never_halt_and_never_fail_a_payment(
    database_url, redis_url, tmp_path
):
    prefix = redis_prefix()

    def server(n):  # two workers: one serves while the other is killed and boots again
        return LiveServer(
            tmp_path / f"s{n}", database_url, workers=2, redis_url=redis_url, redis_prefix=prefix
        )

    everyone = [server(0).start()]
    serving, halted = list(everyone), []
    tenant = Api(serving[0].base).new_tenant()
    traffic = BankTraffic(serving, tenant, threads=4).start()
    try:
        for n in range(1, 4):
            time.sleep(0.3)
            fresh = server(n)
            everyone.append(fresh)
            try:
                serving.append(fresh.start())
            except RuntimeError as error:  # the master stopped while its workers booted
                halted.append(str(error)[-2000:])
            for live in serving:  # a worker dies; the master boots another under load
                _kill_a_worker(live)
            if len(serving) > 2:  # the oldest release leaves
                serving.pop(0).stop()
            for live in list(serving):
                if live.process.poll() is not None:
                    serving.remove(live)
                    halted.append(live.log()[-2000:])
        time.sleep(1.5)  # the last respawned workers boot while payments still flow
        halted += [live.log()[-2000:] for live in serving if live.process.poll() is not None]
    finally:
        traffic.stop()
        for live in everyone:
            live.stop()

    logs = "\n".join(live.log() for live in everyone)
    assert halted == []
    assert traffic.failures == []
    assert "deadlock detected" not in logs
    assert "Worker failed to boot" not in logs
    recorded, balance = ledger(database_url, tenant.account_id)
    assert len(traffic.acknowledged) > 50
    assert set(recorded) == traffic.acknowledged
    assert set(recorded.values()) == {(1, 1)}
    assert balance == 100 * len(recorded)


def _kill_a_worker(live):
    if live.process.poll() is not None:
        return
    for pid in live.worker_pids()[:1]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
