"""No broadcast: a worker listens to the Redis channels of the accounts it serves, and the
per-account stream limit holds across workers at every instant (leases in Redis).

Two single-worker servers share PostgreSQL and one Redis key prefix; their log
reconciliation is slowed to a minute, so what crosses servers within the tests' deadlines
crossed through Redis.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis

from tests.conftest import redis_prefix, serve_pair, two_host_deployment
from tests.live import ROOT, Api, LiveServer
from tests.test_multiworker import logged_event_ids, stream_count, wait_for

LIMIT = 3
# The last release whose workers share one events channel: a rolling upgrade from it must
# still deliver both ways.
SINGLE_CHANNEL_RELEASE = "0798f006360f923fc67f2b4cf74e0bb19d36146d"


@pytest.fixture(scope="module")
def deployment(redis_url, tmp_path_factory):
    return two_host_deployment(redis_url, tmp_path_factory.mktemp("deployment"), LIMIT)


@pytest.fixture(scope="module")
def servers(deployment, tmp_path_factory):
    yield from serve_pair(deployment, tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def bus(deployment):
    client = redis.Redis.from_url(deployment["redis_url"])
    yield client
    client.close()


@pytest.fixture
def apis(servers):
    apis = [Api(live.base) for live in servers]
    yield apis
    for api in apis:
        api.session.close()


def listeners(bus, deployment, account_id):
    channel = f"{deployment['redis_prefix']}events:{{{account_id}}}"
    ((_, count),) = bus.pubsub_numsub(channel)
    return count


def test_a_worker_listens_only_to_the_accounts_it_serves_until_their_last_stream_ends(
    deployment, bus, apis
):
    a, b = apis
    here, there = a.new_tenant(), a.new_tenant()
    assert listeners(bus, deployment, here.account_id) == 0
    with a.stream(here) as first, a.stream(here) as second, b.stream(there) as other:
        first.next(), second.next(), other.next()
        # One subscription per account and worker, whatever its streams.
        assert wait_for(lambda: listeners(bus, deployment, here.account_id) == 1, timeout=2)
        assert listeners(bus, deployment, there.account_id) == 1
        ((_, legacy),) = bus.pubsub_numsub(deployment["redis_prefix"] + "events")
        assert legacy == 0
        qr = b.create_qr(here)["qrId"]
        assert [e.id for e in first.take(1, timeout=2)] == [f"qr_created_{qr}"]
        assert [e.id for e in second.take(1, timeout=2)] == [f"qr_created_{qr}"]
        assert other.quiet_for(0.3) == []
        first.close()
        time.sleep(0.3)
        assert listeners(bus, deployment, here.account_id) == 1
    assert wait_for(lambda: listeners(bus, deployment, here.account_id) == 0, timeout=2)
    assert wait_for(lambda: listeners(bus, deployment, there.account_id) == 0, timeout=2)


def test_a_stream_opened_while_events_flow_gets_every_event_once_in_order(deployment, apis):
    a, b = apis
    tenant = a.new_tenant()
    qr = b.create_qr(tenant, singleUse=False)["qrId"]
    paying = threading.Thread(target=lambda: [b.pay(qr) for _ in range(15)])
    got = []
    paying.start()
    try:
        for _ in range(5):  # the account's channel is subscribed anew each time
            with a.stream(headers={**tenant.headers, **resume_from(got)}) as stream:
                stream.next()
                got += stream.take(2, timeout=3)
    finally:
        paying.join()
    with a.stream(headers={**tenant.headers, **resume_from(got)}) as stream:
        stream.next()
        logged = logged_event_ids(deployment["database_url"], tenant.account_id)
        got += stream.take(len(logged) - 1 - len(got), timeout=5)
        assert stream.quiet_for(0.3) == []
    assert [e.id for e in got] == logged[1:]


def resume_from(got):
    return {"Last-Event-ID": got[-1].id} if got else {}


def open_concurrently(apis, tenant, count):
    """``count`` streams of one account opened at once over both servers; each is
    ``(stream, first event)``."""
    results = [None] * count

    def open_one(index):
        stream = apis[index % 2].stream(tenant, timeout=10)
        results[index] = (stream, stream.next(timeout=10))

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_opens_over_two_workers_never_exceed_the_account_limit(apis):
    tenant = apis[0].new_tenant()
    for _ in range(2):  # closed streams give their slots back
        results = open_concurrently(apis, tenant, 16)
        try:
            admitted = [s for s, first in results if first.event == "connection"]
            refused = [first.data["reason"] for s, first in results if first.event != "connection"]
        finally:
            for stream, _ in results:
                stream.close()
        assert len(admitted) == LIMIT
        assert refused == ["too_many_streams"] * (16 - LIMIT)
        # A closed stream's slot is freed when its server notices (within a second).
        assert wait_for(lambda: stream_count(apis[0], tenant.account_id) == 0, timeout=5)


def test_the_slots_of_a_sigkilled_worker_lapse_within_seconds(deployment, tmp_path, apis):
    doomed = LiveServer(tmp_path, **deployment).start()
    try:
        c = Api(doomed.base)
        tenant = c.new_tenant()
        streams = [c.stream(tenant) for _ in range(LIMIT)]
        for stream in streams:
            assert stream.next().event == "connection"
        with apis[0].stream(tenant) as refused:
            assert refused.next().data["reason"] == "too_many_streams"
        for pid in doomed.worker_pids():
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        for stream in streams:
            stream.close()

        def admitted():
            with apis[0].stream(tenant) as stream:
                return stream.next().event == "connection"

        assert wait_for(admitted, timeout=8, interval=0.25)
        assert time.monotonic() - killed_at < 6
    finally:
        doomed.stop()


@pytest.fixture(scope="module")
def single_channel_release(tmp_path_factory):
    """The code of the last single-channel release, from this repository's history."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to check out the previous release")
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "archive", SINGLE_CHANNEL_RELEASE], cwd=ROOT, capture_output=True
    )
    if archive.returncode != 0:
        pytest.skip("the previous release is not in this clone's history (shallow clone?)")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def test_old_and_new_workers_deliver_each_others_events_during_a_rolling_upgrade(
    deployment, single_channel_release, tmp_path
):
    settings = {**deployment, "reconcile_seconds": 1}  # the default: old events within ~1 s
    new_server = LiveServer(tmp_path / "new", **settings).start()
    old_server = LiveServer(tmp_path / "old", **settings)
    try:
        old_server.start(cwd=single_channel_release)
        old, new = Api(old_server.base), Api(new_server.base)
        tenant = new.new_tenant()
        with old.stream(tenant) as on_old, new.stream(tenant) as on_new:
            on_old.next(), on_new.next()
            for writer in (new, old, new):
                started = time.monotonic()
                qr = writer.create_qr(tenant)["qrId"]
                for stream in (on_old, on_new):
                    assert [e.id for e in stream.take(1, timeout=4)] == [f"qr_created_{qr}"]
                # Reconciliation rounds of 1 s, plus a loaded machine's database reads.
                assert time.monotonic() - started < 3.5
            assert on_old.quiet_for(0.3) == [] and on_new.quiet_for(0.3) == []
        old.session.close(), new.session.close()
    finally:
        old_server.stop()
        new_server.stop()


@pytest.mark.parametrize("redis_answer", ["refused", "unreachable"])
def test_handshakes_of_one_account_racing_on_redis_keep_the_slot_ledger_whole(redis_answer):
    """Handshakes of one account wait on Redis at the same time; whatever each is answered,
    none fails (a 500 before), the limit holds and every slot taken is in the set the
    heartbeat renews."""
    import gevent
    from redis.exceptions import ConnectionError as RedisConnectionError

    from qrevents.hub import AccountHub
    from qrevents.redis_broker import RedisBroker

    hub = AccountHub(load_seqs=lambda ids: {}, load_events=lambda *a: [], queue_size=10)
    broker = RedisBroker(hub, "redis://127.0.0.1:1/0", prefix=redis_prefix())
    answers = iter([0, 0, 1, 1])  # refused twice, then taken twice (first come, first served)

    def take(keys, args):
        gevent.sleep(0.01)  # every handshake is now waiting here
        if redis_answer == "unreachable":
            raise RedisConnectionError("Redis away")
        return next(answers)

    broker._take_script = take
    waiting = [gevent.spawn(broker.take_stream_slot, 7, 2) for _ in range(4)]
    gevent.joinall(waiting, raise_error=True)
    slots = [g.value for g in waiting if g.value is not None]
    assert len(slots) == 2  # Redis's answer, or this worker's own count when it is away
    assert broker._slots[7] == {slot.lease_id for slot in slots}
    for slot in slots:
        slot.release()
    assert 7 not in broker._slots
