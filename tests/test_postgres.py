"""PostgreSQL specifics: a bounded pool no stream holds, waits that never freeze a worker,
and concurrent writers in separate processes that keep money and sequences exact.

The rest of the suite runs on PostgreSQL too (the ``server`` fixture's backends).
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg2
import pytest

from tests.conftest import fresh_database_url
from tests.live import Api, BankTraffic, LiveServer
from tests.test_multiworker import logged_event_ids
from tests.test_rolling_deploy import ledger


@pytest.fixture
def database_url(tmp_path):
    return fresh_database_url("postgres", tmp_path)


@pytest.fixture
def start(tmp_path):
    """Start servers on the test's PostgreSQL database; stopped (sessions closed) after."""
    started = []

    def start_server(database_url, **settings):
        live = LiveServer(tmp_path / f"s{len(started)}", database_url, **settings).start()
        api = Api(live.base)
        started.append((live, api))
        return api

    yield start_server
    for live, api in started:
        api.session.close()
        live.stop()


def backend_connections(database_url):
    """Client connections PostgreSQL has open to this database (the test's own excluded)."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        return cursor.fetchone()[0]


def test_more_streams_than_pooled_connections_leave_the_api_working(database_url, start):
    api = start(f"{database_url}?max_connections=2")
    tenant = api.new_tenant()
    streams = [api.stream(tenant) for _ in range(8)]
    try:
        for stream in streams:
            assert stream.next().event == "connection"
        qr = api.create_qr(tenant)
        assert api.pay(qr["qrId"]).status_code == 200
        for stream in streams:
            assert [e.event for e in stream.take(4, timeout=3)][0] == "qr_created"
        assert backend_connections(database_url) <= 2
        assert api.get("/accounts/me", headers=tenant.headers).status_code == 200
    finally:
        for stream in streams:
            stream.close()


def test_a_query_waiting_on_a_row_lock_does_not_freeze_the_worker(database_url, start):
    api = start(database_url)
    tenant = api.new_tenant()
    holder = psycopg2.connect(database_url)
    created = {}
    try:
        with api.stream(tenant) as stream:
            stream.next()
            with holder.cursor() as cursor:  # a transaction stays open until commit
                cursor.execute(
                    "SELECT id FROM account WHERE id = %s FOR UPDATE", [tenant.account_id]
                )
            writer = threading.Thread(target=lambda: created.update(api.create_qr(tenant)))
            writer.start()
            time.sleep(0.3)  # the QR's transaction now waits for the account's row lock
            assert writer.is_alive()
            # The worker's event loop runs on: heartbeats flow, other requests are answered.
            started = time.monotonic()
            beats = [stream.next(timeout=1).event for _ in range(3)]
            health = Api(api.base).get("/health")
            assert time.monotonic() - started < 1.5
            holder.commit()
            writer.join(5)
            (event,) = stream.take(1, timeout=2)
    finally:
        holder.close()
    assert beats == ["heartbeat"] * 3
    assert health.status_code == 200
    assert event.id == f"qr_created_{created['qrId']}"


def test_concurrent_payments_through_two_servers_credit_once_with_contiguous_sequence(
    database_url, start
):
    servers = [start(database_url), start(database_url)]
    tenant = servers[0].new_tenant()

    def notify(attempt):
        transaction_id, qr_id, api = attempt
        response = Api(api.base).pay(qr_id, "1.01", transaction_id=transaction_id)
        return transaction_id, response.status_code, response.json().get("duplicate") is True

    with servers[0].stream(tenant) as stream:
        stream.next()
        qrs = [servers[1].create_qr(tenant, "1.01", singleUse=False)["qrId"] for _ in range(4)]
        # Each notification is sent twice at once, through different servers: a bank's retry.
        attempts = [
            (f"TX{n:03d}", qrs[n % len(qrs)], servers[(n + retry) % 2])
            for n in range(60)
            for retry in (0, 1)
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(notify, attempts))
        # Server 1's events reach this stream through the log (no Redis here), in order.
        events = stream.take(4 + 2 * 60, timeout=15)
        assert stream.quiet_for(0.3) == []

    assert {status for _, status, _ in results} == {200}
    duplicates = {}
    for transaction_id, _, duplicate in results:
        duplicates.setdefault(transaction_id, []).append(duplicate)
    assert all(sorted(flags) == [False, True] for flags in duplicates.values())
    me = servers[1].get("/accounts/me", headers=tenant.headers).json(parse_float=Decimal)
    assert me["data"]["balance"] == me["data"]["availableBalance"] == Decimal("60.60")
    payments = [e for e in events if e.event == "qr_payment"]
    assert sorted(e.data["transactionId"] for e in payments) == sorted(duplicates)
    balances = [e for e in events if e.event == "account_balance_update"]
    assert [int(e.id.rsplit("_", 1)[1]) for e in balances] == list(range(1, 61))
    assert [e.data["newBalance"] for e in balances] == [Decimal("1.01") * n for n in range(1, 61)]
    assert [e.id for e in events] == logged_event_ids(database_url, tenant.account_id)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT seq FROM event WHERE account_id = %s ORDER BY seq", [tenant.account_id]
        )
        assert [seq for (seq,) in cursor.fetchall()] == list(range(1, 4 + 2 * 60 + 1))


def terminate_connections(database_url):
    """Have PostgreSQL end every connection to this database but the test's own."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        return cursor.fetchone()[0]


def test_pooled_connections_postgres_ends_mid_burst_are_replaced_and_fail_no_payment(
    database_url, tmp_path
):
    live = LiveServer(tmp_path, database_url).start()
    api = Api(live.base)
    tenant = api.new_tenant()
    traffic = BankTraffic([api], tenant, threads=6, retry_unavailable=True).start()
    terminated = 0
    try:
        time.sleep(0.5)
        for _ in range(8):
            terminated += terminate_connections(database_url)
            time.sleep(0.4)
        time.sleep(0.5)
    finally:
        traffic.stop()
        live.stop()
    assert terminated >= 8
    # No 500: a lost connection is replaced and the request run again, or (lost again, or
    # lost while committing) answered 503 with Retry-After, which the bank retries.
    assert traffic.failures == []
    assert {retry_after for _, retry_after in traffic.unavailable} <= {"1"}
    recorded, balance = ledger(database_url, tenant.account_id)
    assert len(traffic.acknowledged) > 20
    assert set(recorded) == traffic.acknowledged
    assert set(recorded.values()) == {(1, 1)}
    assert balance == 100 * len(recorded)
    assert "running it again" in live.log()
