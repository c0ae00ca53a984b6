"""The event log: durable events written in the transaction of the change they describe.

``account_change`` is the one way to change an account's state: it takes the account's
write lock, lets the caller record events (each gets the next per-account sequence
number), commits, and only then announces the events. A rolled-back change announces
nothing; the lock makes sequence order the commit order.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from peewee import fn

from models import Account, Event, PreparedQuery, database
from models.statements import get_row, insert_many, update

from .. import metrics
from ..clock import utcnow
from ..events import DURABLE_ID, EventRecord, latest_time_of_durable_id
from ..exact_json import dumps
from ..signals import events_committed

# The account columns a change may move; the rest of the row is not written.
CHANGING_COLUMNS = (
    Account.balance_cents,
    Account.available_cents,
    Account.event_seq,
    Account.movement_seq,
)


class AccountChange:
    """The account row under lock, and the events recorded in this transaction."""

    def __init__(self, account):
        self.account = account
        self.events = []
        self.event_types = []
        self._rows = []

    def record(self, event):
        """Add ``(type, id, data)`` (a builder's in ``events.py``) to the log with the next
        sequence number. Data only: its wire forms are made where it is delivered."""
        event_type, event_id, data = event
        self.account.event_seq += 1
        data_json = dumps(data)
        self._rows.append(
            {
                "account": self.account.id,
                "seq": self.account.event_seq,
                "event_type": event_type,
                "event_id": event_id,
                "data": data_json,
                "created_at": utcnow(),
            }
        )
        self.event_types.append(event_type)
        self.events.append(
            EventRecord(self.account.id, self.account.event_seq, event_type, event_id, data_json)
        )

    def flush(self):
        """Write the recorded events (one INSERT) and the account columns a change moves."""
        if self._rows:
            insert_many(Event, self._rows)
        update(self.account, CHANGING_COLUMNS)


def lock_account(account_id):
    """The account row, write-locked until commit (SQLite holds the lock since BEGIN)."""
    account = get_row(Account, Account.id, account_id, lock=True)
    if account is None:
        raise Account.DoesNotExist(f"no account {account_id}")
    return account


@contextmanager
def account_change(account_id):
    """One transaction on one account; its events are announced after it commits."""
    with database.atomic():
        change = AccountChange(lock_account(account_id))
        yield change
        change.flush()
    metrics.count_written(change.event_types)
    announce(change.events)


def announce(events):
    """Tell the hub (through the signal) about committed events; never fails the caller."""
    if not events:
        return
    app = current_app._get_current_object()
    try:
        events_committed.send(app, account_id=events[0].account_id, events=events)
    except Exception:
        # The events are committed and in the log; the hub's reconciliation delivers them.
        app.logger.exception("announcing events of account %s failed", events[0].account_id)


_EVENTS_BETWEEN = PreparedQuery(
    lambda account_id, after_seq, upto_seq, limit: (
        Event.select(Event.seq, Event.event_type, Event.event_id, Event.data)
        .where((Event.account == account_id) & (Event.seq > after_seq) & (Event.seq <= upto_seq))
        .order_by(Event.seq)
        .limit(limit)
    )
)


def events_between(account_id, after_seq, upto_seq, limit=500):
    """Committed events with ``after_seq < seq <= upto_seq``, oldest first, at most ``limit``
    (``EventRecord``: the same records as announced at commit)."""
    return [
        EventRecord(account_id, seq, event_type, event_id, data)
        for seq, event_type, event_id, data in _EVENTS_BETWEEN.rows(
            account_id, after_seq, upto_seq, limit
        )
    ]


_EVENT_BY_ID = PreparedQuery(
    lambda account_id, event_id: Event.select(Event.seq, Event.created_at).where(
        (Event.account == account_id) & (Event.event_id == event_id)
    )
)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a stream starts: after ``seq`` (None: live only), and, when the client gave a
    Last-Event-ID that cannot be resumed, why (``resync``: "unknown" or "expired")."""

    seq: int | None = None
    resync: str | None = None


def resume_point(account_id, event_id, retention_days):
    """The resume point of a client's Last-Event-ID (``event_id``, maybe None).

    ``expired``: the id is in the log but older than the retention, or it has the shape of
    our ids, no time in it is within the retention, and this account's log has lost events
    to retention (its first retained sequence number is past 1): it was most likely one of
    them. Anything else not found is ``unknown`` (garbage, another account's, another
    deployment's, or never written).
    """
    if not event_id:
        return ResumePoint()
    cutoff = utcnow() - timedelta(days=retention_days)
    row = None if len(event_id) > 128 else next(iter(_EVENT_BY_ID.rows(account_id, event_id)), None)
    if row is not None:
        seq, created_at = row
        if Event.created_at.python_value(created_at) < cutoff:
            return ResumePoint(resync="expired")
        return ResumePoint(seq=seq)
    if not DURABLE_ID.match(event_id):
        return ResumePoint(resync="unknown")
    written_by = latest_time_of_durable_id(event_id)
    if written_by is not None and written_by >= cutoff:
        return ResumePoint(resync="unknown")
    return ResumePoint(resync="expired" if _log_was_pruned(account_id) else "unknown")


def _log_was_pruned(account_id):
    """Whether retention has deleted events of this account (sequence numbers start at 1)."""
    first = Event.select(fn.MIN(Event.seq)).where(Event.account == account_id).scalar()
    if first is not None:
        return first > 1
    return Account.select(Account.event_seq).where(Account.id == account_id).scalar() > 0


def current_seqs(account_ids):
    """The last committed sequence number of each account, as ``{account_id: seq}``."""
    rows = Account.select(Account.id, Account.event_seq).where(Account.id.in_(list(account_ids)))
    return {account_id: seq for account_id, seq in rows.tuples()}
