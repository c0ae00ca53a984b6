"""Configuration, read once from ``QREVENTS_*`` environment variables by the app factory."""

import os
import secrets
from pathlib import Path

DEFAULTS = {
    "DATABASE_URL": None,  # None: a SQLite file in the instance folder
    "REDIS_URL": None,  # None: the in-process hub
    "REDIS_PREFIX": "qrevents:",  # keys and channels; deployments sharing a Redis differ
    # QREVENTS_REDIS_URL names a node of a Redis Cluster (7 or later): sharded pub/sub.
    "REDIS_CLUSTER": False,
    # Messages a worker may hold for Redis while it is slow; beyond, new ones are dropped
    # (the other workers read those events from the log at their next reconciliation).
    "REDIS_PUBLISH_QUEUE_SIZE": 1000,
    "JWT_SECRET_KEY": None,
    "ADMIN_API_KEY": None,
    "BANK_WEBHOOK_SECRET": None,
    # Encrypts the bank links' secrets at rest (passwords, AES keys, account numbers).
    "SECRET_KEY": None,
    "HEARTBEAT_SECONDS": 30.0,
    "RETRY_MS": 5000,
    "STREAM_QUEUE_SIZE": 1000,
    # Kernel send buffer of a stream's socket, bytes; 0 leaves it to the kernel's autotuning
    # (up to net.ipv4.tcp_wmem's max, 4 MiB here). A smaller one bounds kernel memory per
    # stream and lets a stalled reader reach STREAM_QUEUE_SIZE (slow_consumer) sooner.
    "STREAM_SEND_BUFFER": 0,
    # A write to a stream that cannot complete within this long (its reader stopped reading)
    # ends the stream and frees its slot; what the reader missed it gets by resuming.
    "STREAM_WRITE_TIMEOUT_SECONDS": 10.0,
    "MAX_STREAMS_PER_ACCOUNT": 100,
    "EVENT_RETENTION_DAYS": 7,
    "JWT_EXPIRES_SECONDS": 3600,
    # A password sign-in's refresh token (the dashboard's working day); rotated on each use.
    "REFRESH_EXPIRES_SECONDS": 43200,
    # The longest a stream cookie lives (a working day); never past its credential's expiry.
    "STREAM_COOKIE_SECONDS": 43200,
    "EXPIRY_SWEEP_SECONDS": 5.0,
    "RECONCILE_SECONDS": 1.0,
    "RETENTION_SWEEP_SECONDS": 3600.0,  # how often each worker prunes the event log
    # The bank: timeouts of its HTTP calls, and the reconciliation round (paid QRs of the day
    # and the day before, then statusQR for at most BANK_SYNC_BATCH active QRs per account).
    "BANK_CONNECT_TIMEOUT_SECONDS": 3.0,
    "BANK_READ_TIMEOUT_SECONDS": 15.0,
    "BANK_SYNC_SECONDS": 300.0,
    "BANK_SYNC_BATCH": 20,
    # Unsigned payment notifications (each one asks the bank), per client address.
    "BANK_TRIGGER_LIMIT": "60 per minute",
    # Abuse limits (flask-limiter syntax; "off" disables one), shared through Redis if set.
    "LOGIN_LIMIT_PER_EMAIL": "5 per minute",
    "LOGIN_LIMIT_PER_ADDRESS": "30 per minute",
    "API_RATE_LIMIT": "3000 per minute",  # per credential, REST API only
    # Failed authentications (a 401 for a credential given) per client address, and per
    # account for failures that name one (its revoked or expired key, its expired JWT).
    "AUTH_FAILURE_LIMIT_PER_ADDRESS": "60 per minute",
    "AUTH_FAILURE_LIMIT_PER_ACCOUNT": "60 per minute",
    # Proxies in front that set X-Forwarded-For (nginx: 1); 0 trusts no such header.
    "PROXY_HOPS": 0,
    # Webhooks (docs/WEBHOOKS in README): one attempt's whole time, the retry horizon after
    # which an endpoint is disabled, the backoff's first and largest delay (jittered), how
    # long a worker's claim on an endpoint lasts (renewed before each attempt; must exceed
    # the timeout), how often each worker looks for due endpoints, and how many endpoints one
    # worker delivers to at once. ALLOW_PRIVATE lets endpoints on private addresses through
    # (development and tests only).
    "WEBHOOK_TIMEOUT_SECONDS": 10.0,
    "WEBHOOK_RETRY_HORIZON_SECONDS": 3 * 24 * 3600.0,
    "WEBHOOK_RETRY_FIRST_SECONDS": 5.0,
    "WEBHOOK_RETRY_MAX_SECONDS": 3600.0,
    "WEBHOOK_LEASE_SECONDS": 60.0,
    "WEBHOOK_POLL_SECONDS": 1.0,
    "WEBHOOK_CONCURRENCY": 20,
    "WEBHOOK_ALLOW_PRIVATE": False,
    # Host applications' stream tokens: unset key, none trusted. The key is an HS256
    # secret, or a PEM public key (RS256/ES256), or the path of a file holding either.
    "HOST_JWT_KEY": None,
    "HOST_JWT_ALGORITHMS": "HS256",
    "HOST_JWT_ISSUER": None,
    "HOST_JWT_AUDIENCE": None,
    "HOST_JWT_ACCOUNT_CLAIM": "qrevents_account",
    "HOST_JWT_MAX_LIFETIME_SECONDS": 900,
    # Origins (comma-separated) whose pages may open the stream (CORS), e.g. a host app's.
    "CORS_ORIGINS": "",
    "BIND": "127.0.0.1:8000",
    "ENV": "development",
}

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
    """Return the ``QREVENTS_*`` settings as a dict keyed without the prefix.

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
