"""The SSE wire format: event ids, payloads as docs/CONTRACT.md lists them, frame encoding.

The contract can be read in this one module. Payload builders take model rows and return
the ``data`` object; ``encode_frame`` turns an event into the bytes written to a stream.
Durable frames are encoded once, at commit, and shared by every subscriber and by replay.
"""

import random
import re
import string
import time
from datetime import UTC, datetime, timedelta

import simplejson

from .clock import epoch_ms, iso, utcnow
from .money import from_cents

# Anything that reaches an ``id:`` line; a CR or LF there would inject SSE fields.
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")

DURABLE_TYPES = ("qr_created", "qr_payment", "qr_status_change", "account_balance_update")
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
# The shapes of our durable ids (see the builders below); the time in a status change's and a
# balance update's id, and the UTC date heading a qrId, say when the event was written.
DURABLE_ID = re.compile(
    r"(?:qr_created_(?P<qr_date>\d{6})\d{14}"
    r"|qr_payment_[A-Za-z0-9_.:-]{1,64}"
    r"|qr_status_change_\d{20}_(?P<status_ms>\d{13})"
    r"|balance_update_(?P<balance_ms>\d{13})_\d{1,19})\Z"
)
_ALPHABET = string.ascii_lowercase + string.digits


def dumps(data):
    """Compact JSON with exact two-place amounts (``Decimal`` written as a number)."""
    return simplejson.dumps(data, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


def encode_frame(event_type, data_json, event_id=None):
    """One SSE frame; ``data_json`` is already JSON (no raw newlines by construction)."""
    head = f"id: {event_id}\nevent: {event_type}\n" if event_id else f"event: {event_type}\n"
    return f"{head}data: {data_json}\n\n".encode()


def http_chunk(data):
    """``data`` as one HTTP/1.1 chunk, for writing to a chunked response's socket directly."""
    return b"%X\r\n%b\r\n" % (len(data), data)


def retry_frame(retry_ms):
    """The reconnection delay a client should use."""
    return f"retry: {int(retry_ms)}\n\n".encode()


def jittered_retry_frame(low_ms, high_ms):
    """A reconnection delay drawn in ``[low_ms, high_ms]``: clients a restart or a limit sent
    away together do not all come back in the same instant."""
    return retry_frame(random.randint(low_ms, high_ms))


def new_connection_id():
    """``conn_<ms>_<6 random chars>``: it names a connection in logs, it guards nothing."""
    value, suffix = random.randrange(36**6), []
    for _ in range(6):
        value, digit = divmod(value, 36)
        suffix.append(_ALPHABET[digit])
    return f"conn_{int(time.time() * 1000)}_{''.join(suffix)}"


# Ephemeral frames: no ``id:`` line, so Last-Event-ID always names a durable event.


def connection_frame(identity, connection_id, resumed, replayed):
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
    return encode_frame("connection", dumps(data))


def heartbeat_frame(connection_id):
    data = {"timestamp": iso(utcnow()), "connectionId": connection_id}
    return encode_frame("heartbeat", dumps(data))


def stream_closed_frame(reason):
    return encode_frame("stream_closed", dumps({"reason": reason, "timestamp": iso(utcnow())}))


def resync_required_frame(last_event_id, reason):
    """The client's Last-Event-ID cannot be resumed (``reason`` in RESYNC_REASONS): it must
    reload state over REST. The id is the client's own text, so line separators that a
    Python client would split on are escaped as well (JSON already escapes CR and LF)."""
    data = dumps({"lastEventId": last_event_id, "reason": reason})
    for char in ("\u2028", "\u2029", "\x85"):
        data = data.replace(char, f"\\u{ord(char):04x}")
    return encode_frame("resync_required", data)


def latest_time_of_durable_id(event_id):
    """The latest time (naive UTC) at which an id of our shape says its event was written,
    or None: a payment's id is the bank's transaction id and tells no time; a qrId tells
    its day only, so the end of that day."""
    match = DURABLE_ID.match(event_id)
    if match is None:
        return None
    if match["qr_date"]:
        try:
            return datetime.strptime(match["qr_date"], "%y%m%d") + timedelta(days=1)
        except ValueError:
            return None
    stamp = match["status_ms"] or match["balance_ms"]
    if stamp is None:
        return None
    return datetime.fromtimestamp(int(stamp) / 1000, UTC).replace(tzinfo=None)


# Durable events: (event type, SSE id, data) for the event log.


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
