"""Retention: the event log keeps ``QREVENTS_EVENT_RETENTION_DAYS`` of events.

A client whose Last-Event-ID is older resyncs over REST (``resumed: false``), so older
events serve no one. Expired stream tickets, stream cookies and refresh tokens go
too, and webhook attempts as old as the events. Deletion runs in small batches, each
its own short transaction: SQLite never yields to gevent, and a long delete would
freeze the worker. Running it on every worker at once is safe: a row deleted twice
is deleted once.
"""

from datetime import timedelta

from models import Event, RefreshToken, StreamTicket, WebhookDelivery, database

from ..clock import utcnow

BATCH = 500


def prune(retention_days, now=None):
    """Delete events and webhook attempts older than the retention, and expired tickets,
    stream cookies and refresh tokens; ``(events, tickets)``, the second counting those
    three kinds."""
    now = now or utcnow()
    oldest = now - timedelta(days=retention_days)
    events = _delete_in_batches(Event, Event.created_at < oldest)
    tickets = _delete_in_batches(StreamTicket, StreamTicket.expires_at < now)
    tickets += _delete_in_batches(RefreshToken, RefreshToken.expires_at < now)
    _delete_in_batches(WebhookDelivery, WebhookDelivery.created_at < oldest)
    return events, tickets


def _delete_in_batches(model, condition):
    deleted = 0
    while True:
        batch = model.select(model.id).where(condition).limit(BATCH)
        with database.atomic():
            count = model.delete().where(model.id.in_(batch)).execute()
        deleted += count
        if count < BATCH:
            return deleted
