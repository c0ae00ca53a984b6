"""The bank links' secrets at rest: sealed under QREVENTS_SECRET_KEY, which production
requires and development generates into instance/."""

import pytest

from qrevents.config import ConfigError, load_config
from qrevents.secret_box import SecretBox, SecretUnreadable

OTHER_SECRETS = {
    "QREVENTS_JWT_SECRET_KEY": "j" * 40,
    "QREVENTS_ADMIN_API_KEY": "qra_admin",
    "QREVENTS_BANK_WEBHOOK_SECRET": "w" * 40,
}


def test_a_sealed_secret_opens_only_under_its_own_key():
    box = SecretBox("one deployment key")
    sealed = box.seal("clave-del-banco")
    assert "clave-del-banco" not in sealed
    assert box.open(sealed) == "clave-del-banco"
    assert box.seal("clave-del-banco") != sealed  # a fresh IV each time
    with pytest.raises(SecretUnreadable):
        SecretBox("another key").open(sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretUnreadable):
        box.open(tampered)


def test_production_refuses_to_start_without_the_secret_key(tmp_path):
    environ = {"QREVENTS_ENV": "production", **OTHER_SECRETS}
    with pytest.raises(ConfigError, match="QREVENTS_SECRET_KEY"):
        load_config(environ, str(tmp_path))
    assert not (tmp_path / "secret_key.secret").exists()


def test_development_generates_the_secret_key_once_into_the_instance_folder(tmp_path):
    first = load_config(dict(OTHER_SECRETS), str(tmp_path))["SECRET_KEY"]
    again = load_config(dict(OTHER_SECRETS), str(tmp_path))["SECRET_KEY"]
    assert len(first) >= 32 and first == again
    assert (tmp_path / "secret_key.secret").read_text().strip() == first
