"""AccountHub in isolation: strict sequence order whatever the broker does, bounded queues."""

import socket

import gevent
import pytest

from qrevents.events import EventRecord
from qrevents.hub import AccountHub
from qrevents.stream import http_chunk


def framed(seq, frame):
    """A committed event of account 1 whose frame is ``frame`` (the hub never looks inside)."""
    return EventRecord(1, seq, "qr_created", f"e{seq}", "{}", frame=frame)


class FakeLog:
    """The event log as the hub sees it: last seq per account, and frames by seq."""

    def __init__(self, last_seq=0):
        self.events = {}
        self.last = {1: last_seq}
        self.reads = []

    def commit(self, seq):
        self.events[seq] = framed(seq, f"frame {seq}\n\n".encode())
        self.last[1] = max(self.last[1], seq)
        return self.events[seq]

    def load_seqs(self, account_ids):
        return {a: self.last.get(a, 0) for a in account_ids}

    def load_events(self, account_id, after, upto):
        self.reads.append((after, upto))
        return [self.events[s] for s in range(after + 1, upto + 1) if s in self.events]


@pytest.fixture
def log():
    return FakeLog(last_seq=10)


@pytest.fixture
def hub(log):
    return AccountHub(load_seqs=log.load_seqs, load_events=log.load_events, queue_size=5)


def frames(sub):
    return [f.decode().split()[1] for f in sub.take()]


def test_live_events_start_after_the_last_committed_sequence(hub, log):
    sub = hub.subscribe(1)
    assert sub.start_seq == 10
    hub.deliver(1, [log.commit(11)])
    assert frames(sub) == ["11"]


def test_a_client_ahead_of_this_worker_gets_no_event_twice(hub, log):
    """Resumed here with a Last-Event-ID this worker has not heard of yet (it missed what
    another worker committed): the events up to it come live again, to other streams only."""
    other = hub.subscribe(1)
    ahead = hub.subscribe(1, after=12)
    assert ahead.start_seq == 12
    e11, e12, e13 = log.commit(11), log.commit(12), log.commit(13)
    hub.deliver(1, [e11, e12, e13])
    assert frames(ahead) == ["13"]
    assert frames(other) == ["11", "12", "13"]


def test_duplicates_and_stale_events_are_dropped(hub, log):
    sub = hub.subscribe(1)
    e11, e12 = log.commit(11), log.commit(12)
    hub.deliver(1, [e11])
    hub.deliver(1, [e11, e12])
    hub.deliver(1, [log.events.get(10, e11)])
    assert frames(sub) == ["11", "12"]


def test_out_of_order_events_are_delivered_in_sequence(hub, log):
    sub = hub.subscribe(1)
    e11, e12, e13 = log.commit(11), log.commit(12), log.commit(13)
    hub.deliver(1, [e13])
    hub.deliver(1, [e12])
    hub.deliver(1, [e11])
    gevent.sleep(0.01)
    assert frames(sub) == ["11", "12", "13"]


def test_a_lost_event_is_filled_from_the_log(hub, log):
    sub = hub.subscribe(1)
    log.commit(11)  # committed, but its announcement never arrives
    hub.deliver(1, [log.commit(12)])
    gevent.sleep(0.01)
    assert frames(sub) == ["11", "12"]
    assert log.reads == [(10, 12)]


def test_reconcile_catches_up_when_nothing_more_is_announced(hub, log):
    sub = hub.subscribe(1)
    log.commit(11)
    log.commit(12)
    hub.reconcile()
    gevent.sleep(0.01)
    assert frames(sub) == ["11", "12"]


def test_overflowing_queue_closes_the_stream_as_slow_consumer(hub, log):
    sub = hub.subscribe(1)
    hub.deliver(1, [log.commit(seq) for seq in range(11, 17)])
    assert sub.closing == "slow_consumer"
    assert sub.frames == []


def test_revoking_a_key_closes_only_its_streams(hub):
    by_key, other = hub.subscribe(1, api_key_id=7), hub.subscribe(1, api_key_id=8)
    hub.close_key_streams(7)
    assert by_key.closing == "key_revoked" and other.closing is None


def test_last_unsubscribe_drops_the_channel(hub):
    a, b = hub.subscribe(1), hub.subscribe(1)
    assert hub.stream_counts() == {1: 2}
    hub.unsubscribe(a)
    hub.unsubscribe(b)
    assert hub.stream_counts() == {} and hub.channels == {}


# -- a subscription attached to its connection's socket (gunicorn's gevent worker) ----------


@pytest.fixture
def connection():
    """``(server end, client end)`` of a real socket pair with small kernel buffers."""
    server_end, client_end = socket.socketpair()
    for end, option in ((server_end, socket.SO_SNDBUF), (client_end, socket.SO_RCVBUF)):
        end.setsockopt(socket.SOL_SOCKET, option, 4096)
    server_end.setblocking(False)
    client_end.settimeout(1)
    yield server_end, client_end
    server_end.close()
    client_end.close()


def read_chunks(end):
    """Every HTTP chunk readable now, decoded, in order; fails on broken framing."""
    return list(read_chunks_from(b"".join(iter(lambda: _recv_now(end), b""))))


def test_attached_stream_gets_each_frame_written_by_the_hub_without_a_wakeup(hub, log, connection):
    server_end, client_end = connection
    sub = hub.subscribe(1)
    sub.attach(server_end)
    hub.deliver(1, [log.commit(11), log.commit(12)])
    assert not sub.wakeup.is_set() and sub.frames == []
    assert read_chunks(client_end) == [b"frame 11\n\n", b"frame 12\n\n"]


def test_a_stalled_reader_leaves_the_rest_to_the_stream_in_order(log, connection):
    server_end, client_end = connection
    hub = AccountHub(load_seqs=log.load_seqs, load_events=log.load_events, queue_size=1000)
    sub = hub.subscribe(1)
    sub.attach(server_end)
    big = [framed(seq, b"x" * 900 + b"%d\n\n" % seq) for seq in range(11, 211)]
    hub.deliver(1, big)
    assert sub.unsent and sub.frames and sub.wakeup.is_set()
    later = framed(211, b"later\n\n")
    assert sub.socket is not None and not sub.push(later)  # queued
    # What the stream's greenlet does: finish the chunk, then write the queue as one chunk.
    rest = sub.detach() + http_chunk(b"".join(sub.take()))
    received = b""
    while rest:
        try:
            rest = rest[server_end.send(rest) :]
        except BlockingIOError:
            pass
        received += client_end.recv(65536)
    received += b"".join(iter(lambda: _recv_now(client_end), b""))
    frames = b"".join(read_chunks_from(received))
    assert frames == b"".join(e.frame for e in big) + b"later\n\n"


def _recv_now(end):
    end.setblocking(False)
    try:
        return end.recv(65536)
    except BlockingIOError:
        return b""


def read_chunks_from(raw):
    while raw:
        size, _, rest = raw.partition(b"\r\n")
        length = int(size, 16)
        assert rest[length : length + 2] == b"\r\n", "chunk framing broken"
        yield rest[:length]
        raw = rest[length + 2 :]


def test_a_stalled_reader_whose_queue_overflows_is_closed_as_slow_consumer(hub, log, connection):
    server_end, _ = connection
    sub = hub.subscribe(1)
    sub.attach(server_end)
    events = [framed(seq, b"y" * 2000 + b"\n\n") for seq in range(11, 111)]
    hub.deliver(1, events)
    assert sub.closing == "slow_consumer" and sub.frames == []


def test_a_reader_gone_ends_the_stream_as_disconnected(hub, log, connection):
    server_end, client_end = connection
    sub = hub.subscribe(1)
    sub.attach(server_end)
    client_end.close()
    hub.deliver(1, [log.commit(11)])
    assert sub.closing == "client_disconnected" and sub.socket is None


def test_attaching_waits_until_queued_frames_are_written(hub, log, connection):
    server_end, _ = connection
    sub = hub.subscribe(1)
    hub.deliver(1, [log.commit(11)])  # queued: not attached yet (preamble or replay going)
    sub.attach(server_end)
    assert sub.socket is None
    sub.take()
    sub.attach(server_end)
    assert sub.socket is server_end
