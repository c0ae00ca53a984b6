"""Periodic business jobs of a serving worker (apart from delivery's own upkeep): QR
expiry, event retention and the bank round.

Expiry and retention run in every worker (each is one idempotent statement). The bank
round: every ``QREVENTS_BANK_SYNC_SECONDS`` each worker runs it, and for each linked
account the lease in its bank link row lets exactly one worker (of every host) ask the bank
in that round; the others skip the account.
"""

import logging
import random

import gevent

from models import database

from .services import bank_sync
from .services.qrs import expire_overdue
from .services.retention import prune

log = logging.getLogger(__name__)


class Scheduler:
    """The periodic jobs of one app, started once in a serving worker."""

    def __init__(self, app, settings):
        self.app = app
        self.settings = settings
        self._tasks = []

    @property
    def started(self):
        return bool(self._tasks)

    def start(self):
        if self._tasks:
            return
        settings = self.settings
        self._tasks = [
            gevent.spawn(self._every, settings.expiry_sweep_seconds, self.expire_qrs),
            gevent.spawn(self._every, settings.retention_sweep_seconds, self.prune_events),
            gevent.spawn(self._every, settings.bank_sync_seconds, self.bank_round, jitter=True),
        ]

    def expire_qrs(self):
        """Mark the QRs past their due date expired (each with its event)."""
        with database.connection_context():
            expire_overdue()

    def prune_events(self):
        """Delete the events older than the retention."""
        with database.connection_context():
            prune(self.settings.event_retention_days)

    def bank_round(self):
        """Recover the payments notifications missed and sync QR statuses, once per round."""
        seconds = self.settings.bank_sync_seconds
        bank_sync.reconcile(batch=self.settings.bank_sync_batch, lease_seconds=seconds)

    def _every(self, seconds, job, *, jitter=False):
        while True:
            # Workers started together would all wake at once: for the bank round the lease
            # decides who asks the bank, and this jitter spreads the attempts.
            gevent.sleep(seconds + (random.uniform(0, min(seconds, 1.0)) if jitter else 0))
            try:
                with self.app.app_context():
                    job()
            except Exception:
                log.exception("periodic job %s failed", job.__name__)

    def shutdown(self):
        for task in self._tasks:
            task.kill(block=False)
