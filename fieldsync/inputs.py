"""Validated input models: the one gate that file imports and webhook intake both pass through.

Every model accepts two shapes of the same data: the flat text a spreadsheet row gives
(lists packed into one cell, numbers as strings) and the structured values JSON gives. Error
messages name the bad value in plain words, because the people who read them fix spreadsheets,
not code; `field_errors` turns a pydantic ValidationError into (field, message) pairs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fieldsync.domain import CALENDAR_PLATFORMS, KNOWN_SOURCES, AppointmentStatus, Priority

DEFAULT_WORK_DAYS: tuple[int, ...] = (0, 1, 2, 3, 4)

_DAY_NAMES = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE_ONLY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Prefect's rule for block names; a credentials reference that breaks it could never resolve.
_BLOCK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
_STATUS_ALIASES = {"cancelled": AppointmentStatus.CANCELED.value}


class FieldValueError(ValueError):
    """A ValueError that knows which field it is about.

    Checks that span several fields run after the fields themselves, where pydantic no longer
    knows a field; raising this lets `field_errors` still point at the right one.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str | None  # None: the problem is with the record as a whole
    message: str


def show(value: object, limit: int = 80) -> str:
    """A value quoted for an error message, shortened so one bad cell cannot flood a report."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    else:
        text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'"


def _split(value: str, separators: str) -> list[str]:
    return [part.strip() for part in re.split(f"[{re.escape(separators)}]", value) if part.strip()]


def _one_of(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


# --- reusable field types -------------------------------------------------------------------


def _check_lat(value: float) -> float:
    if not -90.0 <= value <= 90.0:
        raise ValueError(f"{show(value)} is not a valid latitude (must be between -90 and 90)")
    return value


def _check_lon(value: float) -> float:
    if not -180.0 <= value <= 180.0:
        raise ValueError(f"{show(value)} is not a valid longitude (must be between -180 and 180)")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{show(value)} is not a known IANA time zone (e.g. 'Europe/Berlin', 'America/Chicago')"
        ) from None
    return value


def _parse_hhmm(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = _TIME_RE.fullmatch(value.strip())
        if match:
            hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
            if hour < 24 and minute < 60 and second < 60:
                return time(hour, minute, second)
    raise ValueError(f"{show(value)} is not a valid time of day (use HH:MM, e.g. 08:30)")


def _parse_datetime(value: Any) -> Any:
    """ISO 8601 text to a datetime, possibly naive: the model attaches the zone later."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY_RE.fullmatch(text):
            raise ValueError(f"{show(value)} is a date without a time of day")
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"{show(value)} is not a valid date-time (use ISO 8601, e.g. 2026-05-04T09:30+02:00)"
    )


def _check_positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"{show(value)} must be more than 0")
    return value


def _check_not_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"{show(value)} must not be negative")
    return value


def _text_list(value: Any) -> Any:
    """A cell like "a;b;c" or a JSON list, trimmed and without repeats (order kept)."""
    if isinstance(value, str):
        value = _split(value, ";")
    if isinstance(value, list | tuple):
        seen: dict[str, None] = {}
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"{show(item)} is not text")
            if item.strip():
                seen[item.strip()] = None
        return list(seen)
    return value


Latitude = Annotated[float, AfterValidator(_check_lat)]
Longitude = Annotated[float, AfterValidator(_check_lon)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
TimeOfDay = Annotated[time, BeforeValidator(_parse_hhmm)]
DateTimeText = Annotated[datetime, BeforeValidator(_parse_datetime)]
TextList = Annotated[list[str], BeforeValidator(_text_list)]


class _Input(BaseModel):
    model_config = ConfigDict(
        str_strip_whitespace=True,
        # Spreadsheets and CRMs hand over ids as numbers; 10423 and "10423" mean the same.
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
        # Imports warn about unknown columns themselves; the webhook payloads carry extras.
        extra="ignore",
    )


def _check_pair(lat: float | None, lon: float | None, lat_name: str, lon_name: str) -> None:
    if (lat is None) != (lon is None):
        missing = lon_name if lon is None else lat_name
        given = lat_name if lon is None else lon_name
        raise FieldValueError(missing, f"is missing while '{given}' is given; give both or neither")


# --- technicians ----------------------------------------------------------------------------


class CalendarBindingInput(_Input):
    """One calendar a technician's jobs go to: `platform:calendar_id[#credentials-block]`."""

    platform: str
    calendar_id: str = Field(min_length=1, max_length=320)
    credentials_block: str | None = Field(default=None, max_length=200)

    @field_validator("platform", mode="before")
    @classmethod
    def _known_platform(cls, value: Any) -> Any:
        if isinstance(value, str):
            name = value.strip().lower()
            if name not in CALENDAR_PLATFORMS:
                raise ValueError(
                    f"{show(value)} is not a known calendar platform "
                    f"(one of: {_one_of(CALENDAR_PLATFORMS)})"
                )
            return name
        return value

    @field_validator("credentials_block")
    @classmethod
    def _block_name(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _BLOCK_NAME_RE.fullmatch(value):
            raise ValueError(
                f"{show(value)} is not a valid credentials block name "
                "(lowercase letters, digits and dashes)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """`platform:calendar_id#block` as written in a cell becomes the fields."""
        if not isinstance(value, str):
            return value
        platform, sep, rest = value.partition(":")
        if not sep or not platform.strip() or not rest.strip():
            raise ValueError(
                f"{show(value)} should look like platform:calendar_id "
                "(e.g. google:alice@acme.com#google-acme)"
            )
        # Split at the last '#': calendar ids (URLs, e-mail addresses) may contain one,
        # block names never do.
        calendar_id, hash_sep, block = rest.rpartition("#")
        if not hash_sep:
            calendar_id, block = rest, ""
        return {
            "platform": platform.strip(),
            "calendar_id": calendar_id.strip(),
            "credentials_block": block.strip() or None,
        }


def _cell_list(value: Any) -> Any:
    """A cell of ";"-separated items becomes a list; each item model parses its own text."""
    return _split(value, ";") if isinstance(value, str) else value


def _work_days(value: Any) -> Any:
    if isinstance(value, str):
        value = _split(value, ",; ")
    if not isinstance(value, list | tuple):
        return value
    days: set[int] = set()
    for item in value:
        day: int | None = None
        if isinstance(item, int) and not isinstance(item, bool):
            day = item
        elif isinstance(item, str):
            token = item.strip().lower()
            day = int(token) if token.isdigit() else _DAY_NAMES.get(token)
        if day is None or not 0 <= day <= 6:
            raise ValueError(
                f"{show(item)} is not a day of the week (use mon..sun, or 0..6 for Monday..Sunday)"
            )
        days.add(day)
    if not days:
        raise ValueError("no work days given")
    return sorted(days)


class TechnicianInput(_Input):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=64)
    timezone: TimeZoneName
    shift_start: TimeOfDay
    shift_end: TimeOfDay
    work_days: Annotated[list[int], BeforeValidator(_work_days)] = Field(
        default_factory=lambda: list(DEFAULT_WORK_DAYS)
    )
    skills: TextList = Field(default_factory=list)
    region: str = Field(default="", max_length=100)
    home_lat: Latitude | None = None
    home_lon: Longitude | None = None
    service_lat: Latitude | None = None
    service_lon: Longitude | None = None
    service_radius_km: Annotated[float, AfterValidator(_check_positive)] | None = None
    calendars: Annotated[list[CalendarBindingInput], BeforeValidator(_cell_list)] = Field(
        default_factory=list
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not _EMAIL_RE.fullmatch(value):
            raise ValueError(f"{show(value)} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Overnight shifts (22:00-06:00) are real; only an empty shift is surely a typo.
        if self.shift_start == self.shift_end:
            raise FieldValueError("shift_end", f"{show(self.shift_end)} is the same as shift_start")
        _check_pair(self.home_lat, self.home_lon, "home_lat", "home_lon")
        _check_pair(self.service_lat, self.service_lon, "service_lat", "service_lon")
        if self.service_radius_km is not None and self.service_lat is None:
            raise FieldValueError(
                "service_lat", "is missing: a service radius needs service_lat and service_lon"
            )
        seen: set[tuple[str, str]] = set()
        for binding in self.calendars:
            key = (binding.platform, binding.calendar_id)
            if key in seen:
                raise FieldValueError(
                    "calendars", f"{show(':'.join(key))} is listed more than once"
                )
            seen.add(key)
        return self


# --- materials and job types ----------------------------------------------------------------


class MaterialInput(_Input):
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    unit: str = Field(default="each", min_length=1, max_length=32)
    # None: stock is not tracked for this material.
    in_stock: Annotated[float, AfterValidator(_check_not_negative)] | None = None


class JobTypeInput(_Input):
    name: str = Field(min_length=1, max_length=100)
    required_skills: TextList = Field(default_factory=list)
    setup_minutes: Annotated[int, AfterValidator(_check_not_negative)] = 0
    default_duration_minutes: Annotated[int, AfterValidator(_check_positive)] = 60


# --- appointments ---------------------------------------------------------------------------


class MaterialLineInput(_Input):
    """A material a job needs: `SKU` or `SKU*quantity` in a cell, or {"sku", "quantity"}."""

    sku: str = Field(min_length=1, max_length=64)
    quantity: Annotated[float, AfterValidator(_check_positive)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        sku, sep, quantity = value.rpartition("*")
        if not sep:
            return {"sku": value.strip()}
        return {"sku": sku.strip(), "quantity": quantity.strip()}


def _enum_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_").replace(" ", "_")
    return value


def _status(value: Any) -> Any:
    text = _enum_text(value)
    if isinstance(text, str):
        text = _STATUS_ALIASES.get(text, text)
        if text not in AppointmentStatus._value2member_map_:
            raise ValueError(
                f"{show(value)} is not a valid status (one of: "
                f"{', '.join(s.value for s in AppointmentStatus)})"
            )
    return text


def _priority(value: Any) -> Any:
    text = _enum_text(value)
    if isinstance(text, str) and text not in Priority._value2member_map_:
        choices = ", ".join(p.value for p in Priority)
        raise ValueError(f"{show(value)} is not a valid priority (one of: {choices})")
    return text


def _source(value: Any) -> Any:
    if isinstance(value, str):
        name = value.strip().lower()
        if name not in KNOWN_SOURCES:
            raise ValueError(
                f"{show(value)} is not a known source (one of: {_one_of(KNOWN_SOURCES)})"
            )
        return name
    return value


def default_appointment_id(source: str, source_id: str) -> str:
    """The id a job gets when its source gives none: stable, so re-imports find the same row."""
    return "J-" + hashlib.sha256(f"{source}:{source_id}".encode()).hexdigest()[:16]


def _localize(moment: datetime, zone_name: str | None, field: str) -> datetime:
    """Attach the zone to a naive local time, refusing times the zone makes ambiguous."""
    if moment.tzinfo is not None:
        return moment
    if zone_name is None:
        raise FieldValueError(
            field,
            f"{show(moment)} has no UTC offset and no 'timezone' is given; add an offset "
            "(e.g. +02:00) or a timezone such as 'Europe/Berlin' - offsets are never guessed",
        )
    zone = ZoneInfo(zone_name)
    early, late = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        round_trip = early.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip != moment:
            problem = "does not exist in {} (the clocks skip it for daylight saving time)"
        else:
            problem = "happens twice in {} (the clocks go back); add the UTC offset"
        raise FieldValueError(field, f"{show(moment)} {problem.format(zone_name)}")
    return early


class AppointmentInput(_Input):
    id: str | None = Field(default=None, min_length=1, max_length=64)
    source: Annotated[str, BeforeValidator(_source)]
    source_id: str = Field(min_length=1, max_length=200)
    technician_id: str | None = Field(default=None, max_length=64)  # None: not assigned yet
    status: Annotated[AppointmentStatus, BeforeValidator(_status)] = AppointmentStatus.BOOKED
    priority: Annotated[Priority, BeforeValidator(_priority)] = Priority.NORMAL
    job_type: str = Field(min_length=1, max_length=100)
    # Only read to place naive `start`/`end` times; the stored times are absolute.
    timezone: TimeZoneName | None = None
    start: DateTimeText
    end: DateTimeText | None = None
    duration_minutes: Annotated[int, AfterValidator(_check_positive)] | None = None
    customer_name: str = Field(min_length=1, max_length=200)
    customer_phone: str = Field(default="", max_length=64)
    customer_email: str = Field(default="", max_length=320)
    address: str = Field(min_length=1, max_length=500)
    lat: Latitude | None = None
    lon: Longitude | None = None
    materials: Annotated[list[MaterialLineInput], BeforeValidator(_cell_list)] = Field(
        default_factory=list
    )
    notes: str = ""

    @field_validator("customer_email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not _EMAIL_RE.fullmatch(value):
            raise ValueError(f"{show(value)} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _times(self) -> Self:
        # After this, start and end are timezone-aware and duration_minutes is set.
        self.start = _localize(self.start, self.timezone, "start")
        if self.end is None and self.duration_minutes is None:
            raise FieldValueError("end", "is missing: give 'end' or 'duration_minutes'")
        if self.end is not None:
            self.end = _localize(self.end, self.timezone, "end")
            if self.end <= self.start:
                raise FieldValueError(
                    "end", f"{show(self.end)} is not after start {show(self.start)}"
                )
            minutes = int((self.end - self.start).total_seconds() // 60)
            if self.duration_minutes is not None and self.duration_minutes != minutes:
                raise FieldValueError(
                    "duration_minutes",
                    f"{show(self.duration_minutes)} does not agree with start and end, "
                    f"which are {minutes} minutes apart",
                )
            self.duration_minutes = minutes
        else:
            assert self.duration_minutes is not None
            self.end = self.start + timedelta(minutes=self.duration_minutes)
        _check_pair(self.lat, self.lon, "lat", "lon")
        return self

    @property
    def resolved_id(self) -> str:
        return self.id or default_appointment_id(self.source, self.source_id)

    @property
    def resolved_end(self) -> datetime:
        assert self.end is not None, "validation always sets end"
        return self.end

    @property
    def resolved_duration(self) -> int:
        assert self.duration_minutes is not None, "validation always sets duration_minutes"
        return self.duration_minutes

    def material_payload(self) -> list[dict[str, Any]]:
        return [{"sku": m.sku, "quantity": m.quantity} for m in self.materials]


# --- error reporting ------------------------------------------------------------------------

_PLAIN: dict[str, str] = {
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "string_type": "is not text",
    "list_type": "is not a list",
    "model_type": "is not an object",
    "model_attributes_type": "is not an object",
    "dict_type": "is not an object",
    "time_type": "is not a time of day",
    "datetime_type": "is not a date-time",
}


def plain_message(error: Any) -> tuple[str | None, str]:
    """One pydantic error as (field it concerns, if it knows better; message in plain words)."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, FieldValueError):
            return cause.field, cause.message
        return None, str(cause) if cause is not None else error["msg"]
    if kind == "missing":
        return None, "is required but missing"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return None, "must not be empty"
    if kind == "string_too_long":
        return None, f"{show(value)} is too long (at most {ctx.get('max_length')} characters)"
    if kind in _PLAIN:
        return None, f"{show(value)} {_PLAIN[kind]}"
    return None, f"{show(value)}: {error['msg']}"


def field_errors(exc: ValidationError) -> list[FieldError]:
    """A ValidationError as one FieldError per problem, each naming its top-level field.

    Problems inside a list (one calendar binding, one material) keep the top-level field,
    because that is the column a spreadsheet user has to fix, and say which item it is.
    """
    result: list[FieldError] = []
    for error in exc.errors():
        field_hint, message = plain_message(error)
        loc = error["loc"]
        field = field_hint or (str(loc[0]) if loc else None)
        inner: list[str] = []
        for part in loc[1:]:
            inner.append(f"item {part + 1}" if isinstance(part, int) else f"'{part}'")
        if inner:
            message = f"{', '.join(inner)}: {message}"
        result.append(FieldError(field, message))
    return result


def required_fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]
