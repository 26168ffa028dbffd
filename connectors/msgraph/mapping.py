"""CalendarEvent <-> Graph event JSON: fields, our extended properties, time zones.

Ownership stamp
    Every event we write carries three single-value extended properties in our own property set:
    the job id (our stamp), the idempotency key, and a JSON blob with what Outlook has no field
    for (IANA zone, status, details, coordinates). A create also sends `transactionId`, a UUID
    derived from the key: Graph answers a repeated POST with the event the first one made, which
    covers a create whose response was lost.

Content
    subject <- summary, body (text) <- description, location.displayName and .coordinates <-
    location, lat/lon, showAs busy / tentative / free (cancelled) <- status, categories <-
    categories, start/end <- {"dateTime": wall time, "timeZone": the event's IANA zone}. A wall
    time that occurs twice (clocks going back) is sent in UTC instead, so the instant is exact.
    Reads ask for `Prefer: outlook.timezone="UTC"` and convert to the event's zone; no offset is
    ever guessed. Never any attendees: Outlook would mail invitations.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import RemoteRef
from connectors.errors import PermanentError
from connectors.msgraph.endpoints import PLATFORM
from fieldsync.events import CalendarEvent

# Our MAPI property set. Fixed forever: it is how we recognise our events in every mailbox.
PROPERTY_SET = "{8b5e2f1c-6d4a-4f0e-9c3b-27a1d5e9f604}"
JOB_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncJobId"
KEY_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncKey"
DATA_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncData"
_TRANSACTION_NAMESPACE = uuid.UUID("5f0c7a3e-9b1d-4e62-8a47-c3d2e1f0b9a8")

# The Prefer header of every read and write: times in UTC, bodies as plain text.
PREFER_UTC_TEXT = 'outlook.timezone="UTC", outlook.body-content-type="text"'
_SHOW_AS = {"confirmed": "busy", "tentative": "tentative", "cancelled": "free"}
_FRACTION = re.compile(r"(\.\d{6})\d+")


def transaction_id(key: str) -> str:
    """The Graph transactionId for an idempotency key: stable, so a repeated create dedupes."""
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, key))


def extended_properties(item: Mapping[str, Any]) -> dict[str, str]:
    """The single-value extended properties a Graph event came with, by property id."""
    found: dict[str, str] = {}
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict) and isinstance(prop.get("id"), str):
            found[prop["id"]] = str(prop.get("value") or "")
    return found


def remote_ref(body: Mapping[str, Any], what: str) -> RemoteRef:
    remote_id = body.get("id")
    if not isinstance(remote_id, str) or not remote_id:
        raise PermanentError(f"{what}: Graph answered without an event id", platform=PLATFORM)
    etag = body.get("@odata.etag")
    return RemoteRef(remote_id, etag if isinstance(etag, str) else None)


# --- time zones -----------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PermanentError(f"{name!r} is not an IANA time zone", platform=PLATFORM) from None


def _graph_time(when: datetime, zone_name: str) -> dict[str, str]:
    local = when.astimezone(_zone(zone_name))
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        # The hour that happens twice when clocks go back: the wall time alone is ambiguous.
        utc = when.astimezone(UTC).replace(tzinfo=None)
        return {"dateTime": utc.isoformat(), "timeZone": "UTC"}
    return {"dateTime": local.replace(tzinfo=None).isoformat(), "timeZone": zone_name}


def parse_time(stamp: Any) -> datetime:
    """A Graph dateTimeTimeZone as an aware UTC datetime; the zone must be one we can read."""
    if not isinstance(stamp, dict) or not isinstance(stamp.get("dateTime"), str):
        raise PermanentError(f"unreadable time {stamp!r}", platform=PLATFORM)
    try:
        naive = datetime.fromisoformat(_FRACTION.sub(r"\1", stamp["dateTime"]))
    except ValueError:
        raise PermanentError(f"unreadable time {stamp!r}", platform=PLATFORM) from None
    naive = naive.replace(tzinfo=None)
    zone_name = str(stamp.get("timeZone") or "UTC")
    zone = UTC if zone_name.upper() in ("UTC", "ETC/UTC") else _zone(zone_name)
    return naive.replace(tzinfo=zone).astimezone(UTC)


# --- CalendarEvent -> Graph -------------------------------------------------------------------


def _event_data(event: CalendarEvent) -> str:
    return json.dumps(
        {
            "v": 1,
            "tz": event.timezone,
            "status": event.status,
            "lat": event.lat,
            "lon": event.lon,
            "details": [list(pair) for pair in event.details],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def event_fields(event: CalendarEvent, reminder_minutes: int | None) -> dict[str, Any]:
    """The PATCH body for an event: every field we own, and our job stamp."""
    location: dict[str, Any] = {"displayName": event.location, "locationType": "default"}
    if event.lat is not None and event.lon is not None:
        location["coordinates"] = {"latitude": event.lat, "longitude": event.lon}
    reminder = reminder_minutes is not None and event.status != "cancelled"
    fields: dict[str, Any] = {
        "subject": event.summary,
        "body": {"contentType": "text", "content": event.description},
        "start": _graph_time(event.start, event.timezone),
        "end": _graph_time(event.end, event.timezone),
        "location": location,
        "showAs": _SHOW_AS[event.status],
        "categories": list(event.categories),
        "isReminderOn": reminder,
        "responseRequested": False,
        "allowNewTimeProposals": False,
        "singleValueExtendedProperties": [
            {"id": JOB_PROPERTY, "value": event.job_id},
            {"id": DATA_PROPERTY, "value": _event_data(event)},
        ],
    }
    if reminder:
        fields["reminderMinutesBeforeStart"] = reminder_minutes
    return fields


def create_body(key: str, event: CalendarEvent, reminder_minutes: int | None) -> dict[str, Any]:
    """The POST body for a new event: its fields, the transactionId and the idempotency key."""
    body = event_fields(event, reminder_minutes)
    body["transactionId"] = transaction_id(key)
    body["attendees"] = []  # never anyone to invite: Outlook would send them mail
    body["singleValueExtendedProperties"].append({"id": KEY_PROPERTY, "value": key})
    return body


# --- Graph -> CalendarEvent -------------------------------------------------------------------


def _iana_or_none(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def decode_event(job_id: str, item: Mapping[str, Any], data_text: str | None) -> CalendarEvent:
    """Our CalendarEvent from a Graph event read with `Prefer: outlook.timezone="UTC"`."""
    try:
        data = json.loads(data_text) if data_text else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    zone_name = (
        _iana_or_none(data.get("tz")) or _iana_or_none(item.get("originalStartTimeZone")) or "UTC"
    )
    zone = ZoneInfo(zone_name)
    location = item.get("location") or {}
    coordinates = location.get("coordinates") or {}
    lat = _float_or_none(coordinates.get("latitude"))
    lon = _float_or_none(coordinates.get("longitude"))
    if lat is None or lon is None:
        lat, lon = _float_or_none(data.get("lat")), _float_or_none(data.get("lon"))
    show_as = item.get("showAs")
    if item.get("isCancelled"):
        status = "cancelled"
    elif show_as == "tentative":
        status = "tentative"
    elif show_as == "free" and data.get("status") == "cancelled":
        status = "cancelled"
    else:
        status = "confirmed"
    details = tuple(
        (str(pair[0]), str(pair[1]))
        for pair in data.get("details") or []
        if isinstance(pair, list) and len(pair) == 2
    )
    return CalendarEvent(
        job_id=job_id,
        summary=str(item.get("subject") or ""),
        start=parse_time(item.get("start")).astimezone(zone),
        end=parse_time(item.get("end")).astimezone(zone),
        timezone=zone_name,
        location=str(location.get("displayName") or ""),
        description=str((item.get("body") or {}).get("content") or ""),
        status=cast(Any, status),
        lat=lat,
        lon=lon,
        categories=tuple(str(c) for c in item.get("categories") or ()),
        details=details,
    )
