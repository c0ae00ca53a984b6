"""Each worker's webhook deliverer: one greenlet per endpoint it holds, off every request path.

Woken by every committed event the worker's hub hears of (its own, from ``events_committed``
through the broker, and other workers' through Redis), and by a periodic poll (retries that
fell due, events whose announcement was lost). For each due endpoint it takes the lease
(a conditional UPDATE: at most one worker wins), then delivers the events after the
endpoint's cursor, in sequence order, one at a time, until none is left or one fails.

Contracts kept here:
- At least once. The cursor moves only after a 2xx, and is written to the database at
  least every ``FLUSH_SECONDS`` and before every pause: a worker killed mid-delivery
  leaves the cursor at or before the event in flight, which the next holder sends again.
- One deliverer per endpoint. The lease is extended at each flush and a flush comes before
  any attempt that starts more than ``FLUSH_SECONDS`` after the last; an attempt lasts at
  most the timeout, and the lease exceeds the timeout by 5 s at least (config).
- A change made by a user (PATCH, replay, DELETE) bumps ``updated_at``; the holder's next
  write, which requires the ``updated_at`` it read, fails and it lets the endpoint go, so
  it is taken up again as the user left it.
"""

import bisect
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

import gevent
import gevent.event
import gevent.pool

from models import Account, Event, PreparedQuery, WebhookDelivery, WebhookEndpoint, database
from models.statements import insert_many

from .. import metrics
from ..clock import utcnow
from ..secret_box import SecretUnreadable
from . import payload
from .transport import EndpointConnection

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25  # the longest an acknowledged delivery waits to be written down
EVENT_BATCH = 100
GAUGE_EVERY_SECONDS = 15.0
# Dispatches (a query) at most this often however many commits wake the dispatcher; endpoints
# already held are woken by each commit directly.
DISPATCH_SPACING = 0.02
# A caught-up endpoint is kept (lease, connection) this long in case more events come: taking
# it up again for each event would cost a lease, a read and a connection every time.
LINGER_SECONDS = 5.0


@dataclass
class _Held:
    """An endpoint as its holder read it when taking the lease."""

    id: int
    account_id: int
    url: str
    secret: str
    types: frozenset | None
    cursor_seq: int
    attempts: int
    failing_since: object
    updated_at: object
    owner: str


def backoff_seconds(attempts, first, largest):
    """The wait before retry number ``attempts``: doubling from ``first`` up to ``largest``,
    then jittered down to half, so endpoints failing together do not retry together."""
    delay = min(largest, first * 2 ** min(attempts - 1, 40))
    return delay * random.uniform(0.5, 1.0)


class WebhookDeliverer:
    """The dispatcher greenlet of one worker and its bounded pool of endpoint drains."""

    def __init__(self, app, settings, interest=None):
        self.app = app
        # The broker: a held endpoint's account is listened to, so its commits wake the run.
        self.interest = interest
        self.timeout = settings.webhook_timeout_seconds
        self.lease = timedelta(seconds=settings.webhook_lease_seconds)
        self.horizon = timedelta(seconds=settings.webhook_retry_horizon_seconds)
        self.retry_first = settings.webhook_retry_first_seconds
        self.retry_max = settings.webhook_retry_max_seconds
        self.poll_seconds = settings.webhook_poll_seconds
        self.allow_private = settings.webhook_allow_private
        self.pool = gevent.pool.Pool(settings.webhook_concurrency)
        self.wakeup = gevent.event.Event()
        self.committed = gevent.event.Event()  # replaced at each commit: wakes lingering runs
        self.active = set()  # endpoint ids this worker is draining now
        self.starved = False  # due endpoints wait for a slot: lingering runs give theirs up
        self._loop = None
        self._gauge_due = 0.0
        self.recent = RecentEvents()

    def note_events(self, account_id, events):
        """Committed events exist (hub observer). Runs in the committing or the listening
        greenlet: it only takes note and wakes the deliverer; the work is done elsewhere."""
        self.recent.announce(account_id, max(event.seq for event in events))
        self.wakeup.set()
        fired, self.committed = self.committed, gevent.event.Event()
        fired.set()

    def start(self):
        if self._loop is None:
            self._loop = gevent.spawn(self._run)

    def stop(self):
        """Stop delivering; an attempt cut here is sent again by the next holder."""
        if self._loop is not None:
            self._loop.kill(block=False)
        self.pool.kill(block=False)

    def _run(self):
        while True:
            self.wakeup.wait(self.poll_seconds)
            self.wakeup.clear()
            try:
                with self.app.app_context():
                    self._dispatch()
                    self._update_gauge()
            except Exception:
                log.exception("webhook dispatch failed")
                gevent.sleep(self.poll_seconds)
            gevent.sleep(DISPATCH_SPACING)

    def _dispatch(self):
        free = self.pool.free_count()
        with database.connection_context():
            now = utcnow()
            wanted = max(free, 1) + len(self.active)
            due = [i for i in _due_endpoints(now, wanted) if i not in self.active]
            self.starved = len(due) > free
            held = [h for h in (_take_lease(i, now, self.lease) for i in due[:free]) if h]
        for endpoint in held:
            self.active.add(endpoint.id)
            self.pool.spawn(self._drain, endpoint)

    def _drain(self, endpoint):
        if self.interest is not None:
            self.interest.watch(endpoint.account_id)
        try:
            with self.app.app_context():
                _EndpointRun(self, endpoint).run()
        except Exception:
            log.exception("webhook delivery to endpoint %s failed", endpoint.id)
        finally:
            if self.interest is not None:
                self.interest.unwatch(endpoint.account_id)
            self.active.discard(endpoint.id)
            self.wakeup.set()  # events may have come while this endpoint was held

    def _update_gauge(self):
        if time.monotonic() < self._gauge_due:
            return
        self._gauge_due = time.monotonic() + GAUGE_EVERY_SECONDS
        with database.connection_context():
            disabled = WebhookEndpoint.select().where(~WebhookEndpoint.enabled).count()
        metrics.WEBHOOK_ENDPOINTS_DISABLED.set(disabled)


# Asked after every commit, endpoints or not: Peewee took 0.37 ms to build its SQL each time
# (a profile of payments with 100 streams per account put the whole ask at 15 % of the worker).
_DUE_ENDPOINTS = PreparedQuery(
    lambda now, also_now, limit: (
        WebhookEndpoint.select(WebhookEndpoint.id)
        .join(Account)
        .where(
            WebhookEndpoint.enabled
            & (WebhookEndpoint.cursor_seq < Account.event_seq)
            & (WebhookEndpoint.next_attempt_at.is_null() | (WebhookEndpoint.next_attempt_at <= now))
            & (WebhookEndpoint.leased_until.is_null() | (WebhookEndpoint.leased_until < also_now))
        )
        .order_by(WebhookEndpoint.next_attempt_at.asc(nulls="first"), WebhookEndpoint.id)
        .limit(limit)
    )
)


def _due_endpoints(now, limit):
    """Enabled endpoints behind their account's log, not waiting to retry, not held."""
    return [endpoint_id for (endpoint_id,) in _DUE_ENDPOINTS.rows(now, now, limit)]


def _take_lease(endpoint_id, now, lease):
    """The endpoint, if this call won its lease (a conditional UPDATE: one winner), else None."""
    owner = secrets.token_hex(16)
    won = (
        WebhookEndpoint.update(leased_until=now + lease, lease_owner=owner)
        .where(
            (WebhookEndpoint.id == endpoint_id)
            & WebhookEndpoint.enabled
            & (WebhookEndpoint.leased_until.is_null() | (WebhookEndpoint.leased_until < now))
        )
        .execute()
    )
    if won != 1:
        return None
    row = WebhookEndpoint.get_by_id(endpoint_id)
    try:
        secret = payload.signing_secret(row.secret)
    except SecretUnreadable:
        # QREVENTS_SECRET_KEY changed: nothing can be signed for it until it is registered
        # again. Disabled with the reason shown, instead of failing every round.
        log.error("webhook endpoint %s: its secret cannot be decrypted; disabled", row.id)
        WebhookEndpoint.update(
            enabled=False,
            disabled_reason="secret_unreadable",
            disabled_at=now,
            last_error="el secreto no se puede descifrar con QREVENTS_SECRET_KEY; "
            "registre el webhook de nuevo",
            leased_until=None,
            lease_owner=None,
        ).where(WebhookEndpoint.id == row.id).execute()
        return None
    return _Held(
        id=row.id,
        account_id=row.account_id,
        url=row.url,
        secret=secret,
        types=frozenset(json.loads(row.events)) if row.events else None,
        cursor_seq=row.cursor_seq,
        attempts=row.attempts,
        failing_since=row.failing_since,
        updated_at=row.updated_at,
        owner=owner,
    )


class RecentEvents:
    """The latest events of each account, read from the log once and shared by every run of
    this worker: ten endpoints of one account cost one read per new event, not ten.

    Per account it keeps the log's rows after some sequence number ``since``, all of them up
    to the last kept (a read of everything after a sequence number returns every row there
    is: the log hands out sequence numbers in commit order), and the highest sequence number
    announced to this worker.
    """

    def __init__(self, keep=2 * EVENT_BATCH, accounts=100):
        # Bounded: ``accounts`` accounts of ``keep`` rows each (the least recently read go).
        self.keep = keep
        self.accounts = accounts
        self.kept = OrderedDict()  # account_id -> (since, rows seq ascending, log ends there)
        self.announced = {}  # account_id -> highest seq this worker heard of

    def announce(self, account_id, seq):
        if seq > self.announced.get(account_id, 0):
            self.announced[account_id] = seq

    def after(self, account_id, cursor, *, read_log):
        """Up to ``EVENT_BATCH`` events after ``cursor``, oldest first. The log is read when
        asked to, or when the kept rows may not reach the log's end or what was announced."""
        since, rows, at_end = self.kept.get(account_id, (None, [], False))
        if account_id in self.kept:
            self.kept.move_to_end(account_id)
        covered = since is not None and since <= cursor
        last = rows[-1].seq if rows else since
        if covered and cursor < last:
            start = bisect.bisect_right(rows, cursor, key=_seq)
            return rows[start : start + EVENT_BATCH]
        if covered and at_end and not read_log and self.announced.get(account_id, 0) <= last:
            return []  # caught up with the log as read and everything heard of since
        fresh = _log_after(account_id, cursor)
        if covered and cursor == last:
            rows = rows + fresh  # continues the kept rows
        else:
            since, rows = cursor, fresh
        if len(rows) > self.keep:
            since, rows = rows[-self.keep - 1].seq, rows[-self.keep :]
        self.kept[account_id] = (since, rows, len(fresh) < EVENT_BATCH)
        self.kept.move_to_end(account_id)
        while len(self.kept) > self.accounts:
            self.kept.popitem(last=False)
        return fresh


def _seq(row):
    return row.seq


def _log_after(account_id, cursor):
    with database.connection_context():
        return list(
            Event.select(Event.seq, Event.event_type, Event.event_id, Event.data, Event.created_at)
            .where((Event.account == account_id) & (Event.seq > cursor))
            .order_by(Event.seq)
            .limit(EVENT_BATCH)
        )


def _exists(endpoint_id):
    return WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id).exists()


class _EndpointRun:
    """One holder's pass over one endpoint: deliver until caught up, failed or let go."""

    def __init__(self, deliverer, endpoint):
        self.deliverer = deliverer
        self.endpoint = endpoint
        self.cursor = endpoint.cursor_seq
        self.attempts = endpoint.attempts
        self.failing_since = endpoint.failing_since
        self.written_cursor = endpoint.cursor_seq
        self.log_rows = []
        self.flushed_at = time.monotonic()

    def run(self):
        endpoint = self.endpoint
        connection = EndpointConnection(
            endpoint.url,
            allow_private=self.deliverer.allow_private,
            timeout=self.deliverer.timeout,
        )
        idle_since, look_in_log = None, True
        try:
            while True:
                events = self.deliverer.recent.after(
                    endpoint.account_id, self.cursor, read_log=look_in_log
                )
                look_in_log = False
                if not events:
                    idle_since = idle_since or time.monotonic()
                    lingered = time.monotonic() - idle_since
                    if lingered >= LINGER_SECONDS or self.deliverer.starved:
                        self._write(release=True)
                        return
                    if not self._write(renew_only=True):
                        return
                    # Woken by a commit: the shared recent events know of it. Not woken: the
                    # log is read, for events no announcement reached this worker about.
                    look_in_log = not self.deliverer.committed.wait(self.deliverer.poll_seconds)
                    continue
                if idle_since is not None and not self._write():
                    return  # idle a while: make sure no user changed it before sending
                idle_since = None
                for event in events:
                    if endpoint.types is not None and event.event_type not in endpoint.types:
                        self.cursor = event.seq  # not wanted here: passed over, never sent
                        continue
                    if time.monotonic() - self.flushed_at >= FLUSH_SECONDS and not self._write():
                        return
                    if not self._deliver(connection, event):
                        return
        except gevent.GreenletExit:
            self._write(release=True)  # stopping: another worker takes it up at once
            raise
        finally:
            connection.close()

    def _deliver(self, connection, event):
        """One attempt; True if it succeeded (the cursor moved), else the failure is written."""
        endpoint = self.endpoint
        delivery_id = payload.new_delivery_id()
        body = payload.body(event, endpoint.account_id)
        headers = payload.headers(body, endpoint.secret, event.event_id, delivery_id)
        attempt = connection.post(body, headers)
        self.attempts += 1
        now = utcnow()
        metrics.WEBHOOK_DELIVERIES.labels(attempt.outcome).inc()
        self.log_rows.append(
            {
                "endpoint": endpoint.id,
                "delivery_id": delivery_id,
                "event_id": event.event_id,
                "event_seq": event.seq,
                "attempt": self.attempts,
                "status_code": attempt.status,
                "latency_ms": attempt.latency_ms,
                "error": attempt.error,
                "succeeded": attempt.succeeded,
                "created_at": now,
            }
        )
        if attempt.succeeded:
            metrics.WEBHOOK_LAG.observe(max(0.0, (now - event.created_at).total_seconds()))
            self.cursor, self.attempts, self.failing_since = event.seq, 0, None
            return True
        self._write_failure(now, attempt.error)
        return False

    def _write(self, *, release=False, renew_only=False):
        """Write the cursor and the attempts since the last write, and extend the lease (or
        let it go); False if the endpoint is no longer this run's to deliver.

        ``renew_only``: skip the write while the lease is young and nothing is pending.
        """
        if renew_only and not self.log_rows and self.cursor == self.written_cursor:
            if time.monotonic() - self.flushed_at < self.deliverer.lease.total_seconds() / 4:
                return True
        now = utcnow()
        values = {
            WebhookEndpoint.cursor_seq: self.cursor,
            WebhookEndpoint.attempts: self.attempts,
            WebhookEndpoint.failing_since: self.failing_since,
            WebhookEndpoint.leased_until: None if release else now + self.deliverer.lease,
        }
        if self.attempts == 0:
            values[WebhookEndpoint.last_error] = None
        if release:
            values[WebhookEndpoint.lease_owner] = None
        kept = self._conditional_update(values)
        self.flushed_at, self.written_cursor = time.monotonic(), self.cursor
        return kept and not release

    def _write_failure(self, now, error):
        """Record a failed attempt: retry later with backoff, or disable past the horizon."""
        self.failing_since = self.failing_since or now
        values = {
            WebhookEndpoint.cursor_seq: self.cursor,
            WebhookEndpoint.attempts: self.attempts,
            WebhookEndpoint.failing_since: self.failing_since,
            WebhookEndpoint.last_error: error,
            WebhookEndpoint.leased_until: None,
            WebhookEndpoint.lease_owner: None,
        }
        if now - self.failing_since >= self.deliverer.horizon:
            values[WebhookEndpoint.enabled] = False
            values[WebhookEndpoint.disabled_reason] = "retries_exhausted"
            values[WebhookEndpoint.disabled_at] = now
            values[WebhookEndpoint.next_attempt_at] = None
        else:
            wait = backoff_seconds(
                self.attempts, self.deliverer.retry_first, self.deliverer.retry_max
            )
            values[WebhookEndpoint.next_attempt_at] = now + timedelta(seconds=wait)
        if self._conditional_update(values) and not values.get(WebhookEndpoint.enabled, True):
            log.warning("webhook endpoint %s disabled: %s", self.endpoint.id, error)
            metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()

    def _conditional_update(self, values):
        """Apply ``values`` and the pending attempt log in one transaction, if the lease is
        still this run's and no user changed the endpoint since; the log is kept either way."""
        endpoint = self.endpoint
        with database.connection_context(), database.atomic():
            kept = (
                WebhookEndpoint.update(values)
                .where(
                    (WebhookEndpoint.id == endpoint.id)
                    & (WebhookEndpoint.lease_owner == endpoint.owner)
                    & (WebhookEndpoint.updated_at == endpoint.updated_at)
                )
                .execute()
            ) == 1
            # A user's change does not erase the attempts; a deletion took their endpoint.
            if self.log_rows and (kept or _exists(endpoint.id)):
                insert_many(WebhookDelivery, self.log_rows)
            self.log_rows = []
        return kept
