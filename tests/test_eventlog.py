"""The event log inside the app: written with the change, announced only after commit."""

import pytest

from models import Account, Event, Payment, Qr
from qrevents.services import payments
from qrevents.services.accounts import create_account
from qrevents.services.payments import PaymentNotice
from qrevents.signals import events_committed
from tests.conftest import create_test_qr


@pytest.fixture
def announced(app):
    seen = []

    def receiver(sender, account_id, events):
        seen.extend(events)

    events_committed.connect(receiver, sender=app)
    yield seen
    events_committed.disconnect(receiver, sender=app)


def notice(qr):
    from datetime import datetime

    return PaymentNotice(
        qr_id=qr.qr_id,
        transaction_id="TXN_ROLLBACK",
        amount_cents=1000,
        currency="BOB",
        sender_name="Juan",
        sender_document_id="1",
        sender_account="2",
        sender_bank_code="B",
        description="",
        payment_date=datetime(2026, 1, 1),
        payment_time="00:00:00",
    )


def test_committed_events_are_announced_with_contiguous_sequence(app, announced):
    account = create_account("A", "BOB")
    create_test_qr(account.id)
    create_test_qr(account.id)
    assert [e.seq for e in announced] == [1, 2]
    assert Account.get_by_id(account.id).event_seq == 2
    assert announced[0].frame.startswith(b"id: qr_created_")


def test_a_payment_that_fails_midway_writes_and_announces_nothing(app, announced, monkeypatch):
    account = create_account("A", "BOB")
    qr = create_test_qr(account.id)
    announced.clear()

    def failing_movement(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(payments, "post_movement", failing_movement)
    with pytest.raises(RuntimeError):
        payments.post_payment(notice(qr))
    assert announced == []
    assert Payment.select().count() == 0
    assert Event.select().where(Event.account == account.id).count() == 1
    assert Qr.get_by_id(qr.id).status == "active"
    reloaded = Account.get_by_id(account.id)
    assert (reloaded.event_seq, reloaded.balance_cents, reloaded.movement_seq) == (1, 0, 0)


def test_a_failing_announcement_does_not_undo_the_committed_change(app, monkeypatch):
    account = create_account("A", "BOB")

    def broken(sender, account_id, events):
        raise ConnectionError("broker down")

    events_committed.connect(broken, sender=app)
    try:
        qr = create_test_qr(account.id)
    finally:
        events_committed.disconnect(broken, sender=app)
    assert Qr.get_by_id(qr.id).status == "active"
    assert Account.get_by_id(account.id).event_seq == 1
