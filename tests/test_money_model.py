"""A hypothesis state machine of the money and event model, against the real services
on each database backend.

Random sequences of QR creations, payments (normal, duplicate, conflicting, late, of the
wrong amount or currency; one the bank's notification and the reconciliation both bring,
in either order), cancellations, expiry sweeps, bank status syncs and releases,
across several accounts, each with a live hub subscription. After every step: the
balances are what a simple model predicts and what the ledger adds up to; the available
balance is the balance less the held payments; each account's event log is contiguous;
and each subscription got exactly its own account's events, in order.
"""

import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from models import Account, Event, Movement, Payment, Qr, database
from qrevents import create_app
from qrevents.banks import IssuedQr
from qrevents.clock import utcnow
from qrevents.errors import ApiError, Conflict, ValidationFailed
from qrevents.notices import payment_notice
from qrevents.services import bank_sync, payments, qrs
from qrevents.services.accounts import create_account
from qrevents.services.eventlog import events_between
from qrevents.services.ledger import MOVEMENT_EFFECTS
from tests.conftest import fresh_database_url

ACCOUNTS = 3
AMOUNTS = st.sampled_from([1, 50, 1000, 10050, 9_999_999_999])


class QrModel:
    def __init__(self, qr_id, account_id, amount, single_use, modify_amount, due_date):
        self.qr_id = qr_id
        self.account_id = account_id
        self.amount = amount
        self.single_use = single_use
        self.modify_amount = modify_amount
        self.due_date = due_date
        self.status = "active"


class MoneyModel(RuleBasedStateMachine):
    def __init__(self, app):
        super().__init__()
        self.hub = app.extensions["qrevents"].hub
        self.accounts = []
        self.balance, self.available, self.event_count, self.received = {}, {}, {}, {}
        self.subs = {}
        self.qrs = {}  # qr_id -> QrModel
        self.payments = {}  # transaction id -> (notice, review, released)

    @initialize()
    def open_accounts(self):
        for _ in range(ACCOUNTS):
            account_id = create_account("M", "BOB").id
            self.accounts.append(account_id)
            self.balance[account_id] = self.available[account_id] = 0
            self.event_count[account_id] = 0
            self.received[account_id] = []
            self.subs[account_id] = self.hub.subscribe(account_id)

    def teardown(self):
        for sub in self.subs.values():
            self.hub.unsubscribe(sub)

    # -- QRs -------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        amount=AMOUNTS,
        single_use=st.booleans(),
        modify_amount=st.booleans(),
    )
    def create_qr(self, data, amount, single_use, modify_amount):
        account_id = data.draw(st.sampled_from(self.accounts))
        request = qrs.QrRequest(
            amount_cents=amount,
            currency="BOB",
            description="modelo",
            due_date=None,
            single_use=single_use,
            modify_amount=modify_amount,
            transaction_id=None,
        )
        plan = qrs.plan_qr(account_id, request)
        # What the bank would answer (the model has no bank: an id in the bank's format).
        issued = IssuedQr(qr_id=f"261130{secrets.randbelow(10**14):014d}", image_png=b"")
        qr, created = qrs.record_issued(account_id, request, plan, issued)
        assert created
        self.qrs[qr.qr_id] = QrModel(
            qr.qr_id, account_id, amount, single_use, modify_amount, qr.due_date
        )
        self.event_count[account_id] += 1

    @precondition(lambda self: self.qrs)
    @rule(data=st.data())
    def cancel(self, data):
        qr = self._pick_qr(data)
        if qr.status != "active":
            with pytest.raises(Conflict):
                qrs.cancel_qr(qr.account_id, qr.qr_id)
            return
        qrs.cancel_qr(qr.account_id, qr.qr_id)
        qr.status = "cancelled"
        self.event_count[qr.account_id] += 1

    @precondition(lambda self: self.qrs)
    @rule(data=st.data(), status=st.sampled_from(["used", "completed", "expired", "cancelled"]))
    def bank_status_sync(self, data, status):
        qr = self._pick_qr(data)
        if qr.status == status:
            assert qrs.sync_status(qr.qr_id, status)[1] is False
        elif status in qrs.TRANSITIONS.get(qr.status, ()):
            assert qrs.sync_status(qr.qr_id, status)[1] is True
            qr.status = status
            self.event_count[qr.account_id] += 1
        else:
            with pytest.raises(Conflict):
                qrs.sync_status(qr.qr_id, status)

    @precondition(lambda self: self.qrs)
    @rule(data=st.data())
    def due_date_passes(self, data):
        """Time passes for one QR: its due date is now behind us (the sweep has not run)."""
        qr = self._pick_qr(data)
        qr.due_date = utcnow() - timedelta(seconds=1)
        Qr.update(due_date=qr.due_date).where(Qr.qr_id == qr.qr_id).execute()

    @rule()
    def expiry_sweep(self):
        now = utcnow()
        qrs.expire_overdue(now)
        for qr in self.qrs.values():
            if qr.status == "active" and qr.due_date < now:
                qr.status = "expired"
                self.event_count[qr.account_id] += 1

    # -- payments --------------------------------------------------------------------------

    @precondition(lambda self: self.qrs)
    @rule(data=st.data(), kind=st.sampled_from(["exact", "wrong_amount", "late"]))
    def pay(self, data, kind):
        qr = self._pick_qr(data)
        amount = qr.amount if kind != "wrong_amount" else qr.amount + 1
        paid_at = qr.due_date + timedelta(hours=1) if kind == "late" else utcnow()
        notice = self._notice(qr, amount, paid_at)
        payment, duplicate = payments.post_payment(notice)
        assert not duplicate
        reason = self._review_reason(qr, notice)
        assert payment.review_reason == reason
        self.balance[qr.account_id] += amount
        if reason is None:
            self.available[qr.account_id] += amount
        self.event_count[qr.account_id] += 2
        if qr.single_use and reason is None:
            qr.status = "used"
            self.event_count[qr.account_id] += 1
        self.payments[notice.transaction_id] = [notice, reason is not None, False]

    @precondition(lambda self: self.qrs)
    @rule(data=st.data(), notice_first=st.booleans())
    def notification_and_reconciliation_bring_one_payment(self, data, notice_first):
        """The bank's PaymentQR reaches us twice: as its notification (the nested body) and
        in the paid list reconciliation reads. Whichever comes first records it, once."""
        qr = self._pick_qr(data)
        now = utcnow() - timedelta(hours=4)  # La Paz wall time, as the bank writes it
        body = {
            "qrId": qr.qr_id,
            "transactionId": str(secrets.randbelow(10**12)),
            "paymentDate": now.strftime("%Y-%m-%dT00:00:00"),
            "paymentTime": now.strftime("%H:%M:%S"),
            "currency": "BOB",
            "amount": Decimal(qr.amount) / 100,
            "senderBankCode": "1016",
            "senderName": "CLIENTE",
            "senderDocumentId": "0",
            "senderAccount": "******1913",
            "description": "modelo",
        }
        notice = payment_notice({"payment": body})
        reason = self._review_reason(qr, notice)

        def by_notification():
            return not payments.post_payment(payment_notice({"payment": body}))[1]

        def by_reconciliation():
            return bool(bank_sync.record_bank_payments([body], source="paidQR"))

        order = (by_notification, by_reconciliation)
        recorded = [arrive() for arrive in (order if notice_first else order[::-1])]
        assert recorded == [True, False]
        self.balance[qr.account_id] += qr.amount
        if reason is None:
            self.available[qr.account_id] += qr.amount
        self.event_count[qr.account_id] += 2
        if qr.single_use and reason is None:
            qr.status = "used"
            self.event_count[qr.account_id] += 1
        self.payments[notice.transaction_id] = [notice, reason is not None, False]

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def bank_retries_a_payment(self, data):
        notice = self._pick_payment(data)[0]
        assert payments.post_payment(notice)[1] is True

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def transaction_id_reused_with_other_data(self, data):
        notice = self._pick_payment(data)[0]
        with pytest.raises(Conflict):
            payments.post_payment(self._replace(notice, amount_cents=notice.amount_cents + 7))

    @precondition(lambda self: self.qrs)
    @rule(data=st.data())
    def payment_in_another_currency_is_refused(self, data):
        qr = self._pick_qr(data)
        notice = self._replace(self._notice(qr, qr.amount, utcnow()), currency="USD")
        with pytest.raises(ValidationFailed):
            payments.post_payment(notice)

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def release(self, data):
        entry = self._pick_payment(data)
        notice, held, released = entry
        account_id = self.qrs[notice.qr_id].account_id
        if not held or released:
            with pytest.raises(Conflict):
                payments.release_payment(account_id, notice.transaction_id)
            return
        payments.release_payment(account_id, notice.transaction_id)
        entry[2] = True
        self.available[account_id] += notice.amount_cents
        self.event_count[account_id] += 1

    @precondition(lambda self: self.payments and len(self.accounts) > 1)
    @rule(data=st.data())
    def release_from_another_account_is_not_found(self, data):
        notice = self._pick_payment(data)[0]
        owner = self.qrs[notice.qr_id].account_id
        other = data.draw(st.sampled_from([a for a in self.accounts if a != owner]))
        with pytest.raises(ApiError) as refused:
            payments.release_payment(other, notice.transaction_id)
        assert refused.value.status == 404

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model_and_the_ledger(self):
        for account_id in self.accounts:
            account = Account.get_by_id(account_id)
            assert account.balance_cents == self.balance[account_id]
            assert account.available_cents == self.available[account_id]
            balance = available = 0
            for movement in Movement.select().where(Movement.account == account_id):
                moves_balance, moves_available = MOVEMENT_EFFECTS[movement.movement_type]
                balance += movement.amount_cents if moves_balance else 0
                available += movement.amount_cents if moves_available else 0
            assert (balance, available) == (account.balance_cents, account.available_cents)
            held = sum(
                p.amount_cents
                for p in Payment.select().where(
                    (Payment.account == account_id) & Payment.review & Payment.released_at.is_null()
                )
            )
            assert account.available_cents == account.balance_cents - held

    @invariant()
    def each_event_log_is_contiguous(self):
        for account_id in self.accounts:
            seqs = [
                seq
                for (seq,) in Event.select(Event.seq)
                .where(Event.account == account_id)
                .order_by(Event.seq)
                .tuples()
            ]
            assert seqs == list(range(1, self.event_count[account_id] + 1))
            assert Account.get_by_id(account_id).event_seq == len(seqs)

    @invariant()
    def each_subscription_got_exactly_its_accounts_events_in_order(self):
        for account_id, sub in self.subs.items():
            assert sub.closing is None
            self.received[account_id].extend(sub.take())
            logged = events_between(account_id, 0, self.event_count[account_id], limit=10**6)
            assert self.received[account_id] == [event.frame for event in logged]

    # -- helpers ---------------------------------------------------------------------------

    def _pick_qr(self, data):
        return self.qrs[data.draw(st.sampled_from(sorted(self.qrs)))]

    def _pick_payment(self, data):
        return self.payments[data.draw(st.sampled_from(sorted(self.payments)))]

    @staticmethod
    def _notice(qr, amount, paid_at):
        return payments.PaymentNotice(
            qr_id=qr.qr_id,
            transaction_id="BNK" + uuid.uuid4().hex[:20].upper(),
            amount_cents=amount,
            currency="BOB",
            sender_name="Juan",
            sender_document_id="1",
            sender_account="2",
            sender_bank_code="B",
            description="",
            payment_date=paid_at,
            payment_time=paid_at.strftime("%H:%M:%S"),
        )

    @staticmethod
    def _replace(notice, **changes):
        from dataclasses import replace

        return replace(notice, **changes)

    @staticmethod
    def _review_reason(qr, notice):
        if qr.status != "active":
            return f"qr_{qr.status}"
        if notice.payment_date > qr.due_date:
            return "past_due_date"
        if not qr.modify_amount and notice.amount_cents != qr.amount:
            return "amount_mismatch"
        return None


def test_money_and_events_stay_consistent_under_random_operations(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("QREVENTS_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("QREVENTS_DATABASE_URL", fresh_database_url(backend, tmp_path))
    app = create_app()
    with app.app_context(), database.connection_context():
        run_state_machine_as_test(
            lambda: MoneyModel(app),
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
