"""Secrets at rest (a bank link's password, AES key and account number; a webhook's signing
secret), sealed with Fernet.

Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``) authenticates what it
decrypts: a tampered or foreign value fails instead of decrypting to garbage. Its key is
derived from ``QREVENTS_SECRET_KEY`` with HKDF, so any long random string serves as the
setting; changing the setting makes the stored secrets unreadable (link again).
"""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PURPOSE = b"qrevents bank link secrets v1"
WEBHOOK_PURPOSE = b"qrevents webhook secrets v1"  # its own key: one kind never opens another


class SecretUnreadable(Exception):
    """A stored secret was sealed with another key, or altered."""


class SecretBox:
    """Seals and opens short secrets with the deployment's key."""

    def __init__(self, secret_key, purpose=_PURPOSE):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, text):
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, sealed):
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SecretUnreadable("a stored secret cannot be decrypted") from None
