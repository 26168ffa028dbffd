"""Busy time of a mailbox: getSchedule for free/busy, calendarView for which of it is ours.

Busy time
    `POST /users/{u}/calendar/getSchedule` (windows of at most 42 days) gives the mailbox's
    free/busy items without ids, so a calendarView of the bound calendar (expanded with our job
    stamp) says which are ours: each event of that calendar claims one schedule item with exactly
    its start and end and carries its stamp (job_id, or None when foreign); unclaimed schedule
    items are foreign. Free/busy covers only the default calendar, so for a secondary calendar its
    events come from the calendarView and the default calendar's from getSchedule. "free" items
    (and our cancelled jobs) are not busy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import BusyBlock
from connectors.errors import PermanentError
from connectors.msgraph.endpoints import PLATFORM
from connectors.msgraph.mapping import (
    JOB_PROPERTY,
    PREFER_UTC_TEXT,
    extended_properties,
    parse_time,
)
from connectors.msgraph.session import GraphSession, json_object
from connectors.msgraph.urls import Target, expand_properties, with_query

SCHEDULE_WINDOW = timedelta(days=42)
VIEW_PAGE_SIZE = 500


def busy_blocks(
    session: GraphSession, target: Target, start: datetime, end: datetime
) -> list[BusyBlock]:
    if end <= start:
        return []
    items: list[tuple[datetime, datetime]] = []
    window = start
    while window < end:
        window_end = min(end, window + SCHEDULE_WINDOW)
        items.extend(_schedule(session, target, window, window_end, first=window == start))
        window = window_end
    unclaimed = Counter(items)
    blocks: list[BusyBlock] = []
    view = _view(session, target, start, end, "id,start,end,showAs,isCancelled", JOB_PROPERTY)
    for item in view:
        if item.get("isCancelled") or item.get("showAs") == "free":
            continue
        span = (parse_time(item.get("start")), parse_time(item.get("end")))
        if unclaimed[span] > 0:
            unclaimed[span] -= 1
        job_id = extended_properties(item).get(JOB_PROPERTY) or None
        blocks.append(BusyBlock(span[0], span[1], job_id))
    for (s, e), count in unclaimed.items():
        blocks.extend(BusyBlock(s, e, None) for _ in range(count))
    blocks.sort(key=lambda b: (b.start, b.end, b.job_id is None, b.job_id or ""))
    return blocks


def _schedule(
    session: GraphSession, target: Target, start: datetime, end: datetime, *, first: bool
) -> list[tuple[datetime, datetime]]:
    def stamp(when: datetime) -> dict[str, str]:
        return {
            "dateTime": when.astimezone(UTC).replace(tzinfo=None).isoformat(),
            "timeZone": "UTC",
        }

    payload = {
        "schedules": [target.mailbox],
        "startTime": stamp(start),
        "endTime": stamp(end),
        "availabilityViewInterval": 60,
    }
    resp = session.call(
        target, "POST", target.schedule, json=payload, headers={"Prefer": PREFER_UTC_TEXT}
    )
    spans: list[tuple[datetime, datetime]] = []
    for schedule in json_object(resp, "getSchedule").get("value") or []:
        if not isinstance(schedule, dict):
            continue
        error = schedule.get("error")
        if isinstance(error, dict):
            raise PermanentError(
                f"getSchedule for {schedule.get('scheduleId')}: "
                f"{error.get('responseCode')}: {error.get('message')}",
                platform=PLATFORM,
            )
        for item in schedule.get("scheduleItems") or []:
            if not isinstance(item, dict) or item.get("status") == "free":
                continue
            s, e = parse_time(item.get("start")), parse_time(item.get("end"))
            if not first and s < start:
                continue  # reported whole by the previous window already
            spans.append((s, e))
    return spans


def _view(
    session: GraphSession, target: Target, start: datetime, end: datetime, select: str, *props: str
) -> Iterator[dict[str, Any]]:
    params = {
        "startDateTime": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "endDateTime": end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "$select": select,
        "$expand": expand_properties(*props),
        "$top": str(VIEW_PAGE_SIZE),
    }
    return session.pages(target, with_query(target.view, params))
