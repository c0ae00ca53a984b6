"""Periodic business jobs of a serving worker (apart from delivery's own upkeep).

The bank round: every ``QREVENTS_BANK_SYNC_SECONDS`` each worker runs it, and for each
linked account the lease in its bank link row lets exactly one worker (of every host) ask
the bank in that round; the others skip the account.
"""

import logging
import random

import gevent

from .services import bank_sync

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
        self._tasks = [
            gevent.spawn(self._every, self.settings["BANK_SYNC_SECONDS"], self.bank_round)
        ]

    def bank_round(self):
        """Recover the payments notifications missed and sync QR statuses, once per round."""
        seconds = self.settings["BANK_SYNC_SECONDS"]
        bank_sync.reconcile(batch=self.settings["BANK_SYNC_BATCH"], lease_seconds=seconds)

    def _every(self, seconds, job):
        while True:
            # Workers started together would all wake at once: the lease decides who asks
            # the bank, and this jitter spreads the attempts.
            gevent.sleep(seconds + random.uniform(0, min(seconds, 1.0)))
            try:
                with self.app.app_context():
                    job()
            except Exception:
                log.exception("periodic job %s failed", job.__name__)

    def shutdown(self):
        for task in self._tasks:
            task.kill(block=False)
