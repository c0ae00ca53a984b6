"""A pooled connection PostgreSQL ends mid-request: the request runs again on a fresh
connection when nothing of it can have committed, and is answered 503 when it may have."""

import psycopg2
import pytest

from models import Payment, database
from models.db import open_database
from qrevents import bank_signature
from qrevents.services import accounts, payments
from tests.conftest import create_test_qr, fresh_database_url
from tests.live import BANK_SECRET, dumps, payment_body


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app in this process on a PostgreSQL database of its own."""
    from qrevents import create_app

    url = fresh_database_url("postgres", tmp_path)
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", url)
    monkeypatch.setenv("QREVENTS_BANK_WEBHOOK_SECRET", BANK_SECRET)
    app = create_app()
    app.database_url = url
    yield app
    database.close_all()


@pytest.fixture
def qr_id(app):
    with app.app_context(), database.connection_context():
        account = accounts.create_account("Comercio", "BOB")
        return create_test_qr(account.id).qr_id


def pay(app, qr_id, transaction_id):
    raw = dumps(payment_body(qr_id, "10.00", transaction_id)).encode()
    headers = {"X-Bank-Signature": bank_signature.sign(BANK_SECRET, raw)}
    return app.test_client().post(
        "/bank/payments", data=raw, headers=headers, content_type="application/json"
    )


def end_this_connection(database_url):
    """Have PostgreSQL end this greenlet's pooled connection, and wait until it has."""
    pid = database.connection().get_backend_pid()
    with psycopg2.connect(database_url) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits for its end
        assert cursor.fetchone()[0], f"backend {pid} still runs"


def credited(app, transaction_id):
    with database.connection_context():
        return Payment.select().where(Payment.transaction_id == transaction_id).count()


def test_a_payment_whose_connection_ends_before_commit_runs_again_and_credits_once(
    app, qr_id, monkeypatch
):
    post_payment, calls = payments.post_payment, []

    def connection_ends_first_time(notice):
        calls.append(database.connection().get_backend_pid())
        if len(calls) == 1:
            end_this_connection(app.database_url)
        return post_payment(notice)

    monkeypatch.setattr(payments, "post_payment", connection_ends_first_time)
    answer = pay(app, qr_id, "TXLOST1")
    assert answer.status_code == 200, answer.get_json()
    assert len(calls) == 2 and calls[0] != calls[1]  # the second run had a fresh connection
    assert credited(app, "TXLOST1") == 1


def test_a_payment_whose_connection_ends_at_commit_is_answered_503_and_not_run_again(
    app, qr_id, monkeypatch
):
    pool = database.obj
    commit, calls = pool.commit, []

    def connection_ends_at_commit():
        end_this_connection(app.database_url)
        return commit()

    monkeypatch.setattr(pool, "commit", connection_ends_at_commit)
    monkeypatch.setattr(payments, "post_payment", _counting(payments.post_payment, calls))
    answer = pay(app, qr_id, "TXLOST2")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.get_json()["error"]["code"] == "unavailable"
    assert len(calls) == 1  # the outcome was unknown: never sent twice
    monkeypatch.setattr(pool, "commit", commit)
    assert pay(app, qr_id, "TXLOST2").status_code == 200  # the bank's retry
    assert credited(app, "TXLOST2") == 1


def test_a_payment_whose_connection_ends_twice_is_answered_503(app, qr_id, monkeypatch):
    post_payment = payments.post_payment

    def connection_ends_each_time(notice):
        end_this_connection(app.database_url)
        return post_payment(notice)

    monkeypatch.setattr(payments, "post_payment", connection_ends_each_time)
    answer = pay(app, qr_id, "TXLOST3")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert credited(app, "TXLOST3") == 0


def _counting(function, calls):
    def counted(*args):
        calls.append(args)
        return function(*args)

    return counted


def test_a_connection_knows_from_when_its_work_may_have_committed(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'commit.db'}")
    db.connect()
    db.execute_sql("CREATE TABLE note (body TEXT)")
    db.close()
    db.connect()
    db.execute_sql("SELECT 1")
    with db.atomic():
        db.execute_sql("INSERT INTO note VALUES ('x')")
        assert not db.sent_commit()  # still inside the transaction: rolled back if lost
    assert db.sent_commit()
    db.close()
    db.connect()  # the next request starts clean
    assert not db.sent_commit()
    db.execute_sql("INSERT INTO note VALUES ('y')")  # outside a transaction: commits at once
    assert db.sent_commit()
    db.close_all()
