"""The database binding: one proxy, bound late from a URL, no implicit connections.

Every model binds to ``database``; ``bind_database`` picks SQLite or PostgreSQL from
``QREVENTS_DATABASE_URL``. ``autoconnect`` is off on purpose: a query outside an explicit
connection scope is a bug (it would leak a connection from a stream greenlet).
"""

from urllib.parse import urlparse

import peewee
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

database = peewee.DatabaseProxy()

# SQLite never yields to gevent: keep lock waits short and write transactions tiny.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 2000,
}


def open_database(url):
    """Build (not connect) the Peewee database a URL names."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        # Pooled: opening a connection (and its pragmas) per request, and closing the last
        # one (a WAL checkpoint), cost more than the request's own queries.
        return PooledSqliteDatabase(
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
        return PooledPostgresqlDatabase(
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


def supports_row_locks():
    """Whether SELECT ... FOR UPDATE exists here (PostgreSQL); SQLite locks at BEGIN instead."""
    return bool(database.obj.for_update)
