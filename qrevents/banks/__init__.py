"""The banks that issue our QRs: one small interface, one module per bank.

An account's bank link names an adapter; ``open_bank`` turns the link into a client with four
operations (issue, cancel, status, paid on a day). Every adapter module exposes ``client(link,
**options)`` returning an object with those methods, and raises only the errors below, whose
texts never carry a secret or a token. Adding a bank is one module and a line in ``ADAPTERS``.
"""

import importlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date

# Adapter name -> module. The simulated bank speaks BANECO's API, so it uses BANECO's client.
ADAPTERS = {
    "baneco": "qrevents.banks.baneco",
    "simulator": "qrevents.banks.baneco",
}

STATUS_NAMES = {0: "active", 1: "paid", 9: "cancelled"}

_CLIENTS_KEPT = 256  # clients per process: more links than a deployment has


@dataclass(frozen=True)
class BankLink:
    """How an account reaches its bank: plain, decrypted values (stored encrypted elsewhere)."""

    adapter: str
    base_url: str
    user_name: str
    password: str = field(repr=False)
    aes_key: str = field(repr=False)
    account_number: str = field(repr=False)
    branch_code: str | None = None


@dataclass(frozen=True)
class QrOrder:
    """A QR to issue, in our units; the adapter speaks the bank's."""

    transaction_id: str
    amount_cents: int
    currency: str
    description: str
    due_date: date
    single_use: bool
    modify_amount: bool


@dataclass(frozen=True)
class IssuedQr:
    """What the bank issued: its QR id and the image customers scan."""

    qr_id: str
    image_png: bytes = field(repr=False)


@dataclass(frozen=True)
class QrStatus:
    """A QR as the bank sees it; ``payments`` are PaymentQR dicts exactly as the bank sent them."""

    code: int
    status: str
    payments: list = field(default_factory=list)


class BankError(Exception):
    """The bank did not do what was asked; the text never holds a secret or a token."""

    def __init__(self, operation, detail):
        super().__init__(f"{operation}: {detail}")
        self.operation = operation


class BankRejected(BankError):
    """The bank answered with a non-zero ``responseCode``; ``message`` is the bank's own."""

    def __init__(self, operation, response_code, message):
        super().__init__(operation, f"refused with responseCode {response_code}")
        self.response_code = response_code
        self.message = message


class BankUnavailable(BankError):
    """No usable answer: a timeout, a connection error, an HTTP error or a garbled body."""


def status_name(status_code):
    """``active``/``paid``/``cancelled`` for the bank's 0/1/9; anything else is ``unknown``."""
    return STATUS_NAMES.get(status_code, "unknown")


_clients = OrderedDict()
_clients_lock = None


def _lock():
    # Made on first use, so under gevent it is the patched (greenlet-aware) lock.
    global _clients_lock
    if _clients_lock is None:
        _clients_lock = threading.Lock()
    return _clients_lock


def open_bank(link, *, connect_timeout=3.0, read_timeout=15.0, **options):
    """The client for a link; cached per link (same credentials -> same object), so its token
    is reused until a minute before it expires and refreshed by one greenlet at a time.

    ``options`` go to the adapter (BANECO's: ``read_attempts``, 3 by default).
    Raises ``ValueError`` for an adapter name nobody registered.
    """
    if link.adapter not in ADAPTERS:
        raise ValueError(f"unknown bank adapter {link.adapter!r}")
    key = (link, connect_timeout, read_timeout, tuple(sorted(options.items())))
    with _lock():
        client = _clients.get(key)
        if client is None:
            module = importlib.import_module(ADAPTERS[link.adapter])
            client = module.client(
                link, connect_timeout=connect_timeout, read_timeout=read_timeout, **options
            )
            _clients[key] = client
            if len(_clients) > _CLIENTS_KEPT:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client
