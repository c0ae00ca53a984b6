"""Event retention: old events pruned by a command and by every worker, recent ones kept."""

import sqlite3
import subprocess
import time
from datetime import timedelta

from models import Event, RefreshToken, StreamTicket
from qrevents.auth import Identity, issue_ticket
from qrevents.clock import utcnow
from qrevents.services.accounts import create_account, create_user
from qrevents.services.eventlog import resume_point
from qrevents.services.retention import prune
from qrevents.services.sessions import start_session
from tests.conftest import create_test_qr
from tests.live import BIN, ROOT, Api


def age_events(account_id, seqs, days):
    Event.update(created_at=utcnow() - timedelta(days=days)).where(
        (Event.account == account_id) & Event.seq.in_(seqs)
    ).execute()


def test_prune_deletes_only_events_older_than_the_retention(app):
    account = create_account("A", "BOB")
    for _ in range(4):
        create_test_qr(account.id)
    age_events(account.id, [1, 2], days=8)
    age_events(account.id, [3], days=6)
    assert prune(7) == (2, 0)
    assert [e.seq for e in Event.select().order_by(Event.seq)] == [3, 4]
    assert prune(7) == (0, 0)


def test_a_pruned_event_id_no_longer_resumes(app):
    account = create_account("A", "BOB")
    old = create_test_qr(account.id)
    create_test_qr(account.id)
    old_id = f"qr_created_{old.qr_id}"
    assert resume_point(account.id, old_id, 7).seq == 1
    age_events(account.id, [1], days=30)
    prune(7)
    assert resume_point(account.id, old_id, 7).seq is None


def test_prune_works_through_more_than_one_batch(app, monkeypatch):
    from qrevents.services import retention

    monkeypatch.setattr(retention, "BATCH", 3)
    account = create_account("A", "BOB")
    for _ in range(7):
        create_test_qr(account.id)
    age_events(account.id, range(1, 8), days=8)
    assert prune(7) == (7, 0)
    assert Event.select().count() == 0


def test_prune_removes_expired_stream_tickets_only(app):
    account = create_account("A", "BOB")
    identity = Identity(
        account_id=account.id, user_id=None, auth_type="apikey", token_source="header"
    )
    issue_ticket(identity)
    issue_ticket(identity)
    StreamTicket.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        StreamTicket.id == StreamTicket.select(StreamTicket.id).limit(1)
    ).execute()
    assert prune(7) == (0, 1)
    assert StreamTicket.select().count() == 1


def test_prune_events_command_uses_the_configured_retention(make_server):
    server = make_server(event_retention_days=3)
    url = server.env["QREVENTS_DATABASE_URL"]
    api = Api(server.base)
    tenant = api.new_tenant()
    api.create_qr(tenant)
    api.create_qr(tenant)
    _age_first_event(url, tenant.account_id)
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "prune-events"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "pruned 1 events older than 3 days" in result.stdout
    assert _execute(url, f"SELECT seq FROM event WHERE account_id = {tenant.account_id}") == [(2,)]


def test_every_worker_prunes_periodically_and_resume_then_resyncs(make_server):
    server = make_server(retention_sweep_seconds=0.2)
    url = server.env["QREVENTS_DATABASE_URL"]
    api = Api(server.base)
    tenant = api.new_tenant()
    first = api.create_qr(tenant)
    api.create_qr(tenant)
    _age_first_event(url, tenant.account_id)
    deadline = time.monotonic() + 10
    while (
        _execute(url, f"SELECT count(*) FROM event WHERE account_id = {tenant.account_id}")[0][0]
        != 1
    ):
        assert time.monotonic() < deadline, "the periodic prune never ran"
        time.sleep(0.1)
    with api.stream(
        headers=tenant.headers, params={"lastEventId": f"qr_created_{first['qrId']}"}
    ) as stream:
        connection, resync = stream.take(2, skip=())
    assert connection.data["resumed"] is False and connection.data["replayed"] == 0
    # The aged QR is today's: by its own date it cannot be past retention, so "unknown".
    assert resync.event == "resync_required" and resync.data["reason"] == "unknown"


def _age_first_event(database_url, account_id):
    _execute(
        database_url,
        "UPDATE event SET created_at = '2000-01-01 00:00:00' "
        f"WHERE account_id = {account_id} AND seq = 1",
    )


def _execute(database_url, sql):
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return db.execute(sql).fetchall()
    import psycopg2

    with psycopg2.connect(database_url) as db, db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []


def test_prune_removes_refresh_tokens_past_their_sign_ins_end(app):
    account = create_account("A", "BOB")
    user = create_user(account.id, "ana@example.com", "correct horse 1", "Ana")
    with app.app_context():  # flask-jwt-extended signs with the app's key
        start_session(user, 3600)
        start_session(user, 3600)
    RefreshToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        RefreshToken.id == RefreshToken.select(RefreshToken.id).limit(1)
    ).execute()
    assert prune(7) == (0, 1)
    assert RefreshToken.select().count() == 1
