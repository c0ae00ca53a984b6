"""The schema a worker needs, checked at boot without taking a lock.

Booting reads the schema version (a catalog read); only a database that is behind (empty,
or a release behind) is migrated, under the migration lock. A database that cannot be
reached at boot does not stop the worker: gunicorn stops the whole server when a worker
fails to boot, so the worker starts anyway and answers 503 until the database is back.
"""

import threading
import time

import peewee

from models import connection, database
from models.migrations import migrate, pending

from .errors import Unavailable

# How often a worker that could not reach the database tries again (on a request).
RETRY_SECONDS = 1.0

# A connection refused, a server gone, a deadlock lost while migrating: all pass.
DATABASE_AWAY = (peewee.OperationalError, peewee.InterfaceError)


class SchemaGate:
    """Opens once this worker has found the database at its code's schema version."""

    def __init__(self, logger):
        self.logger = logger
        self.ready = False
        self.applied = []  # the migrations this process applied (the migrate command says so)
        self._trying = threading.Lock()
        self._next_try = 0.0

    def open(self):
        """Migrate what is pending (nothing, normally); False if the database is away."""
        try:
            with connection():
                if pending(database):
                    applied = migrate(database)
                    if applied:
                        self.applied += applied
                        self.logger.info("schema migrated to version %s", applied[-1])
        except DATABASE_AWAY as error:
            self._next_try = time.monotonic() + RETRY_SECONDS
            self.logger.warning("database unavailable (%s); answering 503 until it is back", error)
            return False
        self.ready = True
        return True

    def require(self):
        """Before a request that uses the database: pass, or raise 503 with Retry-After."""
        if self.ready:
            return
        if time.monotonic() >= self._next_try and self._trying.acquire(blocking=False):
            try:
                if self.open():
                    return
            finally:
                self._trying.release()
        raise Unavailable(
            "La base de datos no está disponible; reintente en breve",
            headers={"Retry-After": str(int(RETRY_SECONDS))},
        )
