"""Each worker's webhook deliverer: one greenlet per endpoint it holds, off every request path.

Woken by ``events_committed`` (events this worker committed) and by a periodic poll (events
other workers committed, retries that fell due). For each due endpoint it takes the lease
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

import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import gevent
import gevent.event
import gevent.pool

from models import Account, Event, WebhookDelivery, WebhookEndpoint, database
from models.statements import insert_many

from .. import metrics
from ..clock import utcnow
from ..signals import events_committed
from . import payload
from .transport import new_session, post

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25  # the longest an acknowledged delivery waits to be written down
EVENT_BATCH = 100
GAUGE_EVERY_SECONDS = 15.0


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

    def __init__(self, app, settings):
        self.app = app
        self.timeout = settings["WEBHOOK_TIMEOUT_SECONDS"]
        self.lease = timedelta(seconds=settings["WEBHOOK_LEASE_SECONDS"])
        self.horizon = timedelta(seconds=settings["WEBHOOK_RETRY_HORIZON_SECONDS"])
        self.retry_first = settings["WEBHOOK_RETRY_FIRST_SECONDS"]
        self.retry_max = settings["WEBHOOK_RETRY_MAX_SECONDS"]
        self.poll_seconds = settings["WEBHOOK_POLL_SECONDS"]
        self.pool = gevent.pool.Pool(settings["WEBHOOK_CONCURRENCY"])
        self.session = new_session(
            allow_private=settings["WEBHOOK_ALLOW_PRIVATE"],
            pool_size=settings["WEBHOOK_CONCURRENCY"],
        )
        self.wakeup = gevent.event.Event()
        self.active = set()  # endpoint ids this worker is draining now
        self._loop = None
        self._gauge_due = 0.0
        events_committed.connect(self._on_events_committed, sender=app, weak=False)

    def _on_events_committed(self, sender, **kwargs):
        # Runs in the payment's greenlet: only a flag is set, the work is done elsewhere.
        self.wakeup.set()

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

    def _dispatch(self):
        free = self.pool.free_count()
        if free <= 0:
            return
        with database.connection_context():
            now = utcnow()
            due = [i for i in _due_endpoints(now, free + len(self.active)) if i not in self.active]
            held = [h for h in (_take_lease(i, now, self.lease) for i in due[:free]) if h]
        for endpoint in held:
            self.active.add(endpoint.id)
            self.pool.spawn(self._drain, endpoint)

    def _drain(self, endpoint):
        try:
            with self.app.app_context():
                _EndpointRun(self, endpoint).run()
        except Exception:
            log.exception("webhook delivery to endpoint %s failed", endpoint.id)
        finally:
            self.active.discard(endpoint.id)
            self.wakeup.set()  # events may have come while this endpoint was held

    def _update_gauge(self):
        if time.monotonic() < self._gauge_due:
            return
        self._gauge_due = time.monotonic() + GAUGE_EVERY_SECONDS
        with database.connection_context():
            disabled = WebhookEndpoint.select().where(~WebhookEndpoint.enabled).count()
        metrics.WEBHOOK_ENDPOINTS_DISABLED.set(disabled)


def _due_endpoints(now, limit):
    """Enabled endpoints behind their account's log, not waiting to retry, not held."""
    query = (
        WebhookEndpoint.select(WebhookEndpoint.id)
        .join(Account)
        .where(
            WebhookEndpoint.enabled
            & (WebhookEndpoint.cursor_seq < Account.event_seq)
            & (WebhookEndpoint.next_attempt_at.is_null() | (WebhookEndpoint.next_attempt_at <= now))
            & (WebhookEndpoint.leased_until.is_null() | (WebhookEndpoint.leased_until < now))
        )
        .order_by(WebhookEndpoint.next_attempt_at.asc(nulls="first"), WebhookEndpoint.id)
        .limit(limit)
    )
    return [endpoint_id for (endpoint_id,) in query.tuples()]


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
    return _Held(
        id=row.id,
        account_id=row.account_id,
        url=row.url,
        secret=payload.signing_secret(row.secret),
        types=frozenset(json.loads(row.events)) if row.events else None,
        cursor_seq=row.cursor_seq,
        attempts=row.attempts,
        failing_since=row.failing_since,
        updated_at=row.updated_at,
        owner=owner,
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
        self.log_rows = []
        self.flushed_at = time.monotonic()

    def run(self):
        endpoint = self.endpoint
        while True:
            with database.connection_context():
                events = list(
                    Event.select(
                        Event.seq, Event.event_type, Event.event_id, Event.data, Event.created_at
                    )
                    .where((Event.account == endpoint.account_id) & (Event.seq > self.cursor))
                    .order_by(Event.seq)
                    .limit(EVENT_BATCH)
                )
            if not events:
                self._write(release=True)
                return
            for event in events:
                if endpoint.types is not None and event.event_type not in endpoint.types:
                    self.cursor = event.seq  # not wanted here: passed over, never sent
                    continue
                if time.monotonic() - self.flushed_at >= FLUSH_SECONDS and not self._write():
                    return
                if not self._deliver(event):
                    return
            if not self._write():
                return

    def _deliver(self, event):
        """One attempt; True if it succeeded (the cursor moved), else the failure is written."""
        endpoint = self.endpoint
        delivery_id = payload.new_delivery_id()
        body = payload.body(event, endpoint.account_id)
        headers = payload.headers(body, endpoint.secret, event.event_id, delivery_id)
        attempt = post(self.deliverer.session, endpoint.url, body, headers, self.deliverer.timeout)
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

    def _write(self, *, release=False):
        """Write the cursor and the attempts since the last write, and extend the lease (or
        let it go); False if the endpoint is no longer this run's to deliver."""
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
        self.flushed_at = time.monotonic()
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
