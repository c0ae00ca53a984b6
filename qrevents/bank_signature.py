"""Bank callbacks: ``X-Bank-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Banks that can send only a static credential (BANECO's notifyPaymentQR) may instead send
``Authorization: Bearer <secret>``; both are compared in constant time.
"""

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300


def sign(secret, body, timestamp=None):
    """The ``X-Bank-Signature`` header value for ``body`` (bytes)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret, body, signature_header, authorization_header, now=None):
    """Whether the request is the bank's; never raises on malformed input."""
    if signature_header:
        return _valid_signature(secret, body, signature_header, now)
    if authorization_header and authorization_header[:7].lower() == "bearer ":
        return hmac.compare_digest(authorization_header[7:].strip().encode(), secret.encode())
    return False


def _valid_signature(secret, body, header, now):
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not given:
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), given.strip().encode())
