"""AccountHub in isolation: strict sequence order whatever the broker does, bounded queues."""

import gevent
import pytest

from qrevents.hub import AccountHub
from qrevents.services.eventlog import CommittedEvent


class FakeLog:
    """The event log as the hub sees it: last seq per account, and frames by seq."""

    def __init__(self, last_seq=0):
        self.events = {}
        self.last = {1: last_seq}
        self.reads = []

    def commit(self, seq):
        self.events[seq] = CommittedEvent(1, seq, f"frame {seq}\n\n".encode())
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
