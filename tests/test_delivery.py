"""Delivery guarantees (docs/CONTRACT.md, section 4) end to end: isolation, order, gapless
resume, rollback, slow consumers, shutdown."""

import os
import signal
import threading
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from tests.live import Api


def durable(events):
    return [e for e in events if e.durable]


def test_each_account_gets_only_its_own_events_in_order(api):
    alice, bob = api.new_tenant(), api.new_tenant()
    with api.stream(alice) as a1, api.stream(alice) as a2, api.stream(bob) as b1:
        for stream in (a1, a2, b1):
            stream.next()
        expected = {alice.account_id: [], bob.account_id: []}
        for round_ in range(3):
            for tenant in (alice, bob, alice):
                qr = api.create_qr(tenant, amount=f"{10 + round_}.00")
                expected[tenant.account_id].append(f"qr_created_{qr['qrId']}")
        bob_qr = api.create_qr(bob)
        expected[bob.account_id].append(f"qr_created_{bob_qr['qrId']}")
        got_a1 = a1.take(6)
        got_a2 = a2.take(6)
        got_b1 = b1.take(4)
        # Nothing else arrives: not the other account's events, not duplicates.
        assert a1.quiet_for(0.5) == [] and b1.quiet_for(0.3) == []
    assert [e.id for e in got_a1] == expected[alice.account_id]
    assert [e.id for e in got_a2] == expected[alice.account_id]
    assert [e.id for e in got_b1] == expected[bob.account_id]


def test_stats_count_only_the_callers_own_streams(api):
    alice, bob = api.new_tenant(), api.new_tenant()
    with api.stream(alice) as s1, api.stream(bob) as s2:
        s1.next(), s2.next()
        stats = api.get("/events/stats", params={"token": alice.api_key}).json()["data"]
    assert stats["yourAccountId"] == alice.account_id
    assert stats["subscriptionsByAccount"] == {str(alice.account_id): 1}
    assert stats["totalConnections"] >= 2


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_replays_every_missed_event_once_then_goes_live(api, tenant, how):
    with api.stream(tenant) as first:
        first.next()
        qr = api.create_qr(tenant)
        (seen,) = first.take(1)
    missed = [api.create_qr(tenant)["qrId"] for _ in range(3)]
    paid = api.pay(missed[0], "100.50")
    assert paid.status_code == 200
    resume = {
        "header": {"headers": {**tenant.headers, "Last-Event-ID": seen.id}},
        "query": {"headers": tenant.headers, "params": {"lastEventId": seen.id}},
    }[how]
    with api.stream(**resume) as again:
        connection = again.next()
        replayed = again.take(6)
        live_qr = api.create_qr(tenant)
        (live,) = again.take(1)
        assert again.quiet_for(0.4) == []
    assert seen.id == f"qr_created_{qr['qrId']}"
    assert connection.data["resumed"] is True and connection.data["replayed"] == 6
    assert [e.id for e in replayed[:3]] == [f"qr_created_{q}" for q in missed]
    assert [e.event for e in replayed[3:]] == [
        "qr_payment",
        "account_balance_update",
        "qr_status_change",
    ]
    assert live.id == f"qr_created_{live_qr['qrId']}"


@pytest.mark.parametrize("last_id", ["garbage", "qr_created_00000000000000000000", "x" * 300])
def test_unknown_last_event_id_is_not_resumed(api, tenant, last_id):
    api.create_qr(tenant)
    with api.stream(headers={**tenant.headers, "Last-Event-ID": last_id}) as stream:
        connection = stream.next()
        (resync,) = stream.quiet_for(0.4)  # and nothing replayed
    assert connection.data["resumed"] is False and connection.data["replayed"] == 0
    assert resync.event == "resync_required" and resync.id is None
    assert resync.data == {"lastEventId": last_id, "reason": "unknown"}


def test_another_accounts_event_id_does_not_resume(api):
    alice, bob = api.new_tenant(), api.new_tenant()
    bob_qr = api.create_qr(bob)
    api.create_qr(alice)
    headers = {**alice.headers, "Last-Event-ID": f"qr_created_{bob_qr['qrId']}"}
    with api.stream(headers=headers) as stream:
        connection = stream.next()
        (resync,) = stream.quiet_for(0.3)  # and nothing of bob's
    assert connection.data["resumed"] is False
    assert resync.event == "resync_required" and resync.data["reason"] == "unknown"


def test_events_committed_during_replay_are_neither_lost_nor_duplicated(api, tenant):
    with api.stream(tenant) as first:
        first.next()
        api.create_qr(tenant)
        (seen,) = first.take(1)
    before = [api.create_qr(tenant)["qrId"] for _ in range(60)]
    during = []
    writer_api = Api(api.base)

    def write_while_resuming():
        for _ in range(60):
            during.append(writer_api.create_qr(tenant)["qrId"])

    writer = threading.Thread(target=write_while_resuming)
    with api.stream(headers={**tenant.headers, "Last-Event-ID": seen.id}) as again:
        writer.start()
        connection = again.next()
        got = again.take(120, timeout=30)
        writer.join()
        assert again.quiet_for(0.4) == []
    assert connection.data["resumed"] is True
    assert [e.id for e in got] == [f"qr_created_{q}" for q in before + during]


def test_rejected_payment_inside_its_transaction_announces_nothing(api, tenant):
    qr = api.create_qr(tenant)
    with api.stream(tenant) as stream:
        stream.next()
        wrong_currency = api.pay(qr["qrId"], "100.50", currency="USD")
        assert wrong_currency.status_code == 422
        good = api.create_qr(tenant)
        (next_event,) = stream.take(1)
    assert next_event.id == f"qr_created_{good['qrId']}"
    me = api.get("/accounts/me", headers=tenant.headers).json()["data"]
    assert me["balance"] == 0 and me["availableBalance"] == 0


def test_concurrent_payments_to_one_account_keep_exact_balance_and_contiguous_sequence(api, tenant):
    qrs = [api.create_qr(tenant, amount="1.01", singleUse=False)["qrId"] for _ in range(4)]
    with api.stream(tenant) as stream:
        stream.next()
        errors = []

        def pay_many(worker):
            client = Api(api.base)
            for i in range(15):
                qr_id = qrs[(worker + i) % len(qrs)]
                response = client.pay(qr_id, "1.01", transaction_id=f"W{worker}_{i}")
                if response.status_code != 200:
                    errors.append(response.text)
                # A bank retry of the same notification must not credit twice.
                if i % 5 == 0:
                    retry = client.pay(qr_id, "1.01", transaction_id=f"W{worker}_{i}")
                    if retry.json().get("duplicate") is not True:
                        errors.append(retry.text)

        threads = [threading.Thread(target=pay_many, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = stream.take(8 * 15 * 2, timeout=30)
        assert stream.quiet_for(0.5) == []
    assert errors == []
    me = api.get("/accounts/me", headers=tenant.headers).json(parse_float=Decimal)["data"]
    assert me["balance"] == me["availableBalance"] == Decimal("121.20")
    balances = [e for e in events if e.event == "account_balance_update"]
    assert [int(e.id.rsplit("_", 1)[1]) for e in balances] == list(range(1, 121))
    assert [e.data["newBalance"] for e in balances] == [Decimal("1.01") * n for n in range(1, 121)]
    assert len({e.id for e in events}) == 240


@contextmanager
def stalled_reader(make_server, **settings):
    """``(api, tenant, stream, qr)``: a stream that read nothing while 40 payments (80 events,
    ~ 40 KB) were made. Small kernel buffers on both ends: the server's writes to it stall
    after a few kilobytes, and what follows waits in the stream's queue."""
    server = make_server(stream_send_buffer=4096, **settings)
    api = Api(server.base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, singleUse=False)
    with api.stream(tenant, receive_buffer=4096) as stream:
        stream.next()
        for _ in range(40):
            assert api.pay(qr["qrId"]).status_code == 200
        yield api, tenant, stream, qr


def test_slow_consumer_is_closed_and_catches_up_by_resuming(make_server):
    with stalled_reader(make_server, stream_queue_size=4) as (api, tenant, stream, _):
        received = stream.until("stream_closed", timeout=10)
        assert stream.next(timeout=2) is None
    closed, delivered = received[-1], [e for e in received if e.id]
    assert closed.data["reason"] == "slow_consumer"
    assert 0 < len(delivered) < 80
    with api.stream(headers={**tenant.headers, "Last-Event-ID": delivered[-1].id}) as again:
        connection = again.next()
        replayed = again.take(connection.data["replayed"])
    ids = [e.id for e in delivered + replayed]
    assert len(ids) == 80 == len(set(ids))
    assert [e.event for e in delivered + replayed] == [
        "qr_payment",
        "account_balance_update",
    ] * 40


def test_a_reader_that_stalls_then_reads_again_gets_every_event_once_in_order(make_server):
    # Its socket stops taking whole chunks: the hub leaves the rest to the stream's greenlet,
    # which finishes the chunk it began and writes the backlog before the hub writes again.
    with stalled_reader(make_server) as (api, _, stream, qr):
        received = stream.take(80, timeout=10)
        assert api.pay(qr["qrId"]).status_code == 200
        received += stream.take(2)
    ids = [e.id for e in received]
    assert len(set(ids)) == 82
    assert [e.event for e in received] == ["qr_payment", "account_balance_update"] * 41
    balances = [e.data["newBalance"] for e in received if e.event == "account_balance_update"]
    assert balances == sorted(balances) and len(set(balances)) == 41


def test_graceful_shutdown_tells_streams_why_they_end(make_server):
    server = make_server()
    api = Api(server.base)
    tenant = api.new_tenant()
    with api.stream(tenant) as stream:
        stream.next()
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        closed = stream.until("stream_closed", timeout=5)[-1]
        assert stream.next(timeout=5) is None
    assert closed.data["reason"] == "server_shutdown"
    assert time.monotonic() - started < 3
    api.session.close()  # an idle keep-alive connection would hold the worker 5 s more
    server.process.wait(10)


def _worker_pid(server):
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return int(children.read_text().split()[0])


def _open_database_files(pid, database_path):
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(database_path):
                count += 1
        except OSError:
            pass
    return count


def test_waiting_streams_hold_no_database_connection(backend, make_server):
    if backend != "sqlite":
        pytest.skip("counts SQLite file handles; PostgreSQL has its own pool test")
    # A server of its own: the shared one's pool has grown with every earlier test's load.
    server = make_server()
    api = Api(server.base)
    tenant = api.new_tenant()
    database_path = Path(server.env["QREVENTS_DATABASE_URL"].removeprefix("sqlite:///"))
    streams = [api.stream(tenant) for _ in range(20)]
    try:
        for stream in streams:
            stream.next()
        api.create_qr(tenant)
        for stream in streams:
            stream.take(1)
        held = _open_database_files(_worker_pid(server), database_path)
    finally:
        for stream in streams:
            stream.close()
    # The pool keeps a connection or two for requests, and the worker's WAL checkpointer one
    # of its own (models.db.checkpoint_in_background); one per waiting stream would be 20.
    assert held <= 2 + 1
