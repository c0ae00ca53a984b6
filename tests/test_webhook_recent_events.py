"""The latest events a worker shares between its endpoints' runs: always exactly the log's
events after a cursor, read again when the log may hold more than what is kept."""

from models import Account, Event
from qrevents.clock import utcnow
from qrevents.webhooks.deliverer import EVENT_BATCH, RecentEvents


def add_events(account_id, first, last):
    Event.insert_many(
        [
            {
                "account": account_id,
                "seq": seq,
                "event_type": "qr_created",
                "event_id": f"qr_created_{seq}",
                "data": "{}",
                "created_at": utcnow(),
            }
            for seq in range(first, last + 1)
        ]
    ).execute()


def seqs(rows):
    return [row.seq for row in rows]


def test_events_after_a_cursor_are_the_logs_whether_kept_or_read(app):
    account = Account.create(name="x", currency="BOB", created_at=utcnow())
    add_events(account.id, 1, 5)
    recent = RecentEvents()
    assert seqs(recent.after(account.id, 0, read_log=False)) == [1, 2, 3, 4, 5]
    assert seqs(recent.after(account.id, 2, read_log=False)) == [3, 4, 5]  # kept
    assert recent.after(account.id, 5, read_log=False) == []  # nothing more announced
    add_events(account.id, 6, 7)
    assert recent.after(account.id, 5, read_log=False) == []  # not heard of yet
    assert seqs(recent.after(account.id, 5, read_log=True)) == [6, 7]  # the poll reads
    add_events(account.id, 8, 8)
    recent.announce(account.id, 8)
    assert seqs(recent.after(account.id, 7, read_log=False)) == [8]  # announced: read
    assert seqs(recent.after(account.id, 0, read_log=False)) == list(range(1, 9))


def test_a_full_batch_means_the_log_is_read_again_for_the_rest(app):
    account = Account.create(name="x", currency="BOB", created_at=utcnow())
    add_events(account.id, 1, EVENT_BATCH + 30)
    recent = RecentEvents()
    first = recent.after(account.id, 0, read_log=True)
    assert len(first) == EVENT_BATCH
    rest = recent.after(account.id, EVENT_BATCH, read_log=False)
    assert seqs(rest) == list(range(EVENT_BATCH + 1, EVENT_BATCH + 31))


def test_a_cursor_before_what_is_kept_reads_the_log_and_gaps_are_no_trouble(app):
    account = Account.create(name="x", currency="BOB", created_at=utcnow())
    add_events(account.id, 1, 3)
    add_events(account.id, 7, 9)  # 4 to 6 pruned by retention, say
    recent = RecentEvents(keep=4)
    assert seqs(recent.after(account.id, 8, read_log=True)) == [9]
    assert seqs(recent.after(account.id, 0, read_log=False)) == [1, 2, 3, 7, 8, 9]
    assert seqs(recent.after(account.id, 3, read_log=False)) == [7, 8, 9]
    assert seqs(recent.after(account.id, 5, read_log=False)) == [7, 8, 9]
