"""Shared fixtures: a live gunicorn gevent server per database backend, and its clients.

The same tests run on SQLite and, when ``QREVENTS_TEST_DATABASE_URL`` is set, on PostgreSQL
(a fresh database per server). Without it, the PostgreSQL runs are skipped with that reason.
"""

import os
import uuid

import pytest

from tests.bank_sim import (  # noqa: F401 (fixtures)
    bank_simulator,
    bank_simulator_server,
    notification_receiver,
)
from tests.live import Api, LiveServer, reap_stopped_servers
from tests.webhook_receiver import receiver  # noqa: F401 (fixture)

BACKENDS = ["sqlite", "postgres"]
CREATED_DATABASES = []  # PostgreSQL databases made by this run, dropped at its end


def missing_service(reason):
    """Skip with a visible reason, or fail where every backend must run (``.ci/run``)."""
    if os.environ.get("QREVENTS_REQUIRE_ALL_BACKENDS") == "1":
        pytest.fail(f"{reason}, and QREVENTS_REQUIRE_ALL_BACKENDS=1 forbids skipping")
    pytest.skip(reason)


def fresh_database_url(backend, tmp_path):
    """A database of its own for one server: a SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'qrevents.db'}"
    base = os.environ.get("QREVENTS_TEST_DATABASE_URL")
    if not base:
        missing_service("PostgreSQL tests need QREVENTS_TEST_DATABASE_URL (set by .ci/run)")
    import psycopg2

    name = "qrevents_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    CREATED_DATABASES.append(name)
    return base.rsplit("/", 1)[0] + "/" + name


def pytest_sessionfinish(session):
    """Drop the PostgreSQL databases this run made (every server has stopped by now)."""
    reap_stopped_servers()
    if not CREATED_DATABASES:
        return
    import psycopg2

    admin = psycopg2.connect(os.environ["QREVENTS_TEST_DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        for name in CREATED_DATABASES:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def backend_servers(tmp_path_factory):
    """The shared server of each backend, started on first use and kept to the session's end.

    Kept apart from ``server``: pytest tears a parametrized session fixture down whenever the
    parameter changes, and with the tests of every file run sqlite-then-postgres, that booted
    both servers again for each file.
    """
    started = {}

    def server_for(backend):
        if backend not in started:
            tmp = tmp_path_factory.mktemp(f"server-{backend}")
            started[backend] = LiveServer(tmp, fresh_database_url(backend, tmp)).start()
        return started[backend]

    yield server_for
    for live in started.values():
        live.stop(wait=False)


@pytest.fixture(scope="session")
def server(backend, backend_servers):
    """One server per backend for the whole session; tests isolate by using new accounts."""
    return backend_servers(backend)


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
        live.stop(wait=False)


@pytest.fixture
def api(server):
    return Api(server.base)


@pytest.fixture
def tenant(api):
    return api.new_tenant()


@pytest.fixture(scope="session")
def redis_url():
    """The shared Redis of the machine; servers keep apart by a key prefix of their own."""
    url = os.environ.get("QREVENTS_TEST_REDIS_URL")
    if not url:
        missing_service("Redis tests need QREVENTS_TEST_REDIS_URL (set by .ci/run)")
    return url


def redis_prefix():
    """A key prefix for one deployment under test: parallel servers never hear each other."""
    return f"qrevents-test-{uuid.uuid4().hex[:10]}:"


def two_host_deployment(redis_url, tmp_path, max_streams_per_account):
    """Settings the servers of one deployment share, as two hosts would: one PostgreSQL
    database and one Redis key prefix. Log reconciliation is slowed to a minute, so an event
    that crosses servers within a test's deadlines crossed through Redis pub/sub."""
    return {
        "database_url": fresh_database_url("postgres", tmp_path),
        "redis_url": redis_url,
        "redis_prefix": redis_prefix(),
        "reconcile_seconds": 60,
        "max_streams_per_account": max_streams_per_account,
    }


def serve_pair(deployment, tmp_path):
    """Two single-worker servers of ``deployment`` (a module fixture's body: yields them,
    then stops them)."""
    started = []
    try:
        for name in ("a", "b"):
            started.append(LiveServer(tmp_path / name, **deployment).start())
        yield started
    finally:
        for live in started:
            live.stop()


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app in this process on a temporary SQLite file, inside an app context and a
    database connection: for calling services directly."""
    from models import database
    from qrevents import create_app

    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'unit.db'}")
    app = create_app()
    with app.app_context(), database.connection_context():
        yield app


def create_test_qr(account_id):
    """An active single-use QR of 10.00 BOB, recorded through the service as if a bank had
    issued it (in-process tests have no bank; the id is the bank's format)."""
    import secrets

    from qrevents.banks import IssuedQr
    from qrevents.services import qrs

    request = qrs.QrRequest(
        amount_cents=1000,
        currency="BOB",
        description="x",
        due_date=None,
        single_use=True,
        modify_amount=False,
        transaction_id=None,
    )
    plan = qrs.plan_qr(account_id, request)
    issued = IssuedQr(qr_id=f"261130{secrets.randbelow(10**14):014d}", image_png=b"")
    return qrs.record_issued(account_id, request, plan, issued)[0]
