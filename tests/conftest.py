"""Shared fixtures: a live gunicorn gevent server per database backend, and its clients.

The same tests run on SQLite and, when ``QREVENTS_TEST_DATABASE_URL`` is set, on PostgreSQL
(a fresh database per server). Without it, the PostgreSQL runs are skipped with that reason.
"""

import os
import uuid

import pytest

from tests.live import Api, LiveServer

BACKENDS = ["sqlite", "postgres"]


def fresh_database_url(backend, tmp_path):
    """A database of its own for one server: a SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'qrevents.db'}"
    base = os.environ.get("QREVENTS_TEST_DATABASE_URL")
    if not base:
        pytest.skip("PostgreSQL tests need QREVENTS_TEST_DATABASE_URL (set by .ci/run)")
    import psycopg2

    name = "qrevents_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def server(backend, tmp_path_factory):
    """One server per backend for the whole session; tests isolate by using new accounts."""
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    live = LiveServer(tmp, fresh_database_url(backend, tmp)).start()
    yield live
    live.stop()


@pytest.fixture
def make_server(backend, tmp_path):
    """Start servers with their own settings (e.g. a tiny queue); stopped after the test."""
    started = []

    def start(**settings):
        folder = tmp_path / f"s{len(started)}"
        database_url = settings.pop("database_url", None) or fresh_database_url(backend, folder)
        live = LiveServer(folder, database_url, **settings).start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def api(server):
    return Api(server.base)


@pytest.fixture
def tenant(api):
    return api.new_tenant()
