"""Calendar ids, and the Graph URLs and OData queries built from them.

Calendar ids
    "tech@contoso.com"                the mailbox's default calendar (/users/{u}/calendar)
    "tech@contoso.com/<calendarId>"   another calendar of that mailbox (/users/{u}/calendars/{c})
The mailbox part may also be the user's object id. Everything after the first "/" is the
calendar id, as Graph returned it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from connectors.errors import PermanentError
from connectors.msgraph.endpoints import PLATFORM


@dataclass(frozen=True)
class Target:
    """One calendar of one mailbox, and the paths (relative to the API base) that reach it."""

    mailbox: str
    calendar: str | None  # None: the default calendar

    @property
    def key(self) -> str:
        return self.mailbox.lower()

    @property
    def user(self) -> str:
        return f"/users/{quote(self.mailbox, safe='@')}"

    @property
    def root(self) -> str:
        if self.calendar is None:
            return f"{self.user}/calendar"
        return f"{self.user}/calendars/{quote(self.calendar, safe='')}"

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    def event(self, remote_id: str) -> str:
        return f"{self.events}/{quote(remote_id, safe='')}"

    @property
    def view(self) -> str:
        return f"{self.root}/calendarView"

    @property
    def schedule(self) -> str:
        return f"{self.user}/calendar/getSchedule"


def parse_calendar_id(calendar_id: str) -> tuple[str, str | None]:
    """("mailbox", calendar id or None for the default calendar); PermanentError if malformed."""
    mailbox, sep, calendar = (calendar_id or "").strip().partition("/")
    if not mailbox or any(ch.isspace() for ch in mailbox) or (sep and not calendar):
        raise PermanentError(
            f"calendar id {calendar_id!r} is not 'user@tenant' or 'user@tenant/<calendarId>'",
            platform=PLATFORM,
        )
    return mailbox, calendar or None


def parse_target(calendar_id: str) -> Target:
    return Target(*parse_calendar_id(calendar_id))


def odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand_properties(*property_ids: str) -> str:
    """The $expand value that returns these single-value extended properties with an event."""
    ids = " or ".join(f"id eq {odata_literal(p)}" for p in property_ids)
    return f"singleValueExtendedProperties($filter={ids})"


def with_query(path: str, params: Mapping[str, str]) -> str:
    return path + "?" + urlencode(params, quote_via=quote, safe="$'(),/:@")
