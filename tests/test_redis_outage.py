"""A Redis outage delays delivery but loses and repeats nothing.

The test runs a Redis server of its own on a free port (the machine's shared one is never
touched), stops it in the middle, and starts it again on the same port. The two servers'
periodic log reconciliation is slowed to a minute: events missed during the outage can only
arrive in time through the catch-up a worker does when its listener reconnects.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest
import redis
import requests

# Signing a bank callback imports the app; done here, not inside the first timed payment.
import qrevents.bank_signature  # noqa: F401
from tests.conftest import fresh_database_url, missing_service
from tests.live import Api, LiveServer, free_port
from tests.test_multiworker import logged_event_ids, wait_for


class PrivateRedis:
    """A throw-away redis-server, in memory only, that a test may stop and restart."""

    def __init__(self, tmp_path):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir"]
        self.process = subprocess.Popen(
            [self.binary, *args, str(self.dir), "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        if not wait_for(lambda: self._answers(client), timeout=5):
            raise RuntimeError("private redis-server did not start")
        client.close()

    @staticmethod
    def _answers(client):
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which("redis-server") and not os.path.exists("/usr/bin/redis-server"):
        missing_service("the Redis outage test needs the redis-server binary")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def health(api):
    response = requests.get(api.url("/health"), timeout=5)
    return response.status_code, response.json()["data"]


def durable_ids(stream, seconds):
    """Durable event ids read within ``seconds``, and whether a heartbeat came meanwhile.

    Heartbeats (every 0.2 s) keep every read short: a timed-out socket cannot be read again.
    """
    ids, beat, deadline = [], False, time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = stream.next(timeout=2)
        assert event is not None, "the stream ended"
        beat = beat or event.event == "heartbeat"
        if event.durable:
            ids.append(event.id)
    return ids, beat


def test_a_workers_redis_connections_do_not_grow_with_its_streams(tmp_path, private_redis):
    live = LiveServer(
        tmp_path / "s",
        fresh_database_url("postgres", tmp_path),
        redis_url=private_redis.url,
        max_streams_per_account=100,
    ).start()
    api = Api(live.base)
    observer = redis.Redis(port=private_redis.port)
    try:
        tenant = api.new_tenant()
        streams = [api.stream(tenant) for _ in range(40)]
        for stream in streams:
            stream.next()
        api.create_qr(tenant)
        for stream in streams:
            stream.take(1)
        # One pub/sub listener and a small pool for commands; the observer is the rest.
        clients = observer.client_list()
        for stream in streams:
            stream.close()
    finally:
        observer.close()
        api.session.close()
        live.stop()
    assert len(clients) - 1 <= 1 + 4
    assert sum(client["flags"] == "P" for client in clients) == 1


def test_redis_outage_delays_events_but_loses_and_repeats_none(tmp_path, private_redis):
    settings = {
        "database_url": fresh_database_url("postgres", tmp_path),
        "redis_url": private_redis.url,
        "reconcile_seconds": 60,
    }
    servers = [LiveServer(tmp_path / name, **settings).start() for name in ("a", "b")]
    a, b = (Api(live.base) for live in servers)
    try:
        tenant = a.new_tenant()
        on_a, on_b = a.stream(tenant), b.stream(tenant)
        on_a.next(), on_b.next()
        before = b.create_qr(tenant)["qrId"]
        assert [e.id for e in on_a.take(1, timeout=2)] == [f"qr_created_{before}"]
        assert [e.id for e in on_b.take(1, timeout=2)] == [f"qr_created_{before}"]

        private_redis.stop()
        for api in (a, b):
            assert wait_for(lambda api=api: health(api)[0] == 503, timeout=3)
            status = health(api)[1]
            assert (status["database"], status["broker"]) == ("ok", "down")

        # Writes go on, without waiting on Redis; each server's own streams see them.
        started = time.monotonic()
        during = a.create_qr(tenant)["qrId"]
        assert b.pay(during).status_code == 200
        assert time.monotonic() - started < 1.0
        with b.stream(tenant) as opened_during_outage:
            assert opened_during_outage.status == 200
        assert b.get("/events/stats", headers=tenant.headers).status_code == 200
        ids_a, beat_a = durable_ids(on_a, 1.0)
        ids_b, beat_b = durable_ids(on_b, 0.5)
        assert beat_a and beat_b
        # b saw a gap before its own payment and filled it from the event log.
        assert ids_a == [f"qr_created_{during}"]
        assert len(ids_b) == 4 and ids_b[0] == f"qr_created_{during}"

        private_redis.start()
        for api in (a, b):
            assert wait_for(lambda api=api: health(api)[0] == 200, timeout=5)
        # a catches up on what b wrote during the outage as soon as it listens again.
        ids_a += [e.id for e in on_a.take(3, timeout=2)]
        after = b.create_qr(tenant)["qrId"]
        ids_a += [e.id for e in on_a.take(1, timeout=2)]
        ids_b += [e.id for e in on_b.take(1, timeout=2)]
        assert on_a.quiet_for(0.3) == [] and on_b.quiet_for(0.3) == []
        on_a.close(), on_b.close()
    finally:
        a.session.close(), b.session.close()
        for live in servers:
            live.stop()
    logged = logged_event_ids(settings["database_url"], tenant.account_id)
    assert logged[-1] == f"qr_created_{after}"
    assert [f"qr_created_{before}", *ids_a] == logged
    assert [f"qr_created_{before}", *ids_b] == logged


def test_a_frozen_redis_neither_slows_payments_nor_loses_or_repeats_events(tmp_path, private_redis):
    database_url = fresh_database_url("postgres", tmp_path)
    # A small publish queue, so that the freeze also overflows it: what is dropped there
    # reaches the other worker through its reconciliation with the log.
    live = LiveServer(
        tmp_path / "s",
        database_url,
        workers=2,
        redis_url=private_redis.url,
        redis_publish_queue_size=5,
    ).start()
    api = Api(live.base)
    streams = []
    try:
        tenant = api.new_tenant()
        kiosk = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "kiosk"})
        qr = api.create_qr(tenant, singleUse=False)["qrId"]
        while len({e["pid"] for e in live.json_log() if e["event"] == "stream_open"}) < 2:
            assert len(streams) < 40, "one worker took every stream"
            streams.append(api.stream(tenant))
            assert streams[-1].next().event == "connection"
        for _ in range(3):
            assert api.pay(qr).status_code == 200

        private_redis.process.send_signal(signal.SIGSTOP)
        frozen_at, took = time.monotonic(), []
        try:
            for _ in range(40):
                started = time.perf_counter()
                assert api.pay(qr).status_code == 200
                took.append(time.perf_counter() - started)
            started = time.perf_counter()
            revoked = api.delete(f"/api-keys/{kiosk['id']}", headers=tenant.headers)
            revocation_took = time.perf_counter() - started
            # Frozen long enough for every publish timeout and retry to run out.
            time.sleep(max(0.0, 3.0 - (time.monotonic() - frozen_at)))
        finally:
            private_redis.process.send_signal(signal.SIGCONT)
        for _ in range(3):
            assert api.pay(qr).status_code == 200
        received = [[e.id for e in stream.take(2 * 46, timeout=10)] for stream in streams]
        assert all(stream.quiet_for(0.3) == [] for stream in streams)
    finally:
        for stream in streams:
            stream.close()
        api.session.close()
        live.stop()
    took.sort()
    assert took[int(0.99 * len(took))] < 0.1, took[-5:]
    assert revoked.status_code == 200 and revocation_took < 0.1
    assert "publish queue is full" in live.log()
    logged = logged_event_ids(database_url, tenant.account_id)
    assert len(logged) == 1 + 2 * 46
    for ids in received:
        assert ids == logged[1:]
