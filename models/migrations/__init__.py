"""Versioned schema migrations: the one way the schema changes.

Each migration is a module ``mNNNN_<name>.py`` here, with ``VERSION = N`` and ``up(database)``.
Column changes use ``playhouse.migrate`` (``SchemaMigrator.from_database(database)``); new
tables are models frozen inside the migration module, never imported from ``models.tables``,
so that an applied migration never changes when a model does. A new column, say::

    VERSION = 2

    def up(database):
        migrator = SchemaMigrator.from_database(database)
        migrate(migrator.add_column("payment", "note", pw.CharField(max_length=140, null=True)))

and ``models/tables.py`` changed to match: ``tests/test_migrations.py`` fails while the models
and the migrated schema disagree. ``up`` runs inside the migration's transaction.

The version applied is kept in a table of its own, one row per migration. Reading it
(``schema_version``, ``pending``) is a catalog read and takes no lock a payment could wait on;
``migrate`` applies what is pending, each migration in its own transaction, serialised across
processes (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``).
"""

import importlib
import pkgutil
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import peewee as pw

VERSION_TABLE = "schema_version"
# Any fixed number: the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK = 7_304_113

_MODULE_NAME = re.compile(r"m(\d{4})_\w+")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Callable


# One row per applied migration. Plain SQL, the same on SQLite and PostgreSQL: this table never
# changes shape, and no model class is bound (processes of tests migrate in threads at once).
_CREATE_VERSION_TABLE = (
    f'CREATE TABLE "{VERSION_TABLE}" ("version" INTEGER NOT NULL PRIMARY KEY, '
    '"name" VARCHAR(100) NOT NULL, "applied_at" TIMESTAMP NOT NULL)'
)


def _discover():
    """Every migration module of this package, in version order, numbered 1, 2, 3 ..."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        match = _MODULE_NAME.fullmatch(module.name)
        if match is None:
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        if loaded.VERSION != int(match.group(1)):
            raise RuntimeError(f"{module.name} declares VERSION = {loaded.VERSION}")
        found.append(Migration(loaded.VERSION, module.name, loaded.up))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must run 1, 2, 3 ... without gaps: {versions}")
    return tuple(found)


MIGRATIONS = _discover()
LATEST = MIGRATIONS[-1].version


def schema_version(database):
    """The last migration applied to ``database``; 0 when none is recorded.

    A database made by the old ``create_tables()`` has the tables but no version table:
    it reads 0 here, and ``migrate`` records it as version 1 without any DDL.
    """
    db = _unwrap(database)
    with _connected(db):
        if not db.table_exists(VERSION_TABLE):
            return 0
        return _recorded_version(db)


def pending(database):
    """The migrations ``database`` lacks, oldest first."""
    current = schema_version(database)
    return [migration for migration in MIGRATIONS if migration.version > current]


def migrate(database):
    """Apply every pending migration in order; return the versions this call applied.

    Safe to run from several processes at once: each migration takes the lock, reads the
    version again, and is skipped if another process applied it meanwhile.
    """
    db = _unwrap(database)
    applied = []
    with _connected(db):
        for migration in pending(db):
            if _apply(db, migration):
                applied.append(migration.version)
    return applied


def _apply(db, migration):
    """Run one migration and record it, in one serialised transaction."""
    with _serialised_transaction(db):
        if not db.table_exists(VERSION_TABLE):
            db.execute_sql(_CREATE_VERSION_TABLE)
        current = _recorded_version(db)
        if current >= migration.version:
            return False
        if current != migration.version - 1:
            raise RuntimeError(f"{migration.name} cannot follow version {current}")
        migration.up(db)
        db.execute_sql(
            f'INSERT INTO "{VERSION_TABLE}" ("version", "name", "applied_at") '
            f"VALUES ({db.param}, {db.param}, {db.param})",
            (migration.version, migration.name, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
        )
    return True


def _recorded_version(db):
    return db.execute_sql(f'SELECT max(version) FROM "{VERSION_TABLE}"').fetchone()[0] or 0


@contextmanager
def _serialised_transaction(db):
    """A transaction no other migrating process runs beside.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: ``BEGIN IMMEDIATE`` takes the
    write lock at once; foreign keys are off meanwhile (a table rebuild must not cascade, and
    the pragma only works outside a transaction) and checked before commit.
    """
    if not isinstance(db, pw.SqliteDatabase):
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            yield
        return
    foreign_keys = bool(db.pragma("foreign_keys"))
    db.pragma("foreign_keys", 0)
    try:
        with db.atomic(lock_type="IMMEDIATE"):
            yield
            orphans = db.execute_sql("PRAGMA foreign_key_check").fetchall()
            if orphans:
                raise RuntimeError(f"the migration left rows without their parent: {orphans[:5]}")
    finally:
        if foreign_keys:
            db.pragma("foreign_keys", 1)


@contextmanager
def _connected(db):
    """The caller's connection if it holds one, else one opened and closed here."""
    if not db.is_closed():
        yield
        return
    db.connect()
    try:
        yield
    finally:
        db.close()


def _unwrap(database):
    """The database behind a ``DatabaseProxy`` (the migrator needs its real class)."""
    return database.obj if isinstance(database, pw.DatabaseProxy) else database
