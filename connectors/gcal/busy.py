"""Busy time on a technician's calendar, from events.list or, failing that, freebusy.query.

events.list(timeMin, timeMax, singleEvents=true) tells whose each event is, which
freebusy.query cannot (it merges blocks and names nobody). freebusy.query serves calendars
whose events we may not list (shared "free/busy only": events.list answers 404 or 403); their
blocks carry no job id.

Both readers send their requests through `call`, the connector's single-request executor, so
they get its status policy, retries and error mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import BusyBlock
from connectors.errors import NotFoundError, PermanentError
from connectors.gcal.endpoints import PLATFORM
from connectors.gcal.mapping import stamp_of

__all__ = ["busy_from_events", "busy_from_freebusy"]

_LIST_FIELDS = (
    "items(id,etag,status,start,end,transparency,extendedProperties/private,"
    "attendees(self,responseStatus)),nextPageToken,timeZone"
)


def busy_from_events(
    call: Callable[[Any], Any], service: Any, calendar_id: str, start: datetime, end: datetime
) -> list[BusyBlock]:
    """Busy blocks of the events in [start, end), each naming our job id when it is ours."""
    blocks: list[BusyBlock] = []
    page_token: str | None = None
    while True:
        request = service.events().list(
            calendarId=calendar_id,
            timeMin=_rfc3339(start),
            timeMax=_rfc3339(end),
            singleEvents=True,
            showDeleted=False,
            maxResults=2500,
            pageToken=page_token,
            fields=_LIST_FIELDS,
        )
        page = call(request)
        try:
            zone = ZoneInfo(str(page.get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        for item in page.get("items", []):
            block = _busy_block(item, zone)
            if block is not None:
                blocks.append(block)
        page_token = page.get("nextPageToken")
        if not page_token:
            return blocks


def busy_from_freebusy(
    call: Callable[[Any], Any],
    service: Any,
    calendar_id: str,
    start: datetime,
    end: datetime,
    *,
    platform: str,
) -> list[BusyBlock]:
    """Busy blocks as freebusy.query reports them: anonymous, for calendars we cannot list."""
    body = {
        "timeMin": _rfc3339(start),
        "timeMax": _rfc3339(end),
        "items": [{"id": calendar_id}],
    }
    result = call(service.freebusy().query(body=body))
    entry = (result.get("calendars") or {}).get(calendar_id) or {}
    errors = entry.get("errors") or []
    if errors:
        reason = str(errors[0].get("reason", "unknown"))
        error = NotFoundError if reason == "notFound" else PermanentError
        raise error(f"freeBusy of {calendar_id}: {reason}", platform=platform)
    return [
        BusyBlock(datetime.fromisoformat(b["start"]), datetime.fromisoformat(b["end"]))
        for b in entry.get("busy", [])
    ]


def _rfc3339(when: datetime) -> str:
    if when.tzinfo is None:
        raise PermanentError("busy window must be timezone-aware", platform=PLATFORM)
    return when.astimezone(UTC).isoformat()


def _busy_block(item: Mapping[str, Any], calendar_zone: ZoneInfo) -> BusyBlock | None:
    """The busy time an event stands for, as freeBusy would count it; None if it is free."""
    if item.get("status") == "cancelled" or item.get("transparency") == "transparent":
        return None
    for attendee in item.get("attendees") or []:
        if attendee.get("self") and attendee.get("responseStatus") == "declined":
            return None
    try:
        start = _instant(item["start"], calendar_zone)
        end = _instant(item["end"], calendar_zone)
    except (KeyError, TypeError, ValueError):
        return None
    return BusyBlock(start, end, stamp_of(item))


def _instant(spec: Mapping[str, Any], calendar_zone: ZoneInfo) -> datetime:
    if spec.get("dateTime"):
        return datetime.fromisoformat(spec["dateTime"])
    # An all-day event spans its dates in the calendar's own zone.
    day = date.fromisoformat(spec["date"])
    return datetime(day.year, day.month, day.day, tzinfo=calendar_zone)
