"""Schema changes are versioned migrations: the models and the migrated schema agree, a
database the first release made is recognised without DDL, and a worker booting on a
current schema changes nothing."""

import logging
import subprocess

import pytest

from models import TABLES
from models.db import open_database
from models.migrations import LATEST, MIGRATIONS, m0001_initial, migrate, pending, schema_version
from tests.conftest import fresh_database_url
from tests.live import BIN, ROOT


@pytest.fixture
def fresh(backend, tmp_path):
    """A connected, empty database of the backend; a second one on demand."""
    opened = []

    def make(name="a"):
        (tmp_path / name).mkdir()
        db = open_database(fresh_database_url(backend, tmp_path / name))
        db.connect()
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()
        db.close_all()


def shape(db):
    """Every table's columns and indexes, as the catalog reports them."""
    tables = {}
    for table in db.get_tables():
        columns = sorted(
            (column.name, column.data_type.lower(), column.null, column.primary_key)
            for column in db.get_columns(table)
        )
        indexes = sorted(
            (index.name, tuple(index.columns), index.unique) for index in db.get_indexes(table)
        )
        foreign_keys = sorted(
            (key.column, key.dest_table, key.dest_column) for key in db.get_foreign_keys(table)
        )
        tables[table] = (columns, indexes, foreign_keys)
    return tables


def statements(caplog):
    """The SQL peewee ran while ``caplog`` was capturing."""
    return [str(record.msg[0]) for record in caplog.records if record.name == "peewee"]


def test_models_and_migrated_schema_agree(fresh):
    migrated, modelled = fresh("migrated"), fresh("modelled")
    migrate(migrated)
    with modelled.bind_ctx(TABLES):
        modelled.create_tables(TABLES)
    schema = shape(migrated)
    schema.pop("schema_version")
    assert schema == shape(modelled)


def test_a_new_database_is_migrated_to_the_latest_version_once(fresh):
    db = fresh()
    assert schema_version(db) == 0 and pending(db) == list(MIGRATIONS)
    assert migrate(db) == [m.version for m in MIGRATIONS]
    assert schema_version(db) == LATEST and pending(db) == []
    assert migrate(db) == []


def test_a_database_the_first_release_made_is_recorded_as_version_1_without_ddl(fresh, caplog):
    db = fresh()
    first_release = m0001_initial.MODELS  # what create_tables() made before migrations
    with db.bind_ctx(first_release):
        db.create_tables(first_release)
    before = shape(db)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        assert migrate(db)[0] == 1
    ran = statements(caplog)
    recorded = next(
        i for i, sql in enumerate(ran) if sql.startswith('INSERT INTO "schema_version"')
    )
    ddl = [sql for sql in ran[:recorded] if sql.startswith(("CREATE", "ALTER", "DROP"))]
    assert ddl and all(sql.startswith('CREATE TABLE "schema_version"') for sql in ddl), ddl
    after = shape(db)
    for table, (columns, indexes, keys) in before.items():
        # Later migrations may add to a first-release table; none drops or changes anything.
        later_columns, later_indexes, later_keys = after[table]
        assert set(columns) <= set(later_columns) and set(indexes) <= set(later_indexes)
        assert keys == later_keys


def test_a_worker_booting_on_a_current_schema_runs_no_ddl(backend, tmp_path, monkeypatch, caplog):
    from qrevents import create_app

    url = fresh_database_url(backend, tmp_path)
    db = open_database(url)
    migrate(db)
    db.close_all()
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", url)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        create_app()
    ran = statements(caplog)
    assert ran and all(sql.lstrip().upper().startswith("SELECT") for sql in ran), ran


def flask_command(url, tmp_path, *args):
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env={"QREVENTS_DATABASE_URL": url, "QREVENTS_INSTANCE_PATH": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_migrate_command_brings_a_new_database_to_the_latest_version(backend, tmp_path):
    url = fresh_database_url(backend, tmp_path)
    first, again = flask_command(url, tmp_path, "migrate"), flask_command(url, tmp_path, "migrate")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    versions = ", ".join(str(m.version) for m in MIGRATIONS)
    assert first.stdout.splitlines() == [
        f"applied migrations {versions}",
        f"database at schema version {LATEST} (this release needs {LATEST})",
    ]
    assert again.stdout.splitlines() == [
        f"database at schema version {LATEST} (this release needs {LATEST})"
    ]
    db = open_database(url)
    assert schema_version(db) == LATEST
    db.close_all()


def test_init_db_is_migrate_under_its_first_name(backend, tmp_path):
    url = fresh_database_url(backend, tmp_path)
    done = flask_command(url, tmp_path, "init-db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "database ready"
    db = open_database(url)
    assert schema_version(db) == LATEST
    db.close_all()


def test_processes_migrating_at_once_apply_each_migration_once(backend, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = fresh_database_url(backend, tmp_path)
    databases = [open_database(url) for _ in range(4)]  # one connection each, as processes

    def run(db):
        try:
            return migrate(db)
        finally:
            db.close_all()

    with ThreadPoolExecutor(len(databases)) as pool:
        results = list(pool.map(run, databases))
    # Each migration takes the lock on its own: one process may apply the first and another
    # the rest, but every version is applied by exactly one process, in order within each.
    assert sorted(v for applied in results for v in applied) == [m.version for m in MIGRATIONS]
    assert all(applied == sorted(applied) for applied in results)
    db = open_database(url)
    with db.connection_context():
        recorded = db.execute_sql("SELECT version FROM schema_version ORDER BY version")
        assert recorded.fetchall() == [(m.version,) for m in MIGRATIONS]
    db.close_all()
