"""Each account's bank link: set by the operator, secrets sealed at rest, opened on use."""

import logging
from datetime import timedelta

from flask import current_app

from models import Account, BankLink, database

from ..banks import BankLink as Link
from ..clock import utcnow
from ..errors import BankLinkUnreadable, Conflict
from ..logs import log_event
from ..secret_box import SecretUnreadable
from .accounts import get_account

ADAPTERS = ("baneco", "simulator")


def _box():
    return current_app.extensions["qrevents.secret_box"]


def link_account(account_id, link):
    """Store (or replace) the account's link; ``(row, created)``. Never logs a secret."""
    get_account(account_id)
    box = _box()
    now = utcnow()
    values = {
        "adapter": link.adapter,
        "base_url": link.base_url,
        "user_name": link.user_name,
        "password_sealed": box.seal(link.password),
        "aes_key_sealed": box.seal(link.aes_key),
        "account_number_sealed": box.seal(link.account_number),
        "branch_code": link.branch_code,
        "updated_at": now,
    }
    with database.atomic():
        row = BankLink.get_or_none(BankLink.account == account_id)
        if row is None:
            return BankLink.create(account=account_id, created_at=now, **values), True
        BankLink.update(**values).where(BankLink.id == row.id).execute()
    return BankLink.get_by_id(row.id), False


def open_link(row):
    """The plain link (secrets opened) of a stored row, for the bank client."""
    box = _box()
    try:
        return Link(
            adapter=row.adapter,
            base_url=row.base_url,
            user_name=row.user_name,
            password=box.open(row.password_sealed),
            aes_key=box.open(row.aes_key_sealed),
            account_number=box.open(row.account_number_sealed),
            branch_code=row.branch_code,
        )
    except SecretUnreadable:
        log_event(
            "bank_link_unreadable",
            logging.ERROR,
            accountId=row.account_id,
            detail="QREVENTS_SECRET_KEY is not the one its secrets were stored with: link again",
        )
        raise BankLinkUnreadable() from None


def link_of(account_id):
    """The account's plain link; ``409 bank_not_linked`` when it has none."""
    row = BankLink.get_or_none(BankLink.account == account_id)
    if row is None:
        raise Conflict(
            "La cuenta no tiene un banco vinculado; no puede emitir QRs", code="bank_not_linked"
        )
    return open_link(row)


def linked_account_ids():
    """Accounts with a bank link and still active, oldest link first."""
    query = (
        BankLink.select(BankLink.account)
        .join(Account)
        .where(Account.active == True)  # noqa: E712 (peewee expression)
        .order_by(BankLink.id)
    )
    return [account_id for (account_id,) in query.tuples()]


def take_lease(account_id, seconds):
    """Whether this caller won the account's reconciliation round: one conditional UPDATE,
    so of every worker and host asking at once, exactly one sees a row changed."""
    now = utcnow()
    with database.atomic():
        changed = (
            BankLink.update(leased_until=now + timedelta(seconds=seconds))
            .where(
                (BankLink.account == account_id)
                & (BankLink.leased_until.is_null() | (BankLink.leased_until <= now))
            )
            .execute()
        )
    return changed == 1
