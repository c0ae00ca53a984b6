"""Wiring of the delivery side: signals -> broker -> hub, the webhook deliverer, and
delivery's own upkeep (the hub's reconciliation). Business jobs (QR expiry, retention, the
bank round) are the scheduler's (``qrevents.scheduler``).

Built once per app by the factory and kept in ``app.extensions["qrevents"]``.
"""

import logging

import gevent

from models import connection, database

from .broker import LocalBroker
from .hub import AccountHub
from .services.accounts import revoked_key_ids
from .services.eventlog import current_seqs, events_between
from .signals import api_key_revoked, events_committed
from .webhooks.deliverer import WebhookDeliverer

log = logging.getLogger(__name__)


def _load_seqs(account_ids):
    # Called by the stream handshake inside its connection, and by reconciliation alone.
    with connection():
        return current_seqs(account_ids)


def _load_events(account_id, after_seq, upto_seq):
    with database.connection_context():
        return events_between(account_id, after_seq, upto_seq)


def _revoked_keys(key_ids):
    with database.connection_context():
        return revoked_key_ids(key_ids)


class Delivery:
    """The hub and broker of one app, and the greenlets that keep them honest."""

    def __init__(self, app, settings):
        self.app = app
        self.settings = settings
        self.hub = AccountHub(
            load_seqs=_load_seqs,
            load_events=_load_events,
            queue_size=settings.stream_queue_size,
            write_timeout=settings.stream_write_timeout_seconds,
        )
        self.broker = self._make_broker(settings)
        events_committed.connect(self._on_events_committed, sender=app, weak=False)
        api_key_revoked.connect(self._on_api_key_revoked, sender=app, weak=False)
        self._tasks = []
        self.webhooks = WebhookDeliverer(app, settings, interest=self.broker)
        self.hub.observers.append(self.webhooks.note_events)

    def _make_broker(self, settings):
        if settings.redis_url:
            from .redis_broker import RedisBroker

            return RedisBroker(
                self.hub,
                settings.redis_url,
                prefix=settings.redis_prefix,
                revoked_keys=_revoked_keys,
                publish_queue_size=settings.redis_publish_queue_size,
                cluster=settings.redis_cluster,
            )
        return LocalBroker(self.hub)

    def _on_events_committed(self, sender, account_id, events):
        self.broker.publish(account_id, events)

    def _on_api_key_revoked(self, sender, api_key_id):
        self.broker.revoke(api_key_id)

    @property
    def started(self):
        return bool(self._tasks)

    def start(self):
        """Start the broker listener, the webhook deliverer and the hub's reconciliation
        (once, in a serving worker)."""
        if self._tasks:
            return
        self.broker.start()
        self.webhooks.start()
        self._tasks = [
            gevent.spawn(self._every, self.settings.reconcile_seconds, self.broker.reconcile),
        ]

    def _every(self, seconds, task):
        while True:
            gevent.sleep(seconds)
            try:
                with self.app.app_context():
                    task()
            except Exception:
                log.exception("periodic task %s failed", task.__name__)

    def shutdown(self):
        """Graceful stop: streams say ``server_shutdown`` and end; clients resume elsewhere."""
        for task in self._tasks:
            task.kill(block=False)
        self.webhooks.stop()
        self.hub.shutdown()
