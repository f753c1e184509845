"""UTC hours: the explicit hourly grid every part of artq works on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from artq.errors import InputError

HOUR = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def floor_hour(t: datetime) -> datetime:
    """The start of the hour containing ``t``, as an aware UTC datetime."""
    return as_utc(t).replace(minute=0, second=0, microsecond=0)


def as_utc(t: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken to be UTC already (how SQLite returns them)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def last_complete_hour(now: datetime | None = None) -> datetime:
    """The forecast origin: the start of the last hour that has fully elapsed."""
    return floor_hour(now or utcnow()) - HOUR


def parse_hour(text: str, *, name: str = "hour") -> datetime:
    """Parse an ISO 8601 time (UTC if no offset) that must fall on a whole hour."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"`{name}` must be an ISO 8601 time such as 2026-11-26T08:00Z. Got {text!r}."
        ) from None
    t = as_utc(t)
    if t != floor_hour(t):
        raise InputError(f"`{name}` must fall on a whole UTC hour (minutes and seconds zero). Got {text!r}.")
    return t


def to_ms(t: datetime) -> int:
    return int(as_utc(t).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
