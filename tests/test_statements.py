"""The hand-written hot-path statements read and write what Peewee's own queries would,
on each database backend."""

from datetime import datetime

import pytest

from models import Account, Event, Payment, Qr, database
from models.statements import get_row, insert, insert_many, update
from qrevents import create_app
from qrevents.services.accounts import create_account
from tests.conftest import create_test_qr, fresh_database_url


@pytest.fixture
def backend_app(backend, tmp_path, monkeypatch):
    """The app in this process on a fresh database of ``backend``, inside a connection."""
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", fresh_database_url(backend, tmp_path))
    app = create_app()
    with app.app_context(), database.connection_context():
        yield app


def new_payment(qr, transaction_id, sender_name):
    return Payment(
        transaction_id=transaction_id,
        account=qr.account_id,
        qr=qr,
        amount_cents=1000,
        currency="BOB",
        sender_name=sender_name,
        sender_document_id="1",
        sender_account="2",
        sender_bank_code="B",
        description="x",
        payment_date=datetime(2026, 1, 15, 10, 30, 0, 123000),
        payment_time="10:30:00",
        review=True,
        review_reason="amount_mismatch",
        fingerprint="f" * 64,
        created_at=datetime(2026, 1, 15, 10, 30, 1, 456000),
    )


def test_a_row_read_by_statement_equals_the_row_peewee_reads(backend_app):
    account = create_account("A", "BOB")
    qr = create_test_qr(account.id)
    read = get_row(Qr, Qr.qr_id, qr.qr_id)
    assert read.__data__ == Qr.get(Qr.qr_id == qr.qr_id).__data__
    assert isinstance(read.due_date, datetime) and read.single_use is True
    assert get_row(Qr, Qr.qr_id, "no-such-qr") is None


def test_a_partial_read_sets_only_the_named_fields(backend_app):
    account = create_account("A", "BOB")
    qr = create_test_qr(account.id)
    read = get_row(Qr, Qr.qr_id, qr.qr_id, fields=(Qr.id, Qr.account))
    assert read.__data__ == {"id": qr.id, "account": account.id}


def test_a_locked_read_returns_the_row_inside_a_transaction(backend_app):
    account = create_account("A", "BOB")
    with database.atomic():
        locked = get_row(Account, Account.id, account.id, lock=True)
    assert locked.__data__ == Account.get_by_id(account.id).__data__


def test_insert_gives_the_row_its_id_and_writes_it_as_peewee_would(backend_app):
    account = create_account("A", "BOB")
    qr = create_test_qr(account.id)
    payment = new_payment(qr, "TXN_1", "Juan")
    assert insert(payment, unless_exists=Payment.transaction_id)
    assert payment.id is not None
    assert Payment.get_by_id(payment.id).__data__ == payment.__data__ | {"released_at": None}


def test_insert_unless_exists_keeps_the_earlier_row_and_writes_nothing(backend_app):
    account = create_account("A", "BOB")
    qr = create_test_qr(account.id)
    assert insert(new_payment(qr, "TXN_1", "Juan"), unless_exists=Payment.transaction_id)
    repeated = new_payment(qr, "TXN_1", "Ana")
    assert not insert(repeated, unless_exists=Payment.transaction_id)
    assert repeated.id is None
    assert [p.sender_name for p in Payment.select()] == ["Juan"]


def test_insert_many_writes_every_row_in_order(backend_app):
    account = create_account("A", "BOB")
    now = datetime(2026, 1, 15, 10, 30)
    rows = [
        {
            "account": account.id,
            "seq": seq,
            "event_type": "qr_created",
            "event_id": f"e{seq}",
            "data": "{}",
            "created_at": now,
        }
        for seq in (1, 2, 3)
    ]
    insert_many(Event, rows)
    written = Event.select().where(Event.account == account.id).order_by(Event.seq)
    assert [(e.seq, e.event_id, e.created_at) for e in written] == [
        (1, "e1", now),
        (2, "e2", now),
        (3, "e3", now),
    ]


def test_update_writes_only_the_named_columns(backend_app):
    account = create_account("A", "BOB")
    stale = Account.get_by_id(account.id)
    Account.update(name="Renamed").where(Account.id == account.id).execute()
    stale.balance_cents, stale.event_seq = 1234, 7
    update(stale, (Account.balance_cents, Account.event_seq))
    reloaded = Account.get_by_id(account.id)
    assert (reloaded.name, reloaded.balance_cents, reloaded.event_seq) == ("Renamed", 1234, 7)
