"""The bank's field encryption, checked against the specification's description of it:
AES-256-CBC, the 32 key characters as the key, PKCS7, a 16-byte IV prepended, base64."""

import base64

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qrevents.banks.crypto import decrypt, encrypt

KEY = "40A318B299F245C2B0C7E1D3A9F04B6E"  # 32 ASCII characters, as the bank issues them


def test_encryption_round_trips():
    for text in ("1234", "", "contraseña con ñ y espacios", "x" * 16, "1" * 100):
        assert decrypt(KEY, encrypt(KEY, text)) == text


def test_ciphertext_is_base64_of_the_iv_then_aes256_cbc_with_pkcs7():
    token = encrypt(KEY, "1234567890")
    raw = base64.b64decode(token, validate=True)
    iv, body = raw[:16], raw[16:]
    assert len(body) == 16  # ten bytes padded to one block
    decryptor = Cipher(algorithms.AES(KEY.encode("ascii")), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    assert padded[-6:] == bytes([6]) * 6  # PKCS7
    unpadder = padding.PKCS7(128).unpadder()
    assert unpadder.update(padded) + unpadder.finalize() == b"1234567890"


def test_each_encryption_draws_a_new_iv():
    tokens = {encrypt(KEY, "1234") for _ in range(20)}
    assert len(tokens) == 20
    assert len({base64.b64decode(token)[:16] for token in tokens}) == 20


@pytest.mark.parametrize(
    "token",
    [
        encrypt("B" * 32, "1234"),  # another key
        "not base64!",
        base64.b64encode(b"\0" * 16).decode(),  # an IV and no block
        base64.b64encode(b"\0" * 40).decode(),  # not whole blocks
    ],
    ids=["other-key", "not-base64", "iv-only", "partial-block"],
)
def test_text_not_encrypted_with_this_key_does_not_decrypt(token):
    with pytest.raises(ValueError):
        decrypt(KEY, token)


@pytest.mark.parametrize("key", ["short", "A" * 33, "ñ" * 32, None], ids=repr)
def test_key_must_be_32_ascii_characters(key):
    with pytest.raises(ValueError):
        encrypt(key, "1234")
