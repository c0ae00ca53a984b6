"""``QrEventsClient``: the REST API with typed errors, and the account's event stream."""

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

import requests

from . import __version__
from .errors import Unavailable
from .money import as_amount, dumps
from .stream import EventStream
from .transport import envelope_data


@dataclass(frozen=True)
class Page:
    """One page of a listing; pass ``next_cursor`` back for the next one (None: the last)."""

    items: list
    next_cursor: str | None


class QrEventsClient:
    """A merchant's view of one qrevents account, by API key (``qrk_…``) or JWT.

    Amounts go out and come back as ``Decimal``; a float is refused. Every failure is a
    ``QrEventsError`` subclass (see ``qrevents_client.errors``).
    """

    def __init__(self, base_url, api_key=None, token=None, timeout=10.0):
        credential = api_key or token
        if not credential:
            raise ValueError("an api_key or a token is required")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {
            "Authorization": f"Bearer {credential}",
            "User-Agent": f"qrevents-client/{__version__}",
        }
        self.session = requests.Session()

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # The stream

    def events(
        self,
        last_event_id=None,
        on_id=None,
        *,
        heartbeats=False,
        heartbeat_seconds=None,
        reconnect_delay=5.0,
        max_backoff=60.0,
    ):
        """The account's events, live, resuming by itself across any disconnect (see
        ``EventStream``). Give ``last_event_id`` to resume where a previous run stopped, and
        ``on_id`` to persist each durable event's id once your loop is done with it.

        Heartbeats are yielded only with ``heartbeats=True``. A ``resync_required`` event
        means the server could not resume from ``last_event_id`` (unknown or past
        retention): reload state over REST (``qrs()``, ``payments()``, ``account()``), then
        carry on with the events that follow.
        """
        return EventStream(
            self.base_url + "/events/stream",
            self.headers,
            last_event_id=last_event_id,
            on_id=on_id,
            heartbeats=heartbeats,
            heartbeat_seconds=heartbeat_seconds,
            reconnect_delay=reconnect_delay,
            max_backoff=max_backoff,
            connect_timeout=self.timeout,
        )

    # QRs

    def create_qr(
        self,
        amount,
        currency,
        description,
        *,
        due_date=None,
        single_use=None,
        modify_amount=None,
        transaction_id=None,
    ):
        """Issue a QR; repeating it with the same ``transaction_id`` and body returns the
        same QR (safe to retry). ``due_date``: a ``datetime``, a ``date`` or ISO text."""
        body = {"amount": as_amount(amount), "currency": currency, "description": description}
        optional = {
            "dueDate": due_date.isoformat() if isinstance(due_date, date) else due_date,
            "singleUse": single_use,
            "modifyAmount": modify_amount,
            "transactionId": transaction_id,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/qr", body=body)

    def get_qr(self, qr_id):
        return self._call("GET", f"/qr/{_segment(qr_id)}")

    def list_qrs(self, status=None, limit=None, cursor=None):
        return self._page("/qr", status=status, limit=limit, cursor=cursor)

    def qrs(self, status=None, page_size=None):
        """Every QR, newest first, page after page."""
        return self._every("/qr", status=status, limit=page_size)

    def cancel_qr(self, qr_id):
        return self._call("POST", f"/qr/{_segment(qr_id)}/cancel")

    # Payments and the ledger

    def list_payments(self, limit=None, cursor=None):
        return self._page("/payments", limit=limit, cursor=cursor)

    def payments(self, page_size=None):
        """Every payment, newest first, page after page."""
        return self._every("/payments", limit=page_size)

    def release_payment(self, transaction_id):
        """Release a payment held for review into the available balance."""
        return self._call("POST", f"/payments/{_segment(transaction_id)}/release")

    def account(self):
        return self._call("GET", "/accounts/me")

    def list_movements(self, limit=None, cursor=None):
        return self._page("/accounts/me/movements", limit=limit, cursor=cursor)

    def movements(self, page_size=None):
        """Every ledger movement, newest first, page after page."""
        return self._every("/accounts/me/movements", limit=page_size)

    # Plumbing

    def _call(self, method, path, body=None, params=None):
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                data=data,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
                timeout=self.timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"qrevents did not answer: {exc}", code="connection_failed") from exc
        return envelope_data(response)

    def _page(self, path, **params):
        data = self._call("GET", path, params=params)
        return Page(data["items"], data.get("nextCursor"))

    def _every(self, path, **params):
        cursor = None
        while True:
            page = self._page(path, cursor=cursor, **params)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor


def _segment(value):
    return quote(str(value), safe="")
