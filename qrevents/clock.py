"""Time as the contract writes it: naive UTC inside, ISO 8601 with milliseconds and ``Z`` out."""

from datetime import UTC, datetime


def utcnow():
    """Now, as the naive UTC datetime the database stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment):
    """``2024-01-15T10:00:00.000Z`` for a naive UTC datetime (None stays None)."""
    if moment is None:
        return None
    # isoformat truncates to the millisecond as the contract does, at a quarter of strftime's
    # cost (every event and log line carries a timestamp).
    return moment.isoformat(timespec="milliseconds") + "Z"


def epoch_ms(moment):
    """Milliseconds since the epoch for a naive UTC datetime."""
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)
