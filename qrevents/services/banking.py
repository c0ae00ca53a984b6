"""Asking an account's bank: its client with this deployment's timeouts, and what a refusal
or an outage becomes for the caller (a warning in the log, never a traceback or a secret).

No database connection may be held across these calls (the bank may take seconds).
"""

import logging
from contextlib import contextmanager

from flask import current_app

from ..banks import BankRejected, BankUnavailable, open_bank
from ..errors import BankRefused, BankTimedOut

log = logging.getLogger(__name__)


def bank_of(link):
    """The bank client of a link (cached by the adapter package: one token per link)."""
    settings = current_app.config["QREVENTS"]
    return open_bank(
        link,
        connect_timeout=settings["BANK_CONNECT_TIMEOUT_SECONDS"],
        read_timeout=settings["BANK_READ_TIMEOUT_SECONDS"],
    )


@contextmanager
def bank_answers(operation, whom, *, refused=BankRefused):
    """Turn the bank's refusal into ``refused`` (502 by default) with the bank's message, and
    its silence into ``504 bank_unavailable``; both logged as a warning."""
    try:
        yield
    except BankRejected as error:
        log.warning(
            "bank refused %s for %s: code %s, %s",
            operation,
            whom,
            error.response_code,
            error.message,
        )
        detail = f"{refused.message}: {error.message}" if error.message else refused.message
        raise refused(detail) from None
    except BankUnavailable as error:
        log.warning("bank unavailable for %s for %s: %s", operation, whom, error)
        raise BankTimedOut() from None
