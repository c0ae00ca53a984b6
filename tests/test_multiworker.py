"""Many workers behind Redis: streams on one server, writes through another, nothing lost.

Two single-worker servers on two ports share one PostgreSQL database and one Redis key
prefix, as two hosts of a deployment would; which worker serves a request is then up to
the test. Their log reconciliation is slowed to a minute, so an event that crosses servers
within the test's deadlines crossed through Redis pub/sub.
"""

import os
import signal
import threading
import time

import psycopg2
import pytest
import redis
import requests

from tests.conftest import fresh_database_url, redis_prefix, serve_pair, two_host_deployment
from tests.live import ADMIN_KEY, Api, LiveServer

PAYMENT_EVENTS = ["qr_payment", "account_balance_update", "qr_status_change"]
MAX_STREAMS = 3


@pytest.fixture(scope="module")
def deployment(redis_url, tmp_path_factory):
    return two_host_deployment(redis_url, tmp_path_factory.mktemp("deployment"), MAX_STREAMS)


@pytest.fixture(scope="module")
def servers(deployment, tmp_path_factory):
    yield from serve_pair(deployment, tmp_path_factory.mktemp("pair"))


@pytest.fixture
def a(servers):
    api = Api(servers[0].base)
    yield api
    api.session.close()  # idle keep-alive connections would slow the servers' stop


@pytest.fixture
def b(servers):
    api = Api(servers[1].base)
    yield api
    api.session.close()


@pytest.fixture
def tenant(a):
    return a.new_tenant()


def logged_event_ids(database_url, account_id):
    """Every durable event id of an account, in sequence order, as the event log holds them."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT event_id FROM event WHERE account_id = %s ORDER BY seq", [account_id]
        )
        return [row[0] for row in cursor.fetchall()]


def read_until_broken(stream, timeout=5):
    """Durable events a stream still delivers until its server goes away."""
    got = []
    try:
        while (event := stream.next(timeout)) is not None:
            if event.durable:
                got.append(event)
    except OSError:  # reset by the dying worker
        pass
    return got


def stream_count(api, account_id):
    stats = api.get("/events/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return stats.json()["data"]["subscriptionsByAccount"].get(str(account_id), 0)


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_more_than_one_worker_without_redis_is_refused_with_what_to_set(tmp_path):
    live = LiveServer(tmp_path, f"sqlite:///{tmp_path / 'q.db'}", workers=2)
    with pytest.raises(RuntimeError, match="server exited at start"):
        live.start()
    assert "2 workers need QREVENTS_REDIS_URL" in live.log()
    assert live.process.returncode != 0


def test_stream_on_one_server_gets_events_written_through_another(a, b, tenant):
    with a.stream(tenant) as stream:
        stream.next()
        qr = b.create_qr(tenant)
        (created,) = stream.take(1, timeout=2)
        assert b.pay(qr["qrId"]).status_code == 200
        paid = stream.take(3, timeout=2)
    assert created.id == f"qr_created_{qr['qrId']}"
    assert [e.event for e in paid] == PAYMENT_EVENTS


def test_malformed_messages_on_the_bus_are_ignored(deployment, a, b, tenant):
    bus = redis.Redis.from_url(deployment["redis_url"])
    channel = f"{deployment['redis_prefix']}events:{{{tenant.account_id}}}"
    with a.stream(tenant) as stream:
        stream.next()
        assert wait_for(lambda: bus.pubsub_numsub(channel)[0][1] == 1, timeout=2)
        for junk in (b"not json", b'{"a": 1}', b'{"a": "x", "e": [[1]]}', b"\xff", b"\x00seq x"):
            bus.publish(channel, junk)
            bus.publish(deployment["redis_prefix"] + "events", junk)  # the old channel
        bus.publish(deployment["redis_prefix"] + "revocations", b"not a key id")
        qr = b.create_qr(tenant)
        (created,) = stream.take(1, timeout=2)
    bus.close()
    assert created.id == f"qr_created_{qr['qrId']}"
    assert requests.get(a.url("/health")).status_code == 200


def test_stream_resumes_on_another_server_with_every_missed_event_once(a, b, tenant):
    with a.stream(tenant) as first:
        first.next()
        a.create_qr(tenant)
        (seen,) = first.take(1)
    missed_qr = b.create_qr(tenant)
    assert a.pay(missed_qr["qrId"]).status_code == 200
    with b.stream(headers={**tenant.headers, "Last-Event-ID": seen.id}) as second:
        connection = second.next()
        replayed = second.take(4)
        live_qr = a.create_qr(tenant)
        (live,) = second.take(1, timeout=2)
        assert second.quiet_for(0.3) == []
    assert connection.data["resumed"] is True and connection.data["replayed"] == 4
    assert [e.event for e in replayed] == ["qr_created", *PAYMENT_EVENTS]
    assert replayed[0].id == f"qr_created_{missed_qr['qrId']}"
    assert live.id == f"qr_created_{live_qr['qrId']}"


def test_clients_of_a_sigkilled_worker_resume_elsewhere_with_nothing_lost(
    deployment, servers, a, b, tenant
):
    with a.stream(tenant) as stream:
        stream.next()
        qrs = [b.create_qr(tenant)["qrId"] for _ in range(8)]
        got = stream.take(8)
        # Server a has told Redis of this stream, so its death has something to expire.
        assert wait_for(lambda: stream_count(b, tenant.account_id) == 1, timeout=3)
        paying = threading.Thread(target=lambda: [b.pay(qr) for qr in qrs])
        paying.start()
        got += stream.take(3)
        for pid in servers[0].worker_pids():
            os.kill(pid, signal.SIGKILL)
        got += read_until_broken(stream)
    resume = {**tenant.headers, "Last-Event-ID": got[-1].id}
    with b.stream(headers=resume) as again:
        assert again.next().data["resumed"] is True
        counted_with_the_dead = stream_count(b, tenant.account_id)
        paying.join()
        got += again.take(8 + 3 * 8 - len(got), timeout=10)
        assert again.quiet_for(0.3) == []
        # The dead worker's count expires on its own; only the resumed stream remains.
        assert wait_for(lambda: stream_count(b, tenant.account_id) == 1, timeout=6)
    assert counted_with_the_dead == 2
    assert [e.id for e in got] == logged_event_ids(deployment["database_url"], tenant.account_id)
    assert wait_for(lambda: requests.get(a.url("/health")).status_code == 200, timeout=15)


def test_key_revoked_through_one_server_ends_its_streams_on_another_within_a_second(a, b, tenant):
    other_key = a.admin(
        f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "tv", "userId": tenant.user_id}
    )
    doomed = b.stream(headers={"Authorization": f"Bearer {other_key['key']}"})
    survivor = b.stream(tenant)
    try:
        doomed.next(), survivor.next()
        started = time.monotonic()
        revoked = a.delete(
            f"/api-keys/{other_key['id']}", headers={"Authorization": f"Bearer {tenant.jwt}"}
        )
        assert revoked.status_code == 200, revoked.text
        closed = doomed.until("stream_closed", timeout=1.0)[-1]
        elapsed = time.monotonic() - started
        assert doomed.next(timeout=1) is None
        a.create_qr(tenant)
        assert survivor.take(1, timeout=2)[0].event == "qr_created"
    finally:
        doomed.close()
        survivor.close()
    assert closed.data["reason"] == "key_revoked"
    assert elapsed < 1.0


def test_revocation_whose_message_was_lost_still_ends_streams_on_every_server(
    deployment, a, b, tenant
):
    other_key = a.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "kiosk"})
    headers = {"Authorization": f"Bearer {other_key['key']}"}
    streams = [a.stream(headers=headers), b.stream(headers=headers)]
    try:
        for stream in streams:
            stream.next()
        # Revoked in the database with no announcement at all, as if the message were lost.
        with psycopg2.connect(deployment["database_url"]) as conn, conn.cursor() as cursor:
            cursor.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [other_key["id"]])
        reasons = [
            stream.until("stream_closed", timeout=2.5)[-1].data["reason"] for stream in streams
        ]
    finally:
        for stream in streams:
            stream.close()
    assert reasons == ["key_revoked", "key_revoked"]


def test_stream_limit_and_stats_count_streams_on_every_server(a, b, tenant):
    streams = [a.stream(tenant), a.stream(tenant), b.stream(tenant)]
    try:
        for stream in streams:
            assert stream.status == 200
        assert wait_for(lambda: stream_count(a, tenant.account_id) == MAX_STREAMS, timeout=3)
        assert wait_for(lambda: stream_count(b, tenant.account_id) == MAX_STREAMS, timeout=3)
        for api in (a, b):
            with api.stream(tenant) as refused:
                assert refused.status == 200
                assert refused.until("stream_closed")[-1].data["reason"] == "too_many_streams"
        own = a.get("/events/stats", headers=tenant.headers).json()["data"]
        assert own["subscriptionsByAccount"] == {str(tenant.account_id): MAX_STREAMS}
        streams.pop(0).close()
        assert wait_for(lambda: stream_count(b, tenant.account_id) == MAX_STREAMS - 1, timeout=3)
        with b.stream(tenant) as admitted:
            assert admitted.status == 200
    finally:
        for stream in streams:
            stream.close()


def test_sigterm_ends_streams_with_server_shutdown_and_clients_resume_elsewhere(
    deployment, tmp_path, b
):
    leaving = LiveServer(tmp_path, **deployment).start()
    try:
        c = Api(leaving.base)
        tenant = c.new_tenant()
        with c.stream(tenant) as stream:
            stream.next()
            qrs = [b.create_qr(tenant)["qrId"] for _ in range(6)]
            got = stream.take(6)
            paying = threading.Thread(target=lambda: [b.pay(qr) for qr in qrs])
            paying.start()
            got += stream.take(2)
            c.session.close()  # an idle keep-alive connection would hold up the stop
            leaving.signal(signal.SIGTERM)
            tail = stream.until("stream_closed", timeout=5)
            assert stream.next(timeout=5) is None
        got += [e for e in tail if e.durable]
        resume = {**tenant.headers, "Last-Event-ID": got[-1].id}
        with b.stream(headers=resume) as again:
            assert again.next().data["resumed"] is True
            paying.join()
            got += again.take(6 + 3 * 6 - len(got), timeout=10)
            assert again.quiet_for(0.3) == []
    finally:
        leaving.stop()
    assert tail[-1].data["reason"] == "server_shutdown"
    assert [e.id for e in got] == logged_event_ids(deployment["database_url"], tenant.account_id)


def test_two_workers_on_one_port_serve_every_stream_every_event(deployment, tmp_path):
    shared = {
        **deployment,
        "database_url": fresh_database_url("postgres", tmp_path),
        "redis_prefix": redis_prefix(),
    }
    live = LiveServer(tmp_path, workers=2, **shared).start()
    try:
        assert len(live.worker_pids()) == 2
        api = Api(live.base)
        tenant = api.new_tenant()
        streams = [api.stream(tenant) for _ in range(MAX_STREAMS)]
        for stream in streams:
            stream.next()
        qrs = [api.create_qr(tenant)["qrId"] for _ in range(4)]
        for qr in qrs:
            assert api.pay(qr).status_code == 200
        received = [[e.id for e in stream.take(16, timeout=3)] for stream in streams]
        for stream in streams:
            stream.close()
        api.session.close()
    finally:
        live.stop()
    expected = [f"qr_created_{qr}" for qr in qrs]
    for ids in received:
        assert [i for i in ids if i.startswith("qr_created_")] == expected
        assert len(set(ids)) == 16
