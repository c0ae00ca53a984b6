"""The event registry: every event type a stream carries, declared once.

``EVENT_TYPES`` says of each type whether it is durable (logged in the transaction of its
change, with an SSE id, replayed on resume and sent to webhooks), the template and pattern
of its id, and the JSON Schema of its ``data``. The OpenAPI catalogue is derived from it, and
``tests/test_event_registry.py`` fails when qrevents.js or the dashboard disagree with it.

The builders below make each event's ``(type, id, data)`` from model rows; a service records
a durable one with ``AccountChange.record``. What is committed travels as an
``EventRecord``: data, not wire bytes; each transport encodes it once, where it is first
delivered (``sse.py`` frames it for the stream).
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from models import MOVEMENT_TYPES, QR_STATUSES

from . import sse
from .clock import epoch_ms, iso, la_paz_day_end, utcnow
from .money import CURRENCIES, from_cents

# Anything that reaches an ``id:`` line; a CR or LF there would inject SSE fields.
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")

CLOSE_REASONS = (
    "token_expired",
    "key_revoked",
    "server_shutdown",
    "slow_consumer",
    "overloaded",
    "too_many_streams",
    "replay_failed",
)
RESYNC_REASONS = ("unknown", "expired")
# Who told us of a QR's new status: its merchant, the bank's API, a payment, the expiry sweep.
SYNC_SOURCES = ("user", "bank_api", "payment", "scheduler")

# The values in events' data, as JSON Schema.
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
NULLABLE_STRING = {"type": ["string", "null"]}
MOMENT = {
    "type": "string",
    "description": "ISO 8601 UTC with milliseconds, e.g. 2024-01-15T10:00:00.000Z",
}
AMOUNT = {"type": "number", "description": "Exact, two decimals (100.50)"}
CURRENCY = {"type": "string", "enum": list(CURRENCIES)}
QR_STATUS = {"type": "string", "enum": list(QR_STATUSES)}


def _enum(values):
    return {"type": "string", "enum": list(values)}


@dataclass(frozen=True)
class EventType:
    """One event type of the stream: what a client may rely on about it."""

    name: str
    durable: bool
    fields: dict  # data key -> JSON Schema; exactly these keys, all present
    id_template: str | None = None  # durable only: how its SSE id is made
    id_pattern: str | None = None

    @property
    def data_schema(self):
        """The JSON Schema of this event's ``data`` (a key added in code must be added here)."""
        return {
            "type": "object",
            "properties": self.fields,
            "required": list(self.fields),
            "additionalProperties": False,
        }


QR_FIELDS = {
    "qrId": STRING,
    "transactionId": STRING,
    "amount": AMOUNT,
    "currency": CURRENCY,
    "description": STRING,
    "dueDate": MOMENT,
    "singleUse": BOOLEAN,
    "modifyAmount": BOOLEAN,
    "status": QR_STATUS,
}

EVENT_TYPES = {
    event.name: event
    for event in (
        EventType(
            "connection",
            durable=False,
            fields={
                "message": STRING,
                "accountId": INTEGER,
                "userId": {"type": ["integer", "null"]},
                "connectionId": {**STRING, "pattern": "^conn_[0-9]+_[a-z0-9]{6}$"},
                "authType": _enum(["apikey", "jwt"]),
                "tokenSource": _enum(["query", "header"]),
                "timestamp": MOMENT,
                "resumed": BOOLEAN,
                "replayed": INTEGER,
            },
        ),
        EventType("heartbeat", durable=False, fields={"timestamp": MOMENT, "connectionId": STRING}),
        EventType(
            "qr_created",
            durable=True,
            fields=QR_FIELDS,
            id_template="qr_created_<qrId>",
            id_pattern="^qr_created_[0-9]{20}$",
        ),
        EventType(
            "qr_payment",
            durable=True,
            fields={
                "qrId": STRING,
                "transactionId": STRING,
                "amount": AMOUNT,
                "currency": CURRENCY,
                "senderName": STRING,
                "senderDocumentId": STRING,
                "senderAccount": STRING,
                "senderBankCode": STRING,
                "description": STRING,
                "paymentDate": MOMENT,
                "paymentTime": STRING,
                "singleUse": BOOLEAN,
                "newStatus": QR_STATUS,
                "review": BOOLEAN,
                "reviewReason": NULLABLE_STRING,
            },
            id_template="qr_payment_<payment transactionId>",
            id_pattern="^qr_payment_[A-Za-z0-9_.:-]{1,64}$",
        ),
        EventType(
            "qr_status_change",
            durable=True,
            fields={
                "qrId": STRING,
                "previousStatus": QR_STATUS,
                "newStatus": QR_STATUS,
                "amount": AMOUNT,
                "currency": CURRENCY,
                "description": STRING,
                "singleUse": BOOLEAN,
                "dueDate": MOMENT,
                "syncSource": _enum(SYNC_SOURCES),
            },
            id_template="qr_status_change_<qrId>_<ms>",
            id_pattern="^qr_status_change_[0-9]{20}_[0-9]+$",
        ),
        EventType(
            "account_balance_update",
            durable=True,
            fields={
                "accountId": INTEGER,
                "movementType": _enum(MOVEMENT_TYPES),
                "amount": AMOUNT,
                "previousBalance": AMOUNT,
                "newBalance": AMOUNT,
                "previousAvailableBalance": AMOUNT,
                "newAvailableBalance": AMOUNT,
                "description": STRING,
                "qrId": NULLABLE_STRING,
                "transactionId": NULLABLE_STRING,
                "currency": CURRENCY,
            },
            id_template="balance_update_<ms>_<movement seq>",
            id_pattern="^balance_update_[0-9]+_[0-9]+$",
        ),
        EventType(
            "stream_closed",
            durable=False,
            fields={"reason": _enum(CLOSE_REASONS), "timestamp": MOMENT},
        ),
        EventType(
            "resync_required",
            durable=False,
            fields={"lastEventId": STRING, "reason": _enum(RESYNC_REASONS)},
        ),
    )
}
DURABLE_TYPES = tuple(name for name, event in EVENT_TYPES.items() if event.durable)

# The shapes of our durable ids (see the builders below); the time in a status change's and a
# balance update's id, and the bank's La Paz date heading a qrId, say when the event was written.
DURABLE_ID = re.compile(
    r"(?:qr_created_(?P<qr_date>\d{6})\d{14}"
    r"|qr_payment_[A-Za-z0-9_.:-]{1,64}"
    r"|qr_status_change_\d{20}_(?P<status_ms>\d{13})"
    r"|balance_update_(?P<balance_ms>\d{13})_\d{1,19})\Z"
)


def latest_time_of_durable_id(event_id):
    """The latest time (naive UTC) at which an id of our shape says its event was written,
    or None: a payment's id is the bank's transaction id and tells no time; a qrId tells
    its day only, so the end of that day."""
    match = DURABLE_ID.match(event_id)
    if match is None:
        return None
    if match["qr_date"]:
        try:
            return la_paz_day_end(datetime.strptime(match["qr_date"], "%y%m%d").date())
        except ValueError:
            return None
    stamp = match["status_ms"] or match["balance_ms"]
    if stamp is None:
        return None
    return datetime.fromtimestamp(int(stamp) / 1000, UTC).replace(tzinfo=None)


class EventRecord:
    """A committed durable event as data: its place in its account's log, its type and id,
    and its ``data`` as the JSON text the log keeps.

    ``frame`` (its SSE bytes) is encoded once, on first use, and shared after that by every
    stream of the worker and by the webhooks' and the broker's readers; ``chunk`` is the
    stream writer's cache of that frame as an HTTP chunk (``stream.chunk_of``).
    """

    __slots__ = ("account_id", "seq", "event_type", "event_id", "data", "_frame", "chunk")

    def __init__(self, account_id, seq, event_type, event_id, data, frame=None):
        self.account_id = account_id
        self.seq = seq
        self.event_type = event_type
        self.event_id = event_id
        self.data = data
        self._frame = frame  # given when the event came already framed (an old worker's)
        self.chunk = None

    @property
    def frame(self):
        frame = self._frame
        if frame is None:
            frame = self._frame = sse.encode_frame(self.event_type, self.data, self.event_id)
        return frame

    def __repr__(self):
        return f"<EventRecord {self.account_id}:{self.seq} {self.event_id}>"


# Durable events: (event type, SSE id, data) for AccountChange.record.


def qr_created(qr):
    data = {
        "qrId": qr.qr_id,
        "transactionId": qr.transaction_id,
        "amount": from_cents(qr.amount_cents),
        "currency": qr.currency,
        "description": qr.description,
        "dueDate": iso(qr.due_date),
        "singleUse": qr.single_use,
        "modifyAmount": qr.modify_amount,
        "status": qr.status,
    }
    return "qr_created", f"qr_created_{qr.qr_id}", data


def qr_payment(payment, qr):
    data = {
        "qrId": qr.qr_id,
        "transactionId": payment.transaction_id,
        "amount": from_cents(payment.amount_cents),
        "currency": payment.currency,
        "senderName": payment.sender_name,
        "senderDocumentId": payment.sender_document_id,
        "senderAccount": payment.sender_account,
        "senderBankCode": payment.sender_bank_code,
        "description": payment.description,
        "paymentDate": iso(payment.payment_date),
        "paymentTime": payment.payment_time,
        "singleUse": qr.single_use,
        "newStatus": qr.status,
        "review": payment.review,
        "reviewReason": payment.review_reason,
    }
    return "qr_payment", f"qr_payment_{payment.transaction_id}", data


def qr_status_change(qr, previous_status, sync_source):
    """Call after ``qr.status`` and ``qr.status_changed_ms`` hold the new state."""
    data = {
        "qrId": qr.qr_id,
        "previousStatus": previous_status,
        "newStatus": qr.status,
        "amount": from_cents(qr.amount_cents),
        "currency": qr.currency,
        "description": qr.description,
        "singleUse": qr.single_use,
        "dueDate": iso(qr.due_date),
        "syncSource": sync_source,
    }
    return "qr_status_change", f"qr_status_change_{qr.qr_id}_{qr.status_changed_ms}", data


def account_balance_update(account, movement, previous_balance, previous_available):
    data = {
        "accountId": account.id,
        "movementType": movement.movement_type,
        "amount": from_cents(movement.amount_cents),
        "previousBalance": from_cents(previous_balance),
        "newBalance": from_cents(movement.balance_after_cents),
        "previousAvailableBalance": from_cents(previous_available),
        "newAvailableBalance": from_cents(movement.available_after_cents),
        "description": movement.description,
        "qrId": movement.qr_id,
        "transactionId": movement.transaction_id,
        "currency": account.currency,
    }
    event_id = f"balance_update_{epoch_ms(movement.created_at)}_{movement.seq}"
    return "account_balance_update", event_id, data


# Ephemeral events: no ``id:`` line, so Last-Event-ID always names a durable event.


def connection(identity, connection_id, resumed, replayed):
    data = {
        "message": "Conectado exitosamente a eventos de la cuenta",
        "accountId": identity.account_id,
        "userId": identity.user_id,
        "connectionId": connection_id,
        "authType": identity.auth_type,
        "tokenSource": identity.token_source,
        "timestamp": iso(utcnow()),
        "resumed": resumed,
        "replayed": replayed,
    }
    return "connection", None, data


def heartbeat(connection_id):
    return "heartbeat", None, {"timestamp": iso(utcnow()), "connectionId": connection_id}


def stream_closed(reason):
    return "stream_closed", None, {"reason": reason, "timestamp": iso(utcnow())}


def resync_required(last_event_id, reason):
    """The client's Last-Event-ID cannot be resumed (``reason`` in RESYNC_REASONS): it must
    reload state over REST. The id is the client's own text; ``sse.encode_frame`` escapes
    the line separators a Python client would split on."""
    return "resync_required", None, {"lastEventId": last_event_id, "reason": reason}
