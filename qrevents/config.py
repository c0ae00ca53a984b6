"""Configuration, read once from ``QREVENTS_*`` environment variables by the app factory."""

import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """The deployment's settings, read once by the app factory from ``QREVENTS_<NAME>``
    variables (``load_config``) and frozen: ``app.config["QREVENTS"]``."""

    database_url: str | None = None  # None: a SQLite file in the instance folder
    redis_url: str | None = None  # None: the in-process hub
    redis_prefix: str = "qrevents:"  # keys and channels; deployments sharing a Redis differ
    # QREVENTS_REDIS_URL names a node of a Redis Cluster (7 or later): sharded pub/sub.
    redis_cluster: bool = False
    # Messages a worker may hold for Redis while it is slow; beyond, new ones are dropped
    # (the other workers read those events from the log at their next reconciliation).
    redis_publish_queue_size: int = 1000
    jwt_secret_key: str | None = None
    admin_api_key: str | None = None
    bank_webhook_secret: str | None = None
    # Encrypts the bank links' secrets at rest (passwords, AES keys, account numbers).
    secret_key: str | None = None
    heartbeat_seconds: float = 30.0
    retry_ms: int = 5000
    stream_queue_size: int = 1000
    # Kernel send buffer of a stream's socket, bytes; 0 leaves it to the kernel's autotuning
    # (up to net.ipv4.tcp_wmem's max, 4 MiB here). A smaller one bounds kernel memory per
    # stream and lets a stalled reader reach STREAM_QUEUE_SIZE (slow_consumer) sooner.
    stream_send_buffer: int = 0
    # A write to a stream that cannot complete within this long (its reader stopped reading)
    # ends the stream and frees its slot; what the reader missed it gets by resuming.
    stream_write_timeout_seconds: float = 10.0
    max_streams_per_account: int = 100
    event_retention_days: int = 7
    jwt_expires_seconds: int = 3600
    # A password sign-in's refresh token (the dashboard's working day); rotated on each use.
    refresh_expires_seconds: int = 43200
    # The longest a stream cookie lives (a working day); never past its credential's expiry.
    stream_cookie_seconds: int = 43200
    expiry_sweep_seconds: float = 5.0
    reconcile_seconds: float = 1.0
    retention_sweep_seconds: float = 3600.0  # how often each worker prunes the event log
    # The bank: timeouts of its HTTP calls, and the reconciliation round (paid QRs of the day
    # and the day before, then statusQR for at most BANK_SYNC_BATCH active QRs per account).
    bank_connect_timeout_seconds: float = 3.0
    bank_read_timeout_seconds: float = 15.0
    bank_sync_seconds: float = 300.0
    bank_sync_batch: int = 20
    # Unsigned payment notifications (each one asks the bank), per client address.
    bank_trigger_limit: str = "60 per minute"
    # Abuse limits (flask-limiter syntax; "off" disables one), shared through Redis if set.
    login_limit_per_email: str = "5 per minute"
    login_limit_per_address: str = "30 per minute"
    api_rate_limit: str = "3000 per minute"  # per credential, REST API only
    # Failed authentications (a 401 for a credential given) per client address, and per
    # account for failures that name one (its revoked or expired key, its expired JWT).
    auth_failure_limit_per_address: str = "60 per minute"
    auth_failure_limit_per_account: str = "60 per minute"
    # Proxies in front that set X-Forwarded-For (nginx: 1); 0 trusts no such header.
    proxy_hops: int = 0
    # Webhooks (docs/WEBHOOKS in README): one attempt's whole time, the retry horizon after
    # which an endpoint is disabled, the backoff's first and largest delay (jittered), how
    # long a worker's claim on an endpoint lasts (renewed before each attempt; must exceed
    # the timeout), how often each worker looks for due endpoints, and how many endpoints one
    # worker delivers to at once. ALLOW_PRIVATE lets endpoints on private addresses through
    # (development and tests only).
    webhook_timeout_seconds: float = 10.0
    webhook_retry_horizon_seconds: float = 3 * 24 * 3600.0
    webhook_retry_first_seconds: float = 5.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_lease_seconds: float = 60.0
    webhook_poll_seconds: float = 1.0
    webhook_concurrency: int = 20
    webhook_allow_private: bool = False
    # Host applications' stream tokens: unset key, none trusted. The key is an HS256
    # secret, or a PEM public key (RS256/ES256), or the path of a file holding either.
    host_jwt_key: str | None = None
    host_jwt_algorithms: str = "HS256"
    host_jwt_issuer: str | None = None
    host_jwt_audience: str | None = None
    host_jwt_account_claim: str = "qrevents_account"
    host_jwt_max_lifetime_seconds: int = 900
    # Origins (comma-separated) whose pages may open the stream (CORS), e.g. a host app's.
    cors_origins: str = ""
    bind: str = "127.0.0.1:8000"
    env: str = "development"
    # Derived by load_config from the HOST_JWT_* settings (``host_jwt_settings``).
    host_jwt: dict | None = None

    @classmethod
    def from_mapping(cls, mapping):
        """The settings of a mapping keyed by the variables' names without the prefix
        (``load_config``'s, with a test's overrides); unset ones keep their default."""
        return cls(**{name.lower(): value for name, value in mapping.items()})


# The variables load_config reads, and their defaults.
DEFAULTS = {f.name.upper(): f.default for f in fields(Settings) if f.name != "host_jwt"}

SECRETS = ("JWT_SECRET_KEY", "ADMIN_API_KEY", "BANK_WEBHOOK_SECRET", "SECRET_KEY")


class ConfigError(RuntimeError):
    """The deployment is misconfigured; the message says what to set."""


def _coerce(default, raw):
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_config(environ, instance_path):
    """Return the ``QREVENTS_*`` settings as a dict keyed without the prefix (the input of
    ``Settings.from_mapping``).

    Outside production a missing secret is generated once and kept in the instance folder
    (the demo needs no set-up); in production it is a start-up error.
    """
    config = {}
    for name, default in DEFAULTS.items():
        raw = environ.get(f"QREVENTS_{name}")
        config[name] = default if raw in (None, "") else _coerce(default, raw)
    if config["DATABASE_URL"] is None:
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'qrevents.db'}"
    missing = [name for name in SECRETS if not config[name]]
    if missing and config["ENV"] == "production":
        names = ", ".join(f"QREVENTS_{name}" for name in missing)
        raise ConfigError(f"production start refused: set {names}")
    for name in missing:
        config[name] = _instance_secret(instance_path, name)
    _check_webhooks(config)
    config["HOST_JWT"] = host_jwt_settings(config)
    return config


def _check_webhooks(config):
    if config["WEBHOOK_LEASE_SECONDS"] < config["WEBHOOK_TIMEOUT_SECONDS"] + 5:
        raise ConfigError(
            "QREVENTS_WEBHOOK_LEASE_SECONDS must exceed QREVENTS_WEBHOOK_TIMEOUT_SECONDS by "
            "5 s at least: a claim that lapses mid-attempt lets a second worker deliver"
        )
    if config["WEBHOOK_ALLOW_PRIVATE"] and config["ENV"] == "production":
        raise ConfigError("QREVENTS_WEBHOOK_ALLOW_PRIVATE is for development, not production")


HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}
PUBLIC_KEY_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}


def host_jwt_settings(config):
    """The trust in host applications' tokens, checked whole; None when no key is set.

    One kind of key per deployment: an HMAC secret for HS*, a PEM public key for RS*/ES*.
    Mixing them would let a public key serve as an HMAC secret (algorithm confusion).
    """
    key = config["HOST_JWT_KEY"]
    if not key:
        return None
    if not key.lstrip().startswith("-----BEGIN") and Path(key).is_file():
        key = Path(key).read_text()
    algorithms = [a.strip() for a in config["HOST_JWT_ALGORITHMS"].split(",") if a.strip()]
    is_pem = key.lstrip().startswith("-----BEGIN")
    unknown = set(algorithms) - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
    if not algorithms or unknown:
        raise ConfigError(f"QREVENTS_HOST_JWT_ALGORITHMS: unknown {sorted(unknown) or 'none'}")
    if is_pem and set(algorithms) & HMAC_ALGORITHMS:
        raise ConfigError("QREVENTS_HOST_JWT_KEY is a PEM key: use RS256/ES256, not HS*")
    if not is_pem and set(algorithms) & PUBLIC_KEY_ALGORITHMS:
        raise ConfigError("RS256/ES256 need QREVENTS_HOST_JWT_KEY to be a PEM public key")
    if not is_pem and len(key.encode()) < 32:
        raise ConfigError("QREVENTS_HOST_JWT_KEY: an HS256 secret needs 32 bytes at least")
    if not config["HOST_JWT_ISSUER"] or not config["HOST_JWT_AUDIENCE"]:
        raise ConfigError("set QREVENTS_HOST_JWT_ISSUER and QREVENTS_HOST_JWT_AUDIENCE too")
    return {
        "key": key,
        "algorithms": algorithms,
        "issuer": config["HOST_JWT_ISSUER"],
        "audience": config["HOST_JWT_AUDIENCE"],
        "account_claim": config["HOST_JWT_ACCOUNT_CLAIM"],
        "max_lifetime": config["HOST_JWT_MAX_LIFETIME_SECONDS"],
    }


def _instance_secret(instance_path, name):
    """A development secret kept in ``instance/`` so it survives restarts."""
    path = Path(instance_path) / f"{name.lower()}.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = "qra_" if name == "ADMIN_API_KEY" else ""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(prefix + secrets.token_urlsafe(32))
    return path.read_text().strip()
