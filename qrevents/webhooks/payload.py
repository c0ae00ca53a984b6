"""What a webhook carries: the body, and the headers that sign and name it (docs/CONTRACT.md).

The body is ``{id, type, accountId, seq, createdAt, data}``; ``data`` is the event's JSON as
the log stores it and the stream sends it, inserted byte for byte, never re-encoded.
"""

import json
import secrets

from flask import current_app

from .. import __version__, bank_signature
from ..clock import iso

SECRET_PREFIX = "whsec_"
USER_AGENT = f"qrevents/{__version__}"


def new_secret():
    """An endpoint's signing secret: 256 random bits, shown once."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def store_secret(secret):
    """The secret as stored: sealed with ``QREVENTS_SECRET_KEY`` (it must be read back to
    sign, so it cannot be a hash); a database dump alone cannot sign for qrevents."""
    return current_app.extensions["qrevents.webhook_secret_box"].seal(secret)


def signing_secret(stored):
    """The secret to sign with; ``SecretUnreadable`` if sealed under another key."""
    return current_app.extensions["qrevents.webhook_secret_box"].open(stored)


def new_delivery_id():
    return "dlv_" + secrets.token_hex(12)


def body(event, account_id):
    """The POST body of one event row (``Event``: seq, event_type, event_id, data, created_at)."""
    head = json.dumps(
        {
            "id": event.event_id,
            "type": event.event_type,
            "accountId": account_id,
            "seq": event.seq,
            "createdAt": iso(event.created_at),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return (head[:-1] + ',"data":' + event.data + "}").encode()


def headers(raw_body, secret, event_id, delivery_id, timestamp=None):
    """The signed headers: the same ``t=,v1=`` scheme the bank uses toward us."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-QrEvents-Signature": bank_signature.sign(secret, raw_body, timestamp),
        "X-QrEvents-Event-Id": event_id,
        "X-QrEvents-Delivery-Id": delivery_id,
    }
