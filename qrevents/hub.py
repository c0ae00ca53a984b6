"""AccountHub: this worker's open streams, grouped by account, fed in sequence order.

Events reach the hub from a broker (in-process, or Redis) after their transaction commits,
possibly late, twice, or out of order. Each account channel keeps the last sequence number it
handed out and delivers strictly the next one; a gap is filled from the event log. So every
stream of an account sees that account's events once, in order, whatever the broker did.

Delivery hands each committed event (an ``EventRecord``) to every subscription of its account:
no database, JSON or auth work per delivery. How it reaches the client (written at once, or
queued for the stream's greenlet) is the subscription's business (``stream.Subscription``).
"""

import logging
import time

import gevent
from gevent.event import Event as Signal

from . import metrics
from .stream import Subscription

log = logging.getLogger(__name__)


class AccountChannel:
    """The streams of one account in this worker and where its sequence stands."""

    __slots__ = ("account_id", "subscribers", "last_seq", "pending", "ready", "repairing")

    def __init__(self, account_id):
        self.account_id = account_id
        self.subscribers = set()
        self.last_seq = None  # None while the starting point is being read
        self.pending = {}  # seq -> (event, when it arrived), received ahead of a gap
        self.ready = Signal()
        self.repairing = False


class AccountHub:
    """Per-account fan-out inside one worker.

    ``load_seqs(account_ids) -> {id: seq}`` and ``load_events(account_id, after, upto)``
    read the event log; the hub calls them only to start a channel and to fill gaps.
    ``queue_size`` and ``write_timeout`` bound every stream of the worker: events it may fall
    behind, and how long one write to its client may take (``stream.EventStream``).
    """

    def __init__(self, *, load_seqs, load_events, queue_size, write_timeout=10.0):
        self.load_seqs = load_seqs
        self.load_events = load_events
        self.queue_size = queue_size
        self.write_timeout = write_timeout
        self.channels = {}
        self.closed = False
        # Told when this worker starts and stops serving an account (``watch(account_id)``,
        # ``unwatch(account_id)``): the Redis broker listens only to the accounts served.
        self.interest = None
        # Told of every delivery, streams or none (the webhook deliverer): ``(account_id,
        # events)``, synchronously, so it must only take note.
        self.observers = []

    # -- streams ---------------------------------------------------------------------------

    def subscribe(self, account_id, api_key_id=None, after=None, slot=None):
        """A new subscription; its ``start_seq`` is the last event it will not get live.

        ``after``: the last event the client already has (its Last-Event-ID). It may be ahead
        of this worker, whose channel has not yet heard of events another worker committed
        (a Redis outage): live frames up to it are then not sent again.
        ``slot`` (a broker's ``take_stream_slot``) is released when the subscription ends,
        or now if it cannot start."""
        try:
            return self._subscribe(account_id, api_key_id, after, slot)
        except BaseException:
            if slot is not None:
                slot.release()
            raise

    def _subscribe(self, account_id, api_key_id, after, slot):
        sub = Subscription(account_id, api_key_id, self.queue_size, slot)
        channel = self.channels.get(account_id)
        if channel is None:
            channel = self.channels[account_id] = AccountChannel(account_id)
            if self.interest is not None:
                self.interest.watch(account_id)
            self._start(channel)
        else:
            channel.ready.wait()
            if channel.last_seq is None:  # its start failed; try once more as its owner
                return self._subscribe(account_id, api_key_id, after, slot)
        sub.start_seq = channel.last_seq if after is None else max(channel.last_seq, after)
        channel.subscribers.add(sub)
        return sub

    def _start(self, channel):
        try:
            seq = self.load_seqs([channel.account_id]).get(channel.account_id, 0)
        except Exception:
            self._drop(channel)
            channel.ready.set()
            raise
        channel.last_seq = seq
        channel.ready.set()
        self._drain(channel)

    def unsubscribe(self, sub):
        if sub.slot is not None:
            sub.slot.release()
            sub.slot = None
        channel = self.channels.get(sub.account_id)
        if channel is None:
            return
        channel.subscribers.discard(sub)
        if not channel.subscribers and channel.last_seq is not None:
            self._drop(channel)

    def _drop(self, channel):
        if self.channels.get(channel.account_id) is channel:
            del self.channels[channel.account_id]
            if self.interest is not None:
                self.interest.unwatch(channel.account_id)

    def stream_counts(self):
        """``{account_id: open streams}`` in this worker."""
        return {
            account_id: len(channel.subscribers)
            for account_id, channel in self.channels.items()
            if channel.subscribers
        }

    def count(self, account_id):
        channel = self.channels.get(account_id)
        return len(channel.subscribers) if channel else 0

    def close_key_streams(self, api_key_id, reason="key_revoked"):
        for channel in list(self.channels.values()):
            for sub in channel.subscribers:
                if sub.api_key_id == api_key_id:
                    sub.close(reason)

    def shutdown(self, reason="server_shutdown"):
        """End every stream (they flush what they hold, then say why) and refuse new ones."""
        self.closed = True
        for channel in list(self.channels.values()):
            for sub in channel.subscribers:
                sub.close(reason)

    # -- events ----------------------------------------------------------------------------

    def deliver(self, account_id, events):
        """Committed events of an account, from the broker, in any order, maybe repeated."""
        for observe in self.observers:
            observe(account_id, events)
        channel = self.channels.get(account_id)
        if channel is None:
            return
        arrived = time.monotonic()
        for event in events:
            if channel.last_seq is None or event.seq > channel.last_seq:
                channel.pending[event.seq] = (event, arrived)
        self._drain(channel)

    def _drain(self, channel):
        if channel.last_seq is None:
            return
        self._advance(channel)
        if channel.pending:
            self._repair(channel, max(channel.pending))

    @staticmethod
    def _advance(channel):
        """Hand every contiguous pending event to the subscribers, in sequence order."""
        for seq in [seq for seq in channel.pending if seq <= channel.last_seq]:
            del channel.pending[seq]
        handed = 0
        while channel.last_seq + 1 in channel.pending:
            channel.last_seq += 1
            event, arrived = channel.pending.pop(channel.last_seq)
            written = False
            for sub in channel.subscribers:
                if channel.last_seq > sub.start_seq:
                    written |= sub.push(event)
            handed += len(channel.subscribers)
            if written:
                # Sent on every attached stream by now; queued frames count when flushed.
                metrics.COMMIT_TO_WRITE.observe(time.monotonic() - arrived)
        if handed:
            metrics.FRAMES_DELIVERED.inc(handed)

    def _repair(self, channel, upto):
        """Fill ``(last_seq, upto]`` from the log in a greenlet of its own (one per channel)."""
        if channel.repairing:
            return
        channel.repairing = True
        gevent.spawn(self._fill_gap, channel, upto)

    def _fill_gap(self, channel, upto):
        start = channel.last_seq
        try:
            while channel.last_seq < upto and self.channels.get(channel.account_id) is channel:
                before = channel.last_seq
                events = self.load_events(channel.account_id, before, upto)
                for event in events:
                    if event.seq > channel.last_seq:
                        channel.pending.setdefault(event.seq, (event, time.monotonic()))
                self._advance(channel)
                if channel.last_seq == before:
                    log.error(
                        "event log of account %s lacks seq %s", channel.account_id, before + 1
                    )
                    break
                if channel.pending:
                    upto = max(upto, max(channel.pending))
        except Exception:
            log.exception("gap repair of account %s failed", channel.account_id)
        finally:
            channel.repairing = False
            if channel.last_seq > start:
                metrics.GAPS_REPAIRED.inc()

    def catch_up(self, account_id, seq):
        """The account's log reaches ``seq`` (a broker says so): fill in what is missing."""
        channel = self.channels.get(account_id)
        if channel is not None and channel.last_seq is not None and seq > channel.last_seq:
            self._repair(channel, seq)

    def reconcile(self):
        """Catch up every channel with the log: events whose announcement never came."""
        started = {a: c for a, c in self.channels.items() if c.last_seq is not None}
        if not started:
            return
        for account_id, seq in self.load_seqs(list(started)).items():
            channel = started[account_id]
            if seq > channel.last_seq and self.channels.get(account_id) is channel:
                self._repair(channel, seq)
