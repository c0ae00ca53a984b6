"""Time as the contract writes it: naive UTC inside, ISO 8601 with milliseconds and ``Z`` out."""

from datetime import UTC, date, datetime, timedelta, timezone

# Bolivia keeps UTC-4 all year: the bank's dates and a bare dueDate are La Paz days.
LA_PAZ = timezone(timedelta(hours=-4), "America/La_Paz")


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


def la_paz_today(now_utc=None):
    """The La Paz date at ``now_utc`` (naive UTC; default now)."""
    return ((now_utc or utcnow()) + LA_PAZ.utcoffset(None)).date()


def la_paz_day_end(day: date):
    """The naive UTC moment a La Paz ``day`` ends."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time()) - LA_PAZ.utcoffset(None)
