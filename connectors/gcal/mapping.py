"""CalendarEvent <-> Google Calendar's Events resource: event ids, content, our job stamp.

Ids. We choose the event id: base32hex (Google's id alphabet, a-v and 0-9) of the SHA-256 of
the idempotency key, 52 characters, so a retried create asks for the same id again (what a 409
then means is the connector's business, in connector.py).

Ownership. Our events carry {"fieldsyncJobId": job id} in extendedProperties.private;
`stamp_of` reads it, and `decode_event` answers (None, None) for an event without it.

Content. summary, description, location; start/end as {dateTime in the technician's zone,
timeZone: that zone}; status; transparency opaque. The job id, lat/lon, categories and details
go into private extended properties (categories and details as JSON cut into 1000-character
values, Google allowing 1024), so read() returns exactly the CalendarEvent pushed. Every write
sends sendUpdates=none and no attendees: a sync must never mail a technician's customers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import RemoteRef
from fieldsync.events import CalendarEvent, EventStatus

__all__ = [
    "STAMP_KEY",
    "EventEncodingError",
    "decode_event",
    "event_body",
    "event_id_for",
    "ref_of",
    "stamp_of",
]

STAMP_KEY = "fieldsyncJobId"

_LAT_KEY = "fieldsyncLat"
_LON_KEY = "fieldsyncLon"
_EXTRA_KEY = "fieldsyncExtra"  # + part number
_EXTRA_PARTS_KEY = "fieldsyncExtraParts"
_EXTRA_CHUNK = 1000
# Google allows 32 kB of extended properties per event; leave room for the fixed keys.
_MAX_EXTRA_PARTS = 24


def event_id_for(key: str) -> str:
    """The event id a create with this idempotency key uses: [a-v0-9], 52 characters."""
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


class EventEncodingError(ValueError):
    """The event cannot be represented on Google Calendar."""


def event_body(event: CalendarEvent, *, for_patch: bool = False) -> dict[str, Any]:
    """The Events resource fields we own. A patch also clears what an older version had set."""
    try:
        zone = ZoneInfo(event.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise EventEncodingError(f"unknown time zone {event.timezone!r}") from None
    extra = json.dumps(
        {"categories": list(event.categories), "details": [list(p) for p in event.details]},
        ensure_ascii=True,
        separators=(",", ":"),
    )
    chunks = [extra[i : i + _EXTRA_CHUNK] for i in range(0, len(extra), _EXTRA_CHUNK)]
    if len(chunks) > _MAX_EXTRA_PARTS:
        raise EventEncodingError(
            f"categories and details take {len(extra)} characters, more than Google's "
            "extended properties hold"
        )
    private: dict[str, str | None] = {STAMP_KEY: event.job_id, _EXTRA_PARTS_KEY: str(len(chunks))}
    private.update({f"{_EXTRA_KEY}{i}": chunk for i, chunk in enumerate(chunks)})
    for key, value in ((_LAT_KEY, event.lat), (_LON_KEY, event.lon)):
        if value is not None:
            private[key] = repr(float(value))
        elif for_patch:
            private[key] = None  # null removes the key: the job lost its coordinates
    return {
        "summary": event.summary,
        "description": event.description,
        "location": event.location,
        "start": _time_spec(event.start, zone, event.timezone, for_patch),
        "end": _time_spec(event.end, zone, event.timezone, for_patch),
        "status": event.status,
        "transparency": "opaque",
        "extendedProperties": {"private": private},
    }


def _time_spec(when: datetime, zone: ZoneInfo, name: str, for_patch: bool) -> dict[str, Any]:
    # The wall time in the technician's zone plus the zone's name: Google then renders and
    # recurs in that zone, never in an offset we would have had to guess.
    spec: dict[str, Any] = {"dateTime": when.astimezone(zone).isoformat(), "timeZone": name}
    if for_patch:
        spec["date"] = None  # patch merges objects: an all-day edit by hand must not linger
    return spec


def _private(item: Mapping[str, Any]) -> Mapping[str, Any]:
    props = item.get("extendedProperties")
    private = props.get("private") if isinstance(props, Mapping) else None
    return private if isinstance(private, Mapping) else {}


def stamp_of(item: Mapping[str, Any]) -> str | None:
    job_id = _private(item).get(STAMP_KEY)
    return job_id if isinstance(job_id, str) and job_id else None


def _status(value: Any) -> EventStatus:
    if value == "tentative":
        return "tentative"
    if value == "cancelled":
        return "cancelled"
    return "confirmed"


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def decode_event(item: Mapping[str, Any]) -> tuple[str | None, CalendarEvent | None]:
    """(our job id, the CalendarEvent) of an Events resource; (None, None) when not ours, and
    (job id, None) when ours but edited beyond what we can read back (e.g. made all-day)."""
    job_id = stamp_of(item)
    if job_id is None:
        return None, None
    private = _private(item)
    try:
        start_spec, end_spec = item["start"], item["end"]
        zone_name = start_spec.get("timeZone") or end_spec.get("timeZone")
        zone = ZoneInfo(zone_name)
        start = datetime.fromisoformat(start_spec["dateTime"]).astimezone(zone)
        end = datetime.fromisoformat(end_spec["dateTime"]).astimezone(zone)
        parts = int(private.get(_EXTRA_PARTS_KEY, 0))
        extra = (
            json.loads("".join(private[f"{_EXTRA_KEY}{i}"] for i in range(parts))) if parts else {}
        )
        event = CalendarEvent(
            job_id=job_id,
            summary=str(item.get("summary", "")),
            start=start,
            end=end,
            timezone=zone_name,
            location=str(item.get("location", "")),
            description=str(item.get("description", "")),
            status=_status(item.get("status")),
            lat=_float_or_none(private.get(_LAT_KEY)),
            lon=_float_or_none(private.get(_LON_KEY)),
            categories=tuple(str(c) for c in extra.get("categories", [])),
            details=tuple((str(k), str(v)) for k, v in extra.get("details", [])),
        )
    except (KeyError, TypeError, ValueError, AttributeError, ZoneInfoNotFoundError):
        return job_id, None
    return job_id, event


def ref_of(item: Mapping[str, Any]) -> RemoteRef:
    """The RemoteRef (id and etag) of an Events resource Google returned."""
    etag = item.get("etag")
    return RemoteRef(str(item["id"]), etag if isinstance(etag, str) else None)
