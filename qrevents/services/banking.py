"""Asking an account's bank: its client with this deployment's timeouts, and what a refusal
or an outage becomes for the caller (the adapter logs it: a warning, never a traceback or a
secret).

No database connection may be held across these calls (the bank may take seconds).
"""

from contextlib import contextmanager

from flask import current_app

from ..banks import BankRejected, BankUnavailable, open_bank
from ..errors import BankRefused, BankTimedOut


def bank_of(link):
    """The bank client of a link (cached by the adapter package: one token per link)."""
    settings = current_app.config["QREVENTS"]
    return open_bank(
        link,
        connect_timeout=settings.bank_connect_timeout_seconds,
        read_timeout=settings.bank_read_timeout_seconds,
    )


@contextmanager
def bank_answers(*, refused=BankRefused):
    """Turn the bank's refusal into ``refused`` (502 by default) with the bank's message, and
    its silence into ``504 bank_unavailable`` (the adapter has logged either, one warning line
    with the operation and the code)."""
    try:
        yield
    except BankRejected as error:
        detail = f"{refused.message}: {error.message}" if error.message else refused.message
        raise refused(detail) from None
    except BankUnavailable:
        raise BankTimedOut() from None
