"""The normalized calendar event every connector receives, and its content hash.

The hash covers only what a technician sees. Fields that platforms rewrite (timestamps,
etags, sequence numbers) stay out of it, so an unchanged job never causes a write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

EventStatus = Literal["confirmed", "tentative", "cancelled"]

STAMP_PROPERTY = "X-FIELDSYNC-JOB-ID"


@dataclass(frozen=True)
class CalendarEvent:
    job_id: str  # our stamp: we only ever touch remote events that carry it
    summary: str
    start: datetime  # timezone-aware
    end: datetime  # timezone-aware
    timezone: str  # IANA zone the technician lives in; platforms render local times with it
    location: str = ""
    description: str = ""
    status: EventStatus = "confirmed"
    lat: float | None = None
    lon: float | None = None
    categories: tuple[str, ...] = ()
    # Structured job details, for platforms with custom fields: (name, value) pairs.
    details: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"event for job {self.job_id}: start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"event for job {self.job_id}: end {self.end} is not after start")

    def canonical(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "summary": self.summary,
            "start": self.start.astimezone(UTC).isoformat(),
            "end": self.end.astimezone(UTC).isoformat(),
            "timezone": self.timezone,
            "location": self.location,
            "description": self.description,
            "status": self.status,
            "lat": None if self.lat is None else round(self.lat, 6),
            "lon": None if self.lon is None else round(self.lon, 6),
            "categories": list(self.categories),
            "details": [list(pair) for pair in self.details],
        }

    def content_hash(self) -> str:
        return self._hash

    @cached_property
    def _hash(self) -> str:
        # Cached: the planner compares it once per binding, and events are immutable.
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def detail(self, name: str) -> str | None:
        for key, value in self.details:
            if key == name:
                return value
        return None
