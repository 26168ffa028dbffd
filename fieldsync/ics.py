"""RFC 5545 encoding of CalendarEvents and of whole feed documents (one VCALENDAR per calendar).

Pure functions, no I/O. Our events are rendered by hand: icalendar's object model costs about
0.3 ms per event, most of the budget when thousands of events are rewritten at once. Everything
read back goes through icalendar (content lines, unescaping, value types, VTIMEZONE handling), so
files edited by hand or by other tools are read the way other iCalendar consumers read them.

A feed is indexed cheaply when loaded (UID, SEQUENCE, STATUS, stamp, DTSTART/DTEND per VEVENT);
an event's full content is decoded by icalendar only when someone asks for it. VEVENTs without
our stamp, and any other component, are kept as the exact text found in the file and written
back unchanged.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
from icalendar.parser import Contentline, unescape_backslash
from icalendar.prop import vDDDTypes

from fieldsync.events import STAMP_PROPERTY, CalendarEvent, EventStatus

PRODID = "-//fieldsync//ICS feed 1.0//EN"
DETAILS_PROPERTY = "X-FIELDSYNC-DETAILS"  # CalendarEvent.details as a JSON list of pairs
LAT_PROPERTY = "X-FIELDSYNC-LAT"  # used only when one coordinate is missing (GEO needs both)
LON_PROPERTY = "X-FIELDSYNC-LON"
# A TZID local time always means the first of two repeated wall times on a DST fall-back night,
# so an event in the second one is written in UTC with this parameter naming its zone.
ZONE_PARAM = "X-FIELDSYNC-TZID"
REFRESH_INTERVAL = "PT5M"
CRLF = "\r\n"

_STATUS_OUT: dict[str, str] = {
    "confirmed": "CONFIRMED",
    "tentative": "TENTATIVE",
    "cancelled": "CANCELLED",
}
_STATUS_IN: dict[str, EventStatus] = {
    "CONFIRMED": "confirmed",
    "TENTATIVE": "tentative",
    "CANCELLED": "cancelled",
}
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class IcsFormatError(ValueError):
    """Content that cannot be written as, or read back from, iCalendar."""


# --- rendering ------------------------------------------------------------------------------


def escape_text(value: str) -> str:
    """A TEXT value per RFC 5545 3.3.11. There is no escape for CR: every line break becomes \\n."""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    # Chained replace (backslash first) is several times faster than str.translate here.
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """Fold a content line at 75 octets without splitting a UTF-8 sequence (RFC 5545 3.1)."""
    if len(line) <= 75 and line.isascii():
        return line
    raw = line.encode("utf-8", "surrogateescape")
    if len(raw) <= 75:
        return line
    parts: list[bytes] = []
    start, limit = 0, 75
    while len(raw) - start > limit:
        cut = start + limit
        while raw[cut] & 0xC0 == 0x80:
            cut -= 1
        parts.append(raw[start:cut])
        start, limit = cut, 74  # continuation lines start with a space, which counts
    parts.append(raw[start:])
    return "\r\n ".join(p.decode("utf-8", "surrogateescape") for p in parts)


def _wall(moment: datetime) -> str:
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"T{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    )


def utc_text(moment: datetime) -> str:
    """A DATE-TIME in UTC form, e.g. 20261201T150000Z."""
    if moment.tzinfo is None:
        raise IcsFormatError(f"timestamp {moment} must be timezone-aware")
    return _wall(moment.astimezone(UTC)) + "Z"


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone, or IcsFormatError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise IcsFormatError(f"unknown time zone {name!r}") from exc


def _moment_line(name: str, moment: datetime, timezone: str) -> tuple[str, str | None]:
    """The DTSTART/DTEND line and the TZID it references, if any."""
    if timezone == "UTC":
        return f"{name}:{utc_text(moment)}", None
    tz = zone(timezone)
    local = moment.astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)  # fold=0: how a reader resolves the wall time
    if wall.replace(tzinfo=tz).utcoffset() != local.utcoffset():
        return f"{name};{ZONE_PARAM}={timezone}:{utc_text(moment)}", None
    return f"{name};TZID={timezone}:{_wall(wall)}", timezone


def _float_text(value: float) -> str:
    # RFC 5545 FLOAT has no exponent; the shortest repr's digits keep the round trip exact.
    if not math.isfinite(value):
        raise IcsFormatError(f"coordinate {value} is not a finite number")
    return format(Decimal(repr(float(value))), "f")


def _render(
    event: CalendarEvent,
    uid: str,
    sequence: int,
    dtstamp: datetime,
    created: datetime | None,
    last_modified: datetime | None,
) -> tuple[str, frozenset[str]]:
    if sequence < 0:
        raise IcsFormatError(f"SEQUENCE {sequence} is negative")
    start_line, start_tz = _moment_line("DTSTART", event.start, event.timezone)
    end_line, end_tz = _moment_line("DTEND", event.end, event.timezone)
    lines = ["BEGIN:VEVENT", f"UID:{escape_text(uid)}", f"DTSTAMP:{utc_text(dtstamp)}"]
    if created is not None:
        lines.append(f"CREATED:{utc_text(created)}")
    if last_modified is not None:
        lines.append(f"LAST-MODIFIED:{utc_text(last_modified)}")
    lines += [f"SEQUENCE:{sequence}", start_line, end_line, f"SUMMARY:{escape_text(event.summary)}"]
    if event.location:
        lines.append(f"LOCATION:{escape_text(event.location)}")
    if event.lat is not None and event.lon is not None:
        lines.append(f"GEO:{_float_text(event.lat)};{_float_text(event.lon)}")
    elif event.lat is not None:
        lines.append(f"{LAT_PROPERTY}:{_float_text(event.lat)}")
    elif event.lon is not None:
        lines.append(f"{LON_PROPERTY}:{_float_text(event.lon)}")
    if event.description:
        lines.append(f"DESCRIPTION:{escape_text(event.description)}")
    if event.categories:
        lines.append("CATEGORIES:" + ",".join(escape_text(c) for c in event.categories))
    try:
        status = _STATUS_OUT[event.status]
    except KeyError:
        raise IcsFormatError(f"unknown event status {event.status!r}") from None
    lines.append(f"STATUS:{status}")
    # Cancelled events stay in the feed for subscribers to drop; they must not read as busy.
    lines.append("TRANSP:TRANSPARENT" if event.status == "cancelled" else "TRANSP:OPAQUE")
    lines.append(f"{STAMP_PROPERTY}:{escape_text(event.job_id)}")
    if event.details:
        pairs = [[name, value] for name, value in event.details]
        blob = json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))
        lines.append(f"{DETAILS_PROPERTY}:{escape_text(blob)}")
    lines.append("END:VEVENT")
    tzids = frozenset(tz for tz in (start_tz, end_tz) if tz is not None)
    return "".join(fold(line) + CRLF for line in lines), tzids


def render_vevent(
    event: CalendarEvent,
    *,
    uid: str,
    sequence: int,
    dtstamp: datetime,
    created: datetime | None = None,
    last_modified: datetime | None = None,
) -> str:
    """The VEVENT for `event`: folded content lines, CRLF-terminated, stamped with its job id."""
    return _render(event, uid, sequence, dtstamp, created, last_modified)[0]


# --- decoding one of our events -------------------------------------------------------------


def unescape_text(raw: str) -> str:
    """A TEXT value as written -> the text (icalendar's single-pass RFC 5545 unescaping)."""
    return str(unescape_backslash(raw))


def _one(component: icalendar.Component, name: str) -> Any:
    value = component.get(name)
    if isinstance(value, list):
        raise IcsFormatError(f"{name} appears {len(value)} times")
    return value


def _x_text(component: icalendar.Component, name: str) -> str | None:
    """An X- property as text. icalendar keeps unknown properties unescaped (vUnknown), so
    unescape what it would write back; a vText round-trips through the same steps."""
    value = _one(component, name)
    if value is None:
        return None
    raw = value.to_ical()
    return unescape_text(raw.decode() if isinstance(raw, bytes) else str(raw))


def _decode_moment(component: icalendar.Component, name: str) -> tuple[datetime, str]:
    prop = _one(component, name)
    if prop is None:
        raise IcsFormatError(f"{name} is missing")
    value = getattr(prop, "dt", None)
    if not isinstance(value, datetime):
        raise IcsFormatError(f"{name} is not a DATE-TIME")
    params = prop.params
    tzid = params.get("TZID")
    if tzid:
        # The wall time as written, in the IANA zone (not whatever VTIMEZONE sits nearby).
        return value.replace(tzinfo=zone(str(tzid))), str(tzid)
    if value.tzinfo is None:
        raise IcsFormatError(f"{name} is a floating time")
    named = params.get(ZONE_PARAM)
    if named:
        return value.astimezone(zone(str(named))), str(named)
    if value.utcoffset() != UTC.utcoffset(None):
        raise IcsFormatError(f"{name} is neither UTC nor carries a TZID")
    return value.astimezone(UTC), "UTC"


def _categories(component: icalendar.Component) -> tuple[str, ...]:
    value = component.get("CATEGORIES")
    if value is None:
        return ()
    props = value if isinstance(value, list) else [value]
    return tuple(str(cat) for prop in props for cat in prop.cats)


def _details(component: icalendar.Component) -> tuple[tuple[str, str], ...]:
    value = _x_text(component, DETAILS_PROPERTY)
    if value is None:
        return ()
    try:
        pairs = json.loads(value)
    except ValueError as exc:
        raise IcsFormatError(f"{DETAILS_PROPERTY} is not JSON: {exc}") from exc
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs
    ):
        raise IcsFormatError(f"{DETAILS_PROPERTY} is not a list of [name, value] pairs")
    return tuple((p[0], p[1]) for p in pairs)


def _coordinates(component: icalendar.Component) -> tuple[float | None, float | None]:
    geo = _one(component, "GEO")
    if geo is not None:
        return float(geo.latitude), float(geo.longitude)
    lat, lon = _x_text(component, LAT_PROPERTY), _x_text(component, LON_PROPERTY)
    try:
        return (None if lat is None else float(lat), None if lon is None else float(lon))
    except ValueError as exc:
        raise IcsFormatError(f"bad coordinate: {exc}") from exc


def parse_vevent(component: icalendar.Component | str) -> CalendarEvent:
    """Decode one of our VEVENTs (it must carry X-FIELDSYNC-JOB-ID) back into a CalendarEvent."""
    if isinstance(component, str):
        try:
            component = icalendar.Event.from_ical(component)
        except ValueError as exc:
            raise IcsFormatError(f"not a VEVENT: {exc}") from exc
    assert isinstance(component, icalendar.Component)
    job_id = _x_text(component, STAMP_PROPERTY)
    if not job_id:
        raise IcsFormatError(f"the VEVENT carries no {STAMP_PROPERTY}")
    start, timezone = _decode_moment(component, "DTSTART")
    end, _ = _decode_moment(component, "DTEND")
    if timezone != "UTC":
        end = end.astimezone(zone(timezone))
    status = str(_one(component, "STATUS") or "CONFIRMED").upper()
    lat, lon = _coordinates(component)
    try:
        return CalendarEvent(
            job_id=job_id,
            summary=str(_one(component, "SUMMARY") or ""),
            start=start,
            end=end,
            timezone=timezone,
            location=str(_one(component, "LOCATION") or ""),
            description=str(_one(component, "DESCRIPTION") or ""),
            status=_STATUS_IN.get(status, "confirmed"),
            lat=lat,
            lon=lon,
            categories=_categories(component),
            details=_details(component),
        )
    except ValueError as exc:
        raise IcsFormatError(str(exc)) from exc


def normalized(event: CalendarEvent) -> CalendarEvent:
    """`event` as it reads back from a feed: local times in its zone, whole seconds, LF breaks."""

    def text(value: str) -> str:
        return value.replace("\r\n", "\n").replace("\r", "\n")

    tz: tzinfo = UTC if event.timezone == "UTC" else zone(event.timezone)
    return replace(
        event,
        start=event.start.astimezone(tz).replace(microsecond=0),
        end=event.end.astimezone(tz).replace(microsecond=0),
        summary=text(event.summary),
        location=text(event.location),
        description=text(event.description),
        categories=tuple(text(c) for c in event.categories),
        details=tuple((name, value) for name, value in event.details),
    )


# --- feed index -----------------------------------------------------------------------------


def _split(line: str) -> tuple[str, dict[str, str], str]:
    """NAME, parameters and raw value of an unfolded content line."""
    colon = line.find(":")
    if colon < 0:
        return line.upper(), {}, ""
    semi = line.find(";", 0, colon)
    if semi < 0:
        return line[:colon].upper(), {}, line[colon + 1 :]
    if '"' in line[:colon]:
        # Quoted parameter values may hide ':' and ';': let icalendar tokenize those lines.
        try:
            name, found, value = Contentline(line).parts()  # type: ignore[no-untyped-call]
        except ValueError:
            return line[:semi].upper(), {}, line[colon + 1 :]
        return name.upper(), {str(k).upper(): str(v) for k, v in found.items()}, value
    params: dict[str, str] = {}
    for item in line[semi + 1 : colon].split(";"):
        key, _, param = item.partition("=")
        params[key.upper()] = param
    return line[:semi].upper(), params, line[colon + 1 :]


def _instant(value: str, params: Mapping[str, str]) -> datetime | None:
    """DTSTART as a UTC instant, for ordering: floating and DATE values are read as UTC."""
    try:
        parsed = vDDDTypes.from_ical(value.strip())  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    if isinstance(parsed, datetime):
        if parsed.tzinfo is None:
            name = params.get("TZID") or params.get(ZONE_PARAM)
            try:
                tz: tzinfo = zone(name) if name else UTC
            except IcsFormatError:
                tz = UTC
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(UTC)
    if isinstance(parsed, date):
        return datetime.combine(parsed, time(), UTC)
    return None


def _stamp(value: str) -> datetime | None:
    return _instant(value, {})


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


class FeedEvent:
    """One top-level VEVENT of a feed, ours or foreign, with the text it is written as."""

    __slots__ = (
        "_decoded",
        "_event",
        "created",
        "dtstamp",
        "end",
        "is_override",
        "job_id",
        "last_modified",
        "recurs",
        "sequence",
        "start",
        "status",
        "text",
        "transparent",
        "tzids",
        "uid",
    )

    def __init__(
        self,
        *,
        text: str,
        uid: str | None,
        job_id: str | None,
        sequence: int = 0,
        status: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        tzids: frozenset[str] = frozenset(),
        dtstamp: datetime | None = None,
        created: datetime | None = None,
        last_modified: datetime | None = None,
        transparent: bool = False,
        is_override: bool = False,
        recurs: bool = False,
        event: CalendarEvent | None = None,
    ) -> None:
        self.text = text
        self.uid = uid
        self.job_id = job_id
        self.sequence = sequence
        self.status = status  # upper-case STATUS as written, "" when absent
        self.start = start  # UTC instant of DTSTART (floating and DATE values read as UTC)
        self.end = end  # UTC instant of DTEND, None when absent
        self.tzids = tzids
        self.dtstamp = dtstamp
        self.created = created
        self.last_modified = last_modified
        self.transparent = transparent
        self.is_override = is_override  # carries RECURRENCE-ID
        self.recurs = recurs  # carries RRULE or RDATE
        self._event = event
        self._decoded = event is not None

    @classmethod
    def ours(
        cls,
        event: CalendarEvent,
        *,
        uid: str,
        sequence: int,
        dtstamp: datetime,
        created: datetime | None = None,
        last_modified: datetime | None = None,
    ) -> FeedEvent:
        text, tzids = _render(event, uid, sequence, dtstamp, created, last_modified)
        return cls(
            text=text,
            uid=uid,
            job_id=event.job_id,
            sequence=sequence,
            status=_STATUS_OUT[event.status],
            start=_whole_seconds(event.start),
            end=_whole_seconds(event.end),
            tzids=tzids,
            dtstamp=_whole_seconds(dtstamp),
            created=None if created is None else _whole_seconds(created),
            last_modified=None if last_modified is None else _whole_seconds(last_modified),
            transparent=event.status == "cancelled",
            event=normalized(event),
        )

    @property
    def owned(self) -> bool:
        return self.job_id is not None

    @property
    def cancelled(self) -> bool:
        return self.status == "CANCELLED"

    @property
    def etag(self) -> str:
        return str(self.sequence)

    def decode(self) -> CalendarEvent:
        """Our event's content; IcsFormatError when it is foreign or was mangled by hand."""
        if self._event is not None:
            return self._event
        if self.job_id is None:
            raise IcsFormatError(f"event {self.uid} is not ours")
        event = parse_vevent(self.text)
        self._event, self._decoded = event, True
        return event

    @property
    def event(self) -> CalendarEvent | None:
        if self.job_id is None:
            return None
        if not self._decoded:
            try:
                self.decode()
            except IcsFormatError:
                self._decoded = True
        return self._event

    def sort_key(self) -> tuple[datetime, str, str]:
        return (self.start or _EPOCH, self.uid or "", self.text)

    def __repr__(self) -> str:
        return f"FeedEvent(uid={self.uid!r}, job_id={self.job_id!r}, sequence={self.sequence})"


@dataclass(frozen=True, slots=True)
class RawComponent:
    """A top-level component kept verbatim: a VTIMEZONE, or anything we do not manage."""

    name: str
    text: str
    tzid: str | None = None


@dataclass(frozen=True, slots=True)
class Feed:
    events: tuple[FeedEvent, ...] = ()
    timezones: tuple[RawComponent, ...] = ()
    others: tuple[RawComponent, ...] = ()
    calendar_timezone: str | None = None  # X-WR-TIMEZONE
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def _index(self) -> dict[str, FeedEvent]:
        found: dict[str, FeedEvent] | None = self._memo.get("index")
        if found is None:
            found = self._memo["index"] = index_events(self.events)
        return found

    def index(self) -> dict[str, FeedEvent]:
        """UID -> event; ours win over foreign ones, a series master over its overrides."""
        return dict(self._index())

    def find(self, uid: str) -> FeedEvent | None:
        return self._index().get(uid)

    def occurrences(self, events: Sequence[FeedEvent]) -> Any:
        """recurring_ical_events query over `events` (with this feed's VTIMEZONEs), memoized."""
        key = "query:" + ",".join(str(id(e)) for e in events)  # events live as long as self
        query = self._memo.get(key)
        if query is None:
            body = "".join(
                [f"BEGIN:VCALENDAR{CRLF}VERSION:2.0{CRLF}PRODID:{PRODID}{CRLF}"]
                + [c.text for c in self.timezones]
                + [e.text for e in events]
                + [f"END:VCALENDAR{CRLF}"]
            )
            calendar = icalendar.Calendar.from_ical(body)
            query = self._memo[key] = recurring_ical_events.of(calendar, skip_bad_series=True)
        return query


def index_events(events: Iterable[FeedEvent]) -> dict[str, FeedEvent]:
    index: dict[str, FeedEvent] = {}
    for event in events:
        if event.uid is None:
            continue
        current = index.get(event.uid)
        rank = (not event.owned, event.is_override)
        if current is None or rank < (not current.owned, current.is_override):
            index[event.uid] = event
    return index


def _index_vevent(text: str, lines: Sequence[str]) -> FeedEvent:
    uid: str | None = None
    job_id: str | None = None
    sequence = 0
    status = ""
    start: datetime | None = None
    end: datetime | None = None
    tzids: set[str] = set()
    stamps: dict[str, datetime | None] = {}
    transparent = False
    is_override = False
    recurs = False
    for line in lines:
        name, params, value = _split(line)
        if "TZID" in params:
            tzids.add(params["TZID"])
        if name == "UID":
            uid = unescape_text(value)
        elif name == STAMP_PROPERTY:
            job_id = unescape_text(value) or None
        elif name == "SEQUENCE":
            try:
                sequence = int(value.strip())
            except ValueError:
                sequence = 0
        elif name == "STATUS":
            status = value.strip().upper()
        elif name == "TRANSP":
            transparent = value.strip().upper() == "TRANSPARENT"
        elif name == "DTSTART":
            start = _instant(value, params)
        elif name == "DTEND":
            end = _instant(value, params)
        elif name in ("DTSTAMP", "CREATED", "LAST-MODIFIED"):
            stamps[name] = _stamp(value)
        elif name == "RECURRENCE-ID":
            is_override = True
        elif name in ("RRULE", "RDATE"):
            recurs = True
    return FeedEvent(
        text=text,
        uid=uid,
        job_id=job_id if uid is not None else None,  # without a UID we could never address it
        sequence=sequence,
        status=status,
        start=start,
        end=end,
        tzids=frozenset(tzids),
        dtstamp=stamps.get("DTSTAMP"),
        created=stamps.get("CREATED"),
        last_modified=stamps.get("LAST-MODIFIED"),
        transparent=transparent,
        is_override=is_override,
        recurs=recurs,
    )


def parse_feed(data: bytes) -> Feed:
    """Index a VCALENDAR document. Raises IcsFormatError when it is not one."""
    text = data.decode("utf-8", "surrogateescape")  # undecodable bytes survive a rewrite
    if text.startswith("\ufeff"):
        text = text[1:]
    logical: list[list[str]] = []  # the physical lines of each content line
    for raw in text.split("\n"):
        if raw.endswith("\r"):
            raw = raw[:-1]
        if raw[:1] in (" ", "\t") and logical:
            logical[-1].append(raw)
        elif raw:
            logical.append([raw])

    events: list[FeedEvent] = []
    timezones: list[RawComponent] = []
    others: list[RawComponent] = []
    calendar_timezone: str | None = None
    stack: list[str] = []
    physical: list[str] = []  # of the top-level component being read
    own_lines: list[str] = []  # its content lines, without nested components
    seen_calendar = False
    for parts in logical:
        line = parts[0] if len(parts) == 1 else parts[0] + "".join(p[1:] for p in parts[1:])
        name, _, value = _split(line)
        if name == "BEGIN":
            kind = value.strip().upper()
            if not stack and kind != "VCALENDAR":
                raise IcsFormatError(f"expected BEGIN:VCALENDAR, found {line[:60]!r}")
            stack.append(kind)
            seen_calendar = True
            if len(stack) == 2:
                physical, own_lines = [], []
        elif name == "END":
            kind = value.strip().upper()
            if not stack or stack[-1] != kind:
                raise IcsFormatError(f"unbalanced END:{kind}")
            stack.pop()
            if len(stack) == 1:
                physical.extend(parts)
                block = CRLF.join(physical) + CRLF
                if kind == "VEVENT":
                    events.append(_index_vevent(block, own_lines))
                elif kind == "VTIMEZONE":
                    tzid = next(
                        (unescape_text(_split(x)[2]) for x in own_lines if _split(x)[0] == "TZID"),
                        None,
                    )
                    timezones.append(RawComponent(kind, block, tzid))
                else:
                    others.append(RawComponent(kind, block))
                continue
        elif len(stack) == 1 and name == "X-WR-TIMEZONE":
            calendar_timezone = unescape_text(value).strip() or None
        elif len(stack) == 2:
            own_lines.append(line)
        if len(stack) >= 2:
            physical.extend(parts)
    if stack:
        raise IcsFormatError(f"document ends inside {stack[-1]}")
    if not seen_calendar and logical:
        raise IcsFormatError("no VCALENDAR in the document")
    return Feed(tuple(events), tuple(timezones), tuple(others), calendar_timezone)


# --- feed document --------------------------------------------------------------------------


_ZoneState = tuple[timedelta, timedelta, str]  # UTC offset, DST amount, abbreviation


def _zone_state(tz: ZoneInfo, moment: datetime) -> _ZoneState:
    local = moment.astimezone(tz)
    offset, dst = local.utcoffset(), local.dst()
    assert offset is not None
    return offset, dst or timedelta(0), local.tzname() or ""


def _transitions(
    tz: ZoneInfo, start: datetime, stop: datetime
) -> list[tuple[datetime, _ZoneState, _ZoneState]]:
    """(instant, state before, state after) of every change in [start, stop), to the second."""
    step = timedelta(hours=6)  # shorter than any gap between two real transitions
    found = []
    before = _zone_state(tz, start)
    lo = start
    while lo < stop:
        hi = min(lo + step, stop)
        after = _zone_state(tz, hi)
        if after != before:
            a, b = lo, hi
            while b - a > timedelta(seconds=1):  # zoneinfo transitions fall on whole seconds
                mid = a + (b - a) / 2
                mid = mid.replace(microsecond=0)
                if _zone_state(tz, mid) == before:
                    a = mid
                else:
                    b = mid
            found.append((b, before, _zone_state(tz, b)))
            before = _zone_state(tz, b)
            if before != after:  # a second change inside the step: rescan from here
                lo = b
                continue
        lo = hi
    return found


def _offset_text(offset: timedelta) -> str:
    seconds = int(offset.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")


@lru_cache(maxsize=1024)
def vtimezone(tzid: str, first_year: int, last_year: int) -> str | None:
    """VTIMEZONE text for an IANA zone, exact from first_year through last_year; None if unknown.

    Built from zoneinfo's own transitions, listed as RDATEs (no guessed RRULE), so historical
    rule changes come out right too. Each onset is the wall time in the TZOFFSETFROM offset, as
    RFC 5545 3.6.5 defines it. (icalendar 7.3's Timezone.from_tzid writes spring-forward onsets
    in the new offset, one hour late for RFC readers such as dateutil's tzical.)
    """
    try:
        tz = zone(tzid)
    except IcsFormatError:
        return None
    first_year, last_year = max(first_year, 2), min(last_year, 9998)
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    stop = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    initial = _zone_state(tz, start)
    # The span opens with an observance that changes nothing, so times before the first real
    # transition resolve as well.
    zero = timedelta(0)
    onsets: dict[tuple[bool, timedelta, timedelta, str], list[datetime]] = {
        (initial[1] > zero, initial[0], initial[0], initial[2]): [
            (start + initial[0]).replace(tzinfo=None)
        ]
    }
    for moment, (old_offset, old_dst, _), (new_offset, dst, name) in _transitions(tz, start, stop):
        # Zones with "negative DST" (Europe/Dublin's winter) call summer their standard time;
        # readers break repeated-hour ties by the DAYLIGHT label, so summer must carry it.
        daylight = dst > zero or (dst == zero and old_dst < zero)
        key = (daylight, old_offset, new_offset, name)
        onsets.setdefault(key, []).append((moment + old_offset).replace(tzinfo=None))
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    for (daylight, old_offset, new_offset, name), walls in sorted(
        onsets.items(), key=lambda item: item[1][0]
    ):
        kind = "DAYLIGHT" if daylight else "STANDARD"
        lines += [f"BEGIN:{kind}", f"DTSTART:{_wall(walls[0])}"]
        # One RDATE per line: RFC 5545 allows a comma list too, but vobject (Radicale, and
        # subscribers built on it) keeps only the first value of a list and drops the rest.
        lines += [f"RDATE:{_wall(w)}" for w in walls[1:]]
        lines += [
            f"TZNAME:{escape_text(name)}",
            f"TZOFFSETFROM:{_offset_text(old_offset)}",
            f"TZOFFSETTO:{_offset_text(new_offset)}",
            f"END:{kind}",
        ]
    lines.append("END:VTIMEZONE")
    return "".join(fold(line) + CRLF for line in lines)


def _is_iana(tzid: str) -> bool:
    try:
        zone(tzid)
    except IcsFormatError:
        return False
    return True


def _calendar_timezone(events: Sequence[FeedEvent], fallback: str | None) -> str:
    counts: Counter[str] = Counter()
    for event in events:
        if event.owned:
            counts.update(event.tzids)
    if counts:
        return min(counts, key=lambda name: (-counts[name], name))
    return fallback or "UTC"


def _timezone_components(
    events: Sequence[FeedEvent], kept: Sequence[RawComponent]
) -> list[RawComponent]:
    years: dict[str, set[int]] = {}
    ours: set[str] = set()
    for event in events:
        for tzid in event.tzids:
            seen = years.setdefault(tzid, set())
            if event.start is not None:
                seen.add(event.start.year)
            if event.owned:
                ours.add(tzid)
    found = {c.tzid: c for c in kept if c.tzid}
    out: list[RawComponent] = []
    for tzid in sorted(set(years) | set(found)):
        span = years.get(tzid)
        # Zones our events use are always generated, so they are right whatever sat there before.
        if span and (tzid in ours or tzid not in found):
            # One year of margin: a UTC instant's year can differ from the local one.
            text = vtimezone(tzid, min(span) - 1, max(span) + 1)
            if text is not None:
                out.append(RawComponent("VTIMEZONE", text, tzid))
                continue
        if tzid in found and (span is not None or not _is_iana(tzid)):
            # As found: only foreign events use it, or it is not an IANA zone we could rebuild.
            out.append(found[tzid])
    return out


def build_feed(
    events: Iterable[FeedEvent],
    *,
    name: str,
    timezones: Sequence[RawComponent] = (),
    others: Sequence[RawComponent] = (),
    calendar_timezone: str | None = None,
) -> tuple[bytes, Feed]:
    """The VCALENDAR document for `events`, and the Feed it parses back to.

    Output depends only on content: events are ordered by start then UID, VTIMEZONEs by TZID,
    so an unchanged calendar is byte-identical. `timezones` are VTIMEZONEs found in the file
    (kept where they cannot be generated); `others` are foreign non-event components, kept.
    """
    ordered = sorted(events, key=FeedEvent.sort_key)
    cal_tz = _calendar_timezone(ordered, calendar_timezone)
    zones = _timezone_components(ordered, timezones)
    head = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape_text(name)}",
        f"NAME:{escape_text(name)}",
        f"X-WR-TIMEZONE:{escape_text(cal_tz)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{REFRESH_INTERVAL}",
        f"X-PUBLISHED-TTL:{REFRESH_INTERVAL}",
    ]
    chunks = [fold(line) + CRLF for line in head]
    chunks += [c.text for c in zones]
    chunks += [e.text for e in ordered]
    chunks += [c.text for c in others]
    chunks.append("END:VCALENDAR" + CRLF)
    data = "".join(chunks).encode("utf-8", "surrogateescape")
    return data, Feed(tuple(ordered), tuple(zones), tuple(others), cal_tz)


# --- busy time ------------------------------------------------------------------------------


def _aware(value: date | datetime, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return datetime.combine(value, time(), tz)


def busy_intervals(
    feed: Feed, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str | None]]:
    """(start, end, job id) of every live, opaque event occurrence overlapping [start, end).

    Ours are read from the index (no decoding: a busy check over hundreds of calendars must be
    cheap); everything else, including ours if a hand edit made them recur or lose DTEND, is
    expanded by recurring_ical_events, so recurring personal events and custom VTIMEZONEs count
    too. Floating and all-day times are read in the calendar's X-WR-TIMEZONE.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("busy window must be timezone-aware")
    out: list[tuple[datetime, datetime, str | None]] = []
    rest: list[FeedEvent] = []
    for item in feed.events:
        if not item.owned or item.start is None or item.end is None or item.recurs:
            rest.append(item)
        elif item.cancelled or item.transparent:
            continue
        elif item.start < end and item.end > start:
            out.append((item.start, item.end, item.job_id))
    if rest:
        query = feed.occurrences(rest)
        try:
            local: tzinfo = zone(feed.calendar_timezone or "UTC")
        except IcsFormatError:
            local = UTC
        for occurrence in query.between(start, end):
            if str(occurrence.get("STATUS", "")).upper() == "CANCELLED":
                continue
            if str(occurrence.get("TRANSP", "")).upper() == "TRANSPARENT":
                continue
            try:
                begin, finish = _aware(occurrence.start, local), _aware(occurrence.end, local)
            except (ValueError, icalendar.IncompleteComponent):
                continue
            if begin < end and finish > start:
                out.append((begin, finish, _x_text(occurrence, STAMP_PROPERTY) or None))
    out.sort(key=lambda block: (block[0], block[1], block[2] or ""))
    return out
