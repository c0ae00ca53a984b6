"""The database binding: one proxy, bound late from a URL, no implicit connections.

Every model binds to ``database``; ``bind_database`` picks SQLite or PostgreSQL from
``QREVENTS_DATABASE_URL``. ``autoconnect`` is off on purpose: a query outside an explicit
connection scope is a bug (it would leak a connection from a stream greenlet).
"""

import logging
import sqlite3
import threading
from collections import deque
from contextlib import contextmanager
from urllib.parse import urlparse

import peewee
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase, PooledSqliteDatabase

from .peewee_internals import connection_state, open_connection, pool_size, pool_wait_timeout

database = peewee.DatabaseProxy()

# SQLite never yields to gevent: keep lock waits short and write transactions tiny.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 2000,
    # A checkpoint copies the log back into the database file and waits for the disk twice
    # (fsync), in the connection whose commit crossed this many pages; the worker waited
    # with it. Workers checkpoint from a thread instead (``checkpoint_in_background``): this
    # only bounds the log (40 MB) should that thread fall behind.
    "wal_autocheckpoint": 10_000,
}
CHECKPOINT_SECONDS = 0.5


class _FifoGate:
    """A semaphore that hands a released permit to the longest waiter, never to a newcomer.

    ``threading`` is looked up at call time: under gevent (monkey-patched) its locks and
    events are cooperative, so a waiter parks its greenlet, not the worker.
    """

    def __init__(self, permits):
        self._free = permits
        self._waiters = deque()
        self._lock = threading.Lock()

    def acquire(self, timeout):
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            if not timeout:
                return False
            handed = threading.Event()
            self._waiters.append(handed)
        try:
            if handed.wait(None if timeout == float("inf") else timeout):
                return True
        except BaseException:  # killed while waiting: a permit handed meanwhile moves on
            self._give_up(handed)
            raise
        return self._give_up(handed)

    def _give_up(self, handed):
        """Leave the queue; True if a permit was handed over just before (it is kept)."""
        with self._lock:
            if handed.is_set():
                return True
            self._waiters.remove(handed)
            return False

    def release(self):
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()  # the permit passes on without being freed
            else:
                self._free += 1


class _FairPool:
    """Pooled connections handed out first come, first served.

    Peewee's pool wakes one waiter when a connection comes back, but any greenlet that
    asks meanwhile takes it first (a woken waiter still has to be scheduled, behind
    every runnable greenlet of a busy worker) and the waiter queues again at the back.
    Under a burst (a reconnect storm: hundreds of handshakes per worker) the unlucky
    ones wait out the whole ``timeout`` and their request fails with a 500 while others
    get a connection at once. Here a request holds a permit from ``connect`` to
    ``close``; a released permit goes to the longest waiter.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        size = pool_size(self)
        self._gate = _FifoGate(size) if size else None

    def connect(self, reuse_if_open=False):
        if self._gate is None or not self.is_closed():
            return self._connect_tracked(reuse_if_open)
        if not self._gate.acquire(pool_wait_timeout(self) or 0):
            raise MaxConnectionsExceeded("Max connections exceeded, timed out waiting for one.")
        try:
            return self._connect_tracked(reuse_if_open)
        except BaseException:
            self._gate.release()
            raise

    def _connect_tracked(self, reuse_if_open):
        opened = super().connect(reuse_if_open)
        if opened:
            connection_state(self).sent_commit = False
        return opened

    def commit(self):
        connection_state(self).sent_commit = True  # from here on, the server tells the outcome
        return super().commit()

    def execute_sql(self, sql, params=None):
        if not self.in_transaction() and not sql.startswith("SELECT"):
            connection_state(self).sent_commit = True  # outside a transaction it commits at once
        return super().execute_sql(sql, params)

    def sent_commit(self):
        """Whether this connection has sent anything that may have committed."""
        return getattr(connection_state(self), "sent_commit", False)

    def connection_lost(self):
        """Whether the server dropped this greenlet's connection (PostgreSQL ended it)."""
        conn = open_connection(self)
        return conn is not None and bool(getattr(conn, "closed", False))

    def replace_lost_connection(self):
        """Drop the lost connection (never back to the pool) and open a fresh one."""
        self.manual_close()
        self.connect()

    def close(self):
        held = self._gate is not None and not self.is_closed()
        try:
            return super().close()
        finally:
            if held and self.is_closed():
                self._gate.release()


class FairPooledSqliteDatabase(_FairPool, PooledSqliteDatabase):
    pass


class FairPooledPostgresqlDatabase(_FairPool, PooledPostgresqlDatabase):
    pass


def open_database(url):
    """Build (not connect) the Peewee database a URL names."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        # Pooled: opening a connection (and its pragmas) per request, and closing the last
        # one (a WAL checkpoint), cost more than the request's own queries.
        return FairPooledSqliteDatabase(
            path or ":memory:",
            pragmas=SQLITE_PRAGMAS,
            lock_type="IMMEDIATE",  # read-then-write transactions take the write lock at BEGIN
            autoconnect=False,
            max_connections=64,
            stale_timeout=300,
            timeout=10,  # wait for a free connection instead of failing at once
        )
    if parsed.scheme in ("postgres", "postgresql"):
        params = parseresult_to_dict(parsed)
        return FairPooledPostgresqlDatabase(
            params.pop("database"),
            max_connections=int(params.pop("max_connections", 20)),
            stale_timeout=300,
            timeout=10,  # wait for a free connection instead of failing at once
            autoconnect=False,
            **params,
        )
    raise ValueError(f"unsupported database URL scheme: {parsed.scheme!r}")


def bind_database(url):
    """Point every model at the database ``url`` names and return it."""
    db = open_database(url)
    database.initialize(db)
    return db


@contextmanager
def connection():
    """A connection for this block: the one this greenlet already holds, else a new one closed
    at the end (peewee's ``connection_context`` closes the connection even if it found one
    open, which would pull it from under an enclosing block)."""
    if not database.is_closed():
        yield
        return
    with database.connection_context():
        yield


def checkpoint_in_background(db, start_thread, sleep):
    """Checkpoint ``db``'s SQLite log from a thread of the OS (``start_thread(function,
    args)`` and ``sleep``: the unpatched ones under gevent) every ``CHECKPOINT_SECONDS``, so
    that no request's commit waits for the disk. False (nothing started) for PostgreSQL or
    an in-memory database.

    A PASSIVE checkpoint never blocks a writer or a reader; SQLite releases the GIL while it
    runs. The log restarts at the first write after a checkpoint that caught up.
    """
    if not isinstance(db, peewee.SqliteDatabase) or db.database in ("", ":memory:"):
        return False

    def run():
        conn = sqlite3.connect(db.database, isolation_level=None, check_same_thread=False)
        try:
            while True:
                sleep(CHECKPOINT_SECONDS)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the commits' own checkpoint is the backstop
                    logging.getLogger(__name__).warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    start_thread(run, ())
    return True


def supports_row_locks():
    """Whether SELECT ... FOR UPDATE exists here (PostgreSQL); SQLite locks at BEGIN instead."""
    return bool(database.obj.for_update)
