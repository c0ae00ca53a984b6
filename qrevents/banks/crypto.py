"""The bank's field encryption: AES-256-CBC, PKCS7, a random IV prepended, all in base64.

BANECO encrypts the password and the account number this way (section 3 of its
specification); the key is the 32 ASCII characters the bank issued, used as the raw 256-bit
key. The `cryptography`
package does the cipher and the padding; nothing here is a primitive of our own. The bank's
own ``encrypt`` endpoint takes the key in its URL and is never called.
"""

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

IV_BYTES = 16
KEY_CHARS = 32


def _key(aes_key):
    """The raw key: exactly 32 ASCII characters, as the bank issues it."""
    if not isinstance(aes_key, str) or len(aes_key) != KEY_CHARS or not aes_key.isascii():
        raise ValueError("the bank's AES key must be 32 ASCII characters")
    return aes_key.encode("ascii")


def encrypt(aes_key, text):
    """``base64(iv + AES-256-CBC(PKCS7(text)))`` with a fresh random IV."""
    iv = os.urandom(IV_BYTES)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(aes_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt(aes_key, token):
    """The text inside ``encrypt``'s output; ``ValueError`` if it is not one made with this key."""
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, TypeError) as exc:
        raise ValueError("not base64") from exc
    iv, body = raw[:IV_BYTES], raw[IV_BYTES:]
    if len(iv) != IV_BYTES or not body or len(body) % IV_BYTES:
        raise ValueError("not an IV followed by whole AES blocks")
    decryptor = Cipher(algorithms.AES(_key(aes_key)), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError as exc:  # bad padding or not UTF-8: a wrong key or a forged value
        raise ValueError("does not decrypt with this key") from exc
