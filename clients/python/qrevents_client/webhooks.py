"""Checking a webhook from qrevents before trusting it.

``X-QrEvents-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed with
the endpoint's secret (``whsec_…``). Several ``v1`` may be present (while a secret is being
rotated); one matching is enough.
"""

import hashlib
import hmac
import time

from .errors import WebhookSignatureError
from .money import loads

MAX_HEADER = 4096


def verify_webhook(body, header, secret, tolerance=300, now=None):
    """The webhook's JSON (amounts as ``Decimal``) if ``header`` signs ``body`` with
    ``secret`` within ``tolerance`` seconds of now; ``WebhookSignatureError`` otherwise.

    ``body`` must be the raw bytes received (Flask: ``request.get_data()``), not re-encoded
    JSON: one changed byte and the signature no longer matches.
    """
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError("body must be the raw bytes of the request")
    timestamp, signatures = _parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise WebhookSignatureError("The webhook's signature is stale", code="stale_signature")
    expected = hmac.new(secret.encode(), b"%d." % timestamp + bytes(body), hashlib.sha256)
    expected = expected.hexdigest().encode()
    matched = False
    for given in signatures:  # every one compared, in constant time each
        matched |= hmac.compare_digest(expected, given.encode())
    if not matched:
        raise WebhookSignatureError(
            "The webhook's signature does not match", code="invalid_signature"
        )
    return loads(body)


def _parse(header):
    if not header or len(header) > MAX_HEADER:
        raise WebhookSignatureError("The webhook has no signature", code="missing_signature")
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value.isascii():
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise WebhookSignatureError(
            "The webhook's signature is malformed", code="malformed_signature"
        )
    return timestamp, signatures
