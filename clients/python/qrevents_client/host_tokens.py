"""Stream tokens minted by a host application (a legacy Flask app that signs its own users in).

The host app signs a short-lived JWT naming the qrevents account; its user's browser opens the
stream with it, and no user or key is copied into qrevents. The deployment must trust the same
secret, issuer, audience and account claim (its settings). HS256 only: RS256/ES256 need a
cryptography library, which this package does not depend on (PyJWT signs the same claims).
"""

import base64
import hashlib
import hmac
import json
import time


def host_token(
    secret,
    *,
    account_id,
    issuer,
    audience,
    claim="qrevents_account",
    subject=None,
    lifetime=300,
    now=None,
):
    """An HS256 JWT for ``account_id`` valid ``lifetime`` seconds (keep it short: the stream
    ends when it expires, and the browser asks the host app for a new one)."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    issued = int(time.time() if now is None else now)
    claims = {"iss": issuer, "aud": audience, "iat": issued, "exp": issued + int(lifetime)}
    claims[claim] = account_id
    if subject is not None:
        claims["sub"] = str(subject)
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    key = secret.encode() if isinstance(secret, str) else secret
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{_base64url(signature)}"


def _segment(value):
    return _base64url(json.dumps(value, separators=(",", ":")).encode())


def _base64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
