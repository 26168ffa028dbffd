"""Checks for the parameters people type into the operational flows (retry, sweep, drift).

Each failure says which parameter is wrong and what would be right, before anything runs.
"""

from __future__ import annotations

from datetime import datetime

from fieldsync.domain import CALENDAR_PLATFORMS


class BadRequest(ValueError):
    """Parameters that cannot select anything sensible; the message says which and why."""


def check_platform(platform: str | None) -> None:
    if platform is not None and platform not in CALENDAR_PLATFORMS:
        known = ", ".join(sorted(CALENDAR_PLATFORMS))
        raise BadRequest(f"unknown platform {platform!r}; known platforms: {known}")


def check_aware(name: str, moment: datetime | None) -> None:
    # A naive time would be read in whatever zone the worker runs in: refuse to guess.
    if moment is not None and moment.tzinfo is None:
        raise BadRequest(
            f"{name} {moment.isoformat()} has no time zone; "
            "give one, e.g. 2026-12-01T00:00:00-06:00"
        )


def check_days_ahead(days_ahead: int) -> None:
    if days_ahead < 1:
        raise BadRequest(f"days_ahead must be at least 1, not {days_ahead}")
