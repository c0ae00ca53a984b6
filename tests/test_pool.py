"""The connection pool hands connections out first come, first served.

Under a burst the longest waiter must get the next connection: a request arriving later must
not take it first (with peewee's own pool it does, and the unlucky waiter times out: a 500).
"""

import _thread
import json
import threading
import time

import pytest
from playhouse.pool import MaxConnectionsExceeded

from models.db import _FifoGate, checkpoint_in_background, open_database


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def queued_waiter(gate, got):
    """A thread waiting on ``gate``; ``got`` gets what its acquire returned."""
    waiter = threading.Thread(target=lambda: got.append(gate.acquire(5)))
    waiter.start()
    wait_until(lambda: len(gate._waiters) == 1)
    return waiter


def test_a_released_permit_goes_to_the_waiter_not_to_a_newcomer():
    gate = _FifoGate(1)
    assert gate.acquire(0)
    got = []
    waiter = queued_waiter(gate, got)

    gate.release()
    assert not gate.acquire(0)  # a newcomer finds nothing free: the permit is the waiter's
    waiter.join(5)
    assert got == [True]
    gate.release()
    assert gate.acquire(0)


def test_waiters_are_served_in_arrival_order():
    gate = _FifoGate(1)
    assert gate.acquire(0)
    order = []

    def wait(name):
        assert gate.acquire(5)
        order.append(name)
        gate.release()

    threads = []
    for n in range(5):
        threads.append(threading.Thread(target=wait, args=(n,)))
        threads[-1].start()
        wait_until(lambda n=n: len(gate._waiters) == n + 1)
    gate.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_that_times_out_leaves_the_queue():
    gate = _FifoGate(1)
    assert gate.acquire(0)
    assert not gate.acquire(0.05)
    assert not gate._waiters
    gate.release()
    assert gate.acquire(0)


@pytest.fixture
def pooled(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'pool.db'}")
    db._max_connections, db._gate = 1, _FifoGate(1)  # one connection: the queue shows
    yield db
    db.close_all()


def test_a_request_holds_its_permit_from_connect_to_close(pooled):
    assert pooled.connect()
    assert not pooled.connect(reuse_if_open=True)  # the same request: no second permit
    assert pooled._gate._free == 0
    got = []
    waiter = threading.Thread(target=lambda: got.append(pooled.connect()) or pooled.close())
    waiter.start()
    wait_until(lambda: len(pooled._gate._waiters) == 1)

    assert pooled.close()
    waiter.join(5)
    assert got == [True]
    assert not pooled.close()  # already closed: nothing released twice
    assert pooled._gate._free == 1


def test_a_request_that_waits_too_long_is_refused(pooled):
    pooled._wait_timeout = 0.05
    pooled.connect()
    refused = []

    def connect():
        try:
            pooled.connect()
        except MaxConnectionsExceeded:
            refused.append(True)

    other = threading.Thread(target=connect)
    other.start()
    other.join(5)
    assert refused == [True]
    assert not pooled._gate._waiters
    pooled.close()
    assert pooled._gate._free == 1


def test_a_request_that_finds_no_connection_in_time_is_told_to_retry(app):
    """A 503 with Retry-After (overload), not a 500 with a traceback (a bug)."""
    from models import database

    pool = database.obj
    saved = pool._gate, pool._wait_timeout
    pool._gate, pool._wait_timeout = _FifoGate(0), 0.05  # every connection busy
    answers = []

    def pay():  # another thread: this one holds the fixture's connection
        answers.append(app.test_client().post("/bank/payments", json={}))

    try:
        worker = threading.Thread(target=pay)
        worker.start()
        worker.join(5)
    finally:
        pool._gate, pool._wait_timeout = saved
    (answer,) = answers
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.get_json()["error"]["code"] == "unavailable"


def test_a_stream_whose_replay_cannot_be_read_is_refused_and_leaves_no_subscription(
    app, monkeypatch
):
    """The first replay batch is read before the first byte: a database that cannot answer
    it is a stream that ends at once (``replay_failed``, which an EventSource retries), and
    the stream it would have been holds no subscription."""
    from models import Event
    from qrevents import stream_open
    from qrevents.services.accounts import create_account, create_api_key
    from tests.conftest import create_test_qr

    account = create_account("Replay", "BOB")
    _, key = create_api_key(account.id, "k")
    create_test_qr(account.id)  # one event to resume after, one to replay
    create_test_qr(account.id)
    first = Event.get((Event.account == account.id) & (Event.seq == 1))

    def unreadable(*args):
        raise MaxConnectionsExceeded("every connection busy")

    monkeypatch.setattr(stream_open, "replay_batch", unreadable)
    answers = []

    def resume():  # another thread: this one holds the fixture's connection
        headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": first.event_id}
        answers.append(app.test_client().get("/events/stream", headers=headers))

    worker = threading.Thread(target=resume)
    worker.start()
    worker.join(5)
    (answer,) = answers
    assert answer.status_code == 200
    assert answer.mimetype == "text/event-stream"
    assert _closed_for(answer) == "replay_failed"
    assert app.extensions["qrevents"].hub.count(account.id) == 0


def test_a_stream_that_finds_no_connection_in_time_ends_at_once_as_overloaded(app):
    """Not the REST routes' 503: an EventSource gives up for good on it."""
    from models import database
    from qrevents.services.accounts import create_account, create_api_key

    account = create_account("Busy", "BOB")
    _, key = create_api_key(account.id, "k")
    pool = database.obj
    saved = pool._gate, pool._wait_timeout
    pool._gate, pool._wait_timeout = _FifoGate(0), 0.05  # every connection busy
    answers = []

    def open_stream():  # another thread: this one holds the fixture's connection
        headers = {"Authorization": f"Bearer {key}"}
        answers.append(app.test_client().get("/events/stream", headers=headers))

    try:
        worker = threading.Thread(target=open_stream)
        worker.start()
        worker.join(5)
    finally:
        pool._gate, pool._wait_timeout = saved
    (answer,) = answers
    assert answer.status_code == 200
    assert _closed_for(answer) == "overloaded"
    retry = answer.get_data(as_text=True).split("\n")[0]
    assert 1000 <= int(retry.removeprefix("retry: ")) <= 3000
    assert app.extensions["qrevents"].hub.count(account.id) == 0


def _closed_for(answer):
    """The reason of a stream that is a ``retry:`` line and a ``stream_closed``, nothing else."""
    retry, closed, end = answer.get_data(as_text=True).split("\n\n")
    event, data = closed.split("\n")
    assert retry.startswith("retry: ") and event == "event: stream_closed" and end == ""
    return json.loads(data.removeprefix("data: "))["reason"]


def test_a_later_replay_batch_that_cannot_be_read_ends_the_stream_where_the_client_resumes(
    app, monkeypatch
):
    """Past the first batch (read before the 200), a failed read ends the stream cleanly after
    the last whole batch, with ``stream_closed: replay_failed``: no traceback, no live phase,
    and the client's Last-Event-ID is exact."""
    from models import Event
    from qrevents import stream
    from qrevents.services.accounts import create_account, create_api_key
    from qrevents.services.eventlog import events_between
    from tests.conftest import create_test_qr

    account = create_account("Replay", "BOB")
    _, key = create_api_key(account.id, "k")
    for _ in range(3):  # one to resume after, one per replay batch of one
        create_test_qr(account.id)
    first, second = (
        Event.get((Event.account == account.id) & (Event.seq == seq)) for seq in (1, 2)
    )
    monkeypatch.setattr(stream, "REPLAY_BATCH", 1)  # the handshake's batch and the later ones
    reads = []

    def second_read_fails(*args):
        reads.append(args)
        if len(reads) > 1:
            raise MaxConnectionsExceeded("every connection busy")
        return events_between(*args)

    monkeypatch.setattr(stream, "events_between", second_read_fails)
    bodies = []

    def resume():  # another thread: this one holds the fixture's connection
        headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": first.event_id}
        response = app.test_client().get("/events/stream", headers=headers)
        bodies.append((response.status_code, response.get_data()))
        response.close()  # as a WSGI server does once the body ends

    worker = threading.Thread(target=resume)
    worker.start()
    worker.join(5)
    ((status, body),) = bodies
    assert status == 200 and len(reads) == 2
    assert body.count(b"event: qr_created") == 1
    assert f"id: {second.event_id}".encode() in body
    *_, retry, last = body.rstrip(b"\n").split(b"\n\n")  # the stream's last frames
    assert retry.startswith(b"retry: ") and 1000 <= int(retry[7:]) <= 3000
    assert last.startswith(b"event: stream_closed\n") and b'"reason":"replay_failed"' in last
    assert app.extensions["qrevents"].hub.count(account.id) == 0


def test_the_sqlite_log_is_copied_back_by_the_checkpoint_thread_not_by_commits(tmp_path):
    path = tmp_path / "log.db"
    db = open_database(f"sqlite:///{path}")
    with db.connection_context():
        db.execute_sql("CREATE TABLE t (body TEXT)")
        for _ in range(100):
            db.execute_sql("INSERT INTO t VALUES (?)", ("x" * 1000,))
    written = path.stat().st_size
    assert written < 50_000  # the commits left their pages in the log

    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) > 1:
            raise SystemExit  # ends the thread (quietly) after one checkpoint

    assert checkpoint_in_background(db, _thread.start_new_thread, sleep)
    wait_until(lambda: path.stat().st_size > 100_000)


def test_no_checkpoint_thread_for_a_database_in_memory():
    started = []
    db = open_database("sqlite://")
    assert not checkpoint_in_background(db, lambda *call: started.append(call), time.sleep)
    assert started == []
