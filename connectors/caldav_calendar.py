"""CalDAV connector (RFC 4791): Apple iCloud Calendar and any standard CalDAV server
(Radicale, Xandikos, Nextcloud, Fastmail, ...).

HTTP. Every request, discovery included, goes through `PolicyClient` on httpx, so the shared
429 / 5xx / 401 policy, backoff and secret scrubbing apply to all of them. The `caldav`
library's own client is not used for I/O: it speaks niquests/requests (bypassing that policy
and any injected transport), and its save() decides from per-server feature hints whether to
send If-None-Match at all, where we need exactly our conditional headers on every write. It
still builds our XML request bodies (`caldav.elements`). Auth is Basic, sent pre-emptively
(iCloud offers "X-MobileMe-AuthToken" and Basic; Basic with an app-specific password is what
works); Digest is available for servers that demand it.

Calendar ids. A calendar id is one of
  - a name: the calendar collection's last path segment under the account's calendar home
    (found by discovery: current-user-principal -> calendar-home-set -> Depth 1 PROPFIND), or
    failing that its display name when exactly one calendar has it ("Work");
  - an absolute path on the server ("/tech/jobs/"), or a full collection URL
    ("https://p42-caldav.icloud.com/123456/calendars/ABC-DEF/").
Credentials go only to the server's own origin and the origins discovery led to (iCloud keeps
each account's calendar home on a partition host, pNN-caldav.icloud.com).

Events. One resource per event, `<calendar-url>/<name>.ics`, named and UID'd from the
idempotency key, so `lookup()` is a single GET. remote_id is that resource name; etag is the
server's ETag. The VCALENDAR holds our VEVENT (fieldsync.ics rendering: X-FIELDSYNC-JOB-ID
stamp, SEQUENCE, TZID local times) plus a VTIMEZONE for the technician's zone, so the server's
own time-range evaluation and every device read the right instant across DST changes.

  create  PUT If-None-Match: *. A 412 means the resource exists - a retried create whose first
          reply was lost: GET it; ours with the same content is the answer, ours with other
          content is updated (If-Match), anything else is NotOwnedError. Never a second event.
  update  GET (the stamp decides ownership; SEQUENCE and CREATED carry over), then
          PUT If-Match: <the caller's etag>; 412 -> PreconditionFailedError, which the base
          class answers by re-reading and writing again. Unchanged content is not rewritten.
  delete  GET (ownership), then DELETE If-Match: <the etag just read>, so a resource replaced
          by someone else's event between the two requests is never removed. The caller's etag
          is not required to match: an owned event is deleted even after a hand edit (the
          ledger decides about jobs we own, and the base class does not reconcile deletes).
          404 -> NotFoundError, which `push()` counts as done.

Busy time is a calendar-query REPORT with a time-range filter: it returns our events and
foreign ones, and only the events' own data tells which are ours (the contract wants job ids).
Recurring foreign events are expanded locally (fieldsync.ics.busy_intervals). free-busy-query
cannot mark our events and iCloud answers it with 400, so it is only the fallback for a
calendar where calendar-query is forbidden (403: shared with free-busy rights only).

CalDAV has no batch writes: `push()` is one request (two for update/delete) per op, and the
ops of one calendar run one at a time (one push task per calendar; the executor may run several
chunks of one calendar in parallel otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, unquote

import httpx
import icalendar
from caldav.elements import cdav, dav
from caldav.elements.base import BaseElement
from lxml import etree

from connectors.base import (
    BusyBlock,
    CalendarConnector,
    Op,
    OpResult,
    RemoteEvent,
    RemoteRef,
)
from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
)
from connectors.http import Action, ConcurrencyLimit, PolicyClient, RateLimiter, StatusPolicy
from fieldsync.events import CalendarEvent
from fieldsync.ics import (
    CRLF,
    Feed,
    FeedEvent,
    IcsFormatError,
    busy_intervals,
    normalized,
    parse_feed,
    vtimezone,
    zone,
)

log = logging.getLogger(__name__)

__all__ = [
    "ICLOUD_SERVER",
    "CalDavConnector",
    "ICloudConnector",
    "resource_name",
    "uid_for",
]

ICLOUD_SERVER = "https://caldav.icloud.com"
PRODID = "-//fieldsync//CalDAV 1.0//EN"
UID_DOMAIN = "fieldsync"
USER_AGENT = "fieldsync-caldav/1.0"

_XML = "application/xml; charset=utf-8"
_ICS = "text/calendar; charset=utf-8"
_D = "{DAV:}"
_C = "{urn:ietf:params:xml:ns:caldav}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
# VTIMEZONEs cover from last year to this many years ahead (further when an event is later).
_ZONE_YEARS_AHEAD = 10
# Entities are never expanded and nothing is fetched: the XML comes from a remote server.
_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

# Keys that make a readable, URL-safe resource name as they are. Everything else is hashed,
# and hashed names carry a "+" that readable ones never contain, so the two never collide.
_READABLE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")

_POLICY = StatusPolicy(
    overrides={
        # WebDAV 409 is a conflict with the collection (a missing parent collection, or
        # CALDAV:no-uid-conflict), not an etag mismatch: retrying the same write cannot help.
        409: Action.FAIL,
        # 507 Insufficient Storage: the account's quota is full; retrying will not free it.
        507: Action.FAIL,
    }
)


def uid_for(key: str) -> str:
    """The iCalendar UID of the event a create with this idempotency key makes."""
    return f"{key}@{UID_DOMAIN}"


def resource_name(key: str) -> str:
    """The name of that event's resource inside its calendar collection (its remote_id)."""
    if _READABLE_KEY.fullmatch(key) and ".." not in key:
        return f"{key}.ics"
    return f"fieldsync+{hashlib.sha256(key.encode()).hexdigest()[:40]}.ics"


def _valid_name(name: str) -> bool:
    # A remote id names one resource in the collection: nothing that could climb out of it.
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host, port)


def _strong(etag: str | None) -> str | None:
    """The etag when If-Match can use it; weak validators never match (RFC 9110 13.1.1)."""
    if etag is None or etag.startswith("W/") or not etag.strip():
        return None
    return etag


def _body(element: BaseElement) -> bytes:
    data: bytes = etree.tostring(element.xmlelement(), xml_declaration=True, encoding="utf-8")
    return data


def _propfind_body(*props: BaseElement) -> bytes:
    return _body(dav.Propfind() + (dav.Prop() + list(props)))


@dataclass(frozen=True, slots=True)
class _DavResponse:
    """One <response> of a 207 Multi-Status."""

    href: httpx.URL
    status: int | None  # a response-level <status>, given instead of propstats
    props: dict[str, Any]  # property tag -> lxml element, for properties found (2xx)


@dataclass(frozen=True, slots=True)
class _Calendar:
    url: httpx.URL  # the collection, ending in "/"
    name: str  # its last path segment, unquoted
    display_name: str
    timezone: str | None  # TZID of CALDAV:calendar-timezone: floating times are read in it


@dataclass(frozen=True, slots=True)
class _Resource:
    name: str
    etag: str | None
    master: FeedEvent | None  # the VEVENT the resource is about; None when unreadable

    @property
    def job_id(self) -> str | None:
        return None if self.master is None else self.master.job_id

    @property
    def ref(self) -> RemoteRef:
        return RemoteRef(self.name, self.etag)


def _master(data: bytes) -> FeedEvent | None:
    try:
        feed = parse_feed(data)
    except IcsFormatError:
        return None
    # The series master (or the only VEVENT), never an override; ours first, like the feed index.
    candidates = [e for e in feed.events if e.uid is not None and not e.is_override]
    candidates.sort(key=lambda e: not e.owned)
    return candidates[0] if candidates else None


def _same_content(current: _Resource, event: CalendarEvent) -> bool:
    if current.master is None or current.job_id is None:
        return False
    stored = current.master.event
    return stored is not None and stored.canonical() == normalized(event).canonical()


def _status_code(text: str | None) -> int | None:
    # "HTTP/1.1 200 OK"
    if not text:
        return None
    parts = text.split()
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def _zone_of(calendar_timezone: str | None) -> str | None:
    """The TZID inside a CALDAV:calendar-timezone value (a VCALENDAR with one VTIMEZONE)."""
    if not calendar_timezone:
        return None
    unfolded = re.sub(r"\r?\n[ \t]", "", calendar_timezone)
    found = re.search(r"^TZID(?:;[^:]*)?:(.+?)\r?$", unfolded, re.MULTILINE)
    return found.group(1).strip() if found else None


class _BasicAuth:
    """Pre-emptive Basic credentials; a refused password cannot be refreshed."""

    def __init__(self, platform: str, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._header = f"Basic {token}"
        self._secrets = (password, token)
        self._platform = platform

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}

    def refresh(self) -> None:
        raise _refused(self._platform)

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def __repr__(self) -> str:
        return "_BasicAuth(***)"


class _DigestAuth:
    """Digest is computed per request by httpx.DigestAuth on the client; nothing to add here."""

    def __init__(self, platform: str, password: str) -> None:
        self._secrets = (password,)
        self._platform = platform

    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> None:
        raise _refused(self._platform)

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def __repr__(self) -> str:
        return "_DigestAuth(***)"


def _refused(platform: str) -> AuthError:
    hint = " (iCloud needs an app-specific password, not the Apple ID password)"
    return AuthError(
        "the server refused the user name and password" + (hint if platform == "icloud" else ""),
        platform=platform,
        status=401,
    )


class CalDavConnector(CalendarConnector):
    platform: ClassVar[str] = "caldav"
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True
    # Self-hosted servers (Nextcloud, Radicale behind a proxy) handle a few calendars at once;
    # Radicale itself serializes writes behind one storage lock, so more would only queue.
    max_parallel_calendars: ClassVar[int] = 4

    def __init__(
        self,
        server_url: str,
        username: str,
        password: str,
        *,
        auth_scheme: Literal["basic", "digest"] = "basic",
        client: httpx.Client | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        try:
            server = httpx.URL(server_url)
        except httpx.InvalidURL as exc:
            raise PermanentError(f"server URL is invalid: {exc}", platform=self.platform) from None
        if server.scheme not in ("http", "https") or not server.host:
            raise PermanentError(
                "server URL must be an http(s) URL with a host", platform=self.platform
            )
        if not username:
            raise PermanentError("a user name is required", platform=self.platform)
        self.server_url = server
        self.username = username
        self._owns_client = client is None
        if client is None:
            client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})
        auth: _BasicAuth | _DigestAuth
        if auth_scheme == "digest":
            client.auth = httpx.DigestAuth(username, password)
            auth = _DigestAuth(self.platform, password)
        elif auth_scheme == "basic":
            auth = _BasicAuth(self.platform, username, password)
        else:
            raise PermanentError(f"unknown auth scheme {auth_scheme!r}", platform=self.platform)
        self._http = PolicyClient(
            self.platform,
            client,
            auth,
            policy=_POLICY,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
            limiter=limiter,
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._trusted = {_origin(server)}
        self._lock = threading.RLock()
        self._homes: list[httpx.URL] | None = None
        self._listing: list[_Calendar] | None = None
        self._calendars: dict[str, _Calendar] = {}
        self._serial = ConcurrencyLimit(1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.server_url)!r}, {self.username!r})"

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    # --- HTTP -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        if _origin(url) not in self._trusted:
            # Only reachable through a bug or a hostile href: credentials stay home.
            raise PermanentError(
                f"refusing to send credentials to {url.scheme}://{url.host}", platform=self.platform
            )
        return self._http.request(method, url, headers=headers, content=content)

    def _multistatus(self, method: str, response: httpx.Response) -> list[_DavResponse]:
        where = f"{method} {response.request.url.path}"
        if response.status_code != 207:
            raise PermanentError(
                f"{where}: expected 207 Multi-Status, got {response.status_code}",
                platform=self.platform,
                status=response.status_code,
            )
        try:
            root = etree.fromstring(response.content, _XML_PARSER)
        except etree.XMLSyntaxError as exc:
            raise PermanentError(
                f"{where}: unreadable Multi-Status: {exc}", platform=self.platform
            ) from None
        if root is None or root.tag != f"{_D}multistatus":
            raise PermanentError(
                f"{where}: the reply is not a Multi-Status", platform=self.platform
            )
        base = response.request.url
        out: list[_DavResponse] = []
        for item in root.iterfind(f"{_D}response"):
            href = (item.findtext(f"{_D}href") or "").strip()
            if not href:
                continue
            props: dict[str, Any] = {}
            for propstat in item.iterfind(f"{_D}propstat"):
                code = _status_code(propstat.findtext(f"{_D}status"))
                prop = propstat.find(f"{_D}prop")
                if code is not None and 200 <= code < 300 and prop is not None:
                    for element in prop:
                        props[element.tag] = element
            out.append(
                _DavResponse(base.join(href), _status_code(item.findtext(f"{_D}status")), props)
            )
        return out

    def _propfind(
        self, url: httpx.URL, body: bytes, depth: Literal[0, 1]
    ) -> tuple[httpx.URL, list[_DavResponse]]:
        """PROPFIND, following redirects (iCloud and /.well-known/caldav send them)."""
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._request(
                "PROPFIND",
                url,
                headers={"Depth": str(depth), "Content-Type": _XML},
                content=body,
            )
            location = response.headers.get("Location")
            if response.status_code in _REDIRECTS and location:
                target = url.join(location)
                self._trust(target, via=url)
                url = target
                continue
            return url, self._multistatus("PROPFIND", response)
        raise PermanentError(f"PROPFIND {url.path}: too many redirects", platform=self.platform)

    def _trust(self, url: httpx.URL, *, via: httpx.URL) -> None:
        """Accept an origin the server pointed us to; never downgrade credentials to plain HTTP
        on another host."""
        if _origin(url) in self._trusted:
            return
        if url.scheme != "https":
            raise PermanentError(
                f"{via.host} pointed to {url.scheme}://{url.host}; credentials are only sent "
                "there over https",
                platform=self.platform,
            )
        self._trusted.add(_origin(url))

    # --- discovery --------------------------------------------------------------------------

    def _principal(self) -> httpx.URL:
        body = _propfind_body(dav.CurrentUserPrincipal())
        for start in (self.server_url, self.server_url.join("/.well-known/caldav")):
            try:
                final, found = self._propfind(start, body, 0)
            except (NotFoundError, PermanentError) as exc:
                log.debug("%s: no principal at %s: %s", self.platform, start.path, exc)
                continue
            for item in found:
                prop = item.props.get(f"{_D}current-user-principal")
                href = None if prop is None else prop.findtext(f"{_D}href")
                if href and href.strip():
                    return final.join(href.strip())
        # Servers without RFC 5397: the configured URL is taken to be the principal itself.
        return self.server_url

    def _calendar_homes(self) -> list[httpx.URL]:
        if self._homes is None:
            principal = self._principal()
            final, found = self._propfind(principal, _propfind_body(cdav.CalendarHomeSet()), 0)
            homes: list[httpx.URL] = []
            for item in found:
                prop = item.props.get(f"{_C}calendar-home-set")
                if prop is None:
                    continue
                for href in prop.iterfind(f"{_D}href"):
                    if href.text and href.text.strip():
                        home = final.join(href.text.strip())
                        self._trust(home, via=final)
                        homes.append(home)
            if not homes:
                raise PermanentError(
                    f"the server names no calendar home for {self.username!r}",
                    platform=self.platform,
                )
            self._homes = homes
        return self._homes

    def _list_calendars(self) -> list[_Calendar]:
        body = _propfind_body(
            dav.ResourceType(),
            dav.DisplayName(),
            cdav.CalendarTimeZone(),
            cdav.SupportedCalendarComponentSet(),
        )
        calendars: list[_Calendar] = []
        for home in self._calendar_homes():
            _, found = self._propfind(home, body, 1)
            for item in found:
                calendar = self._as_calendar(item)
                if calendar is not None:
                    calendars.append(calendar)
        self._listing = calendars
        return calendars

    @staticmethod
    def _as_calendar(item: _DavResponse) -> _Calendar | None:
        kind = item.props.get(f"{_D}resourcetype")
        if kind is None or kind.find(f"{_C}calendar") is None:
            return None
        components = item.props.get(f"{_C}supported-calendar-component-set")
        if components is not None and len(components):
            names = {str(c.get("name", "")).upper() for c in components}
            if "VEVENT" not in names:
                return None  # iCloud keeps reminders (VTODO) in calendars of their own
        url = item.href
        if not url.path.endswith("/"):
            url = url.copy_with(path=url.path + "/")
        name = unquote(url.path.rstrip("/").rsplit("/", 1)[-1])
        display = item.props.get(f"{_D}displayname")
        timezone = item.props.get(f"{_C}calendar-timezone")
        return _Calendar(
            url=url,
            name=name,
            display_name=(display.text or "").strip() if display is not None else "",
            timezone=_zone_of(timezone.text if timezone is not None else None),
        )

    def _calendar(self, calendar_id: str) -> _Calendar:
        with self._lock:
            found = self._calendars.get(calendar_id)
            if found is None:
                try:
                    found = self._resolve(calendar_id)
                except NotFoundError as exc:
                    # Not NotFoundError: that would read as "the event is gone" to the caller.
                    raise PermanentError(
                        f"calendar {calendar_id!r} not found: {exc.message}",
                        platform=self.platform,
                        status=exc.status,
                    ) from exc
                self._calendars[calendar_id] = found
            return found

    def _resolve(self, calendar_id: str) -> _Calendar:
        if not calendar_id.strip():
            raise PermanentError("the calendar id is empty", platform=self.platform)
        if calendar_id.startswith(("http://", "https://", "/")):
            return self._resolve_url(calendar_id)
        cached = self._listing is not None
        listing = self._listing if self._listing is not None else self._list_calendars()
        for again in (False, True):
            if again:
                if not cached:
                    break
                listing = self._list_calendars()  # created since we last looked?
            by_name = [c for c in listing if c.name == calendar_id]
            if by_name:
                return by_name[0]
            by_display = [c for c in listing if c.display_name == calendar_id]
            if len(by_display) == 1:
                return by_display[0]
            if len(by_display) > 1:
                raise PermanentError(
                    f"{len(by_display)} calendars are named {calendar_id!r}; use the collection "
                    f"name ({', '.join(c.name for c in by_display)}) as the calendar id",
                    platform=self.platform,
                )
        known = ", ".join(sorted(f"{c.name} ({c.display_name})" for c in listing)) or "none"
        raise PermanentError(
            f"no calendar {calendar_id!r} in the calendar home; calendars found: {known}",
            platform=self.platform,
        )

    def _resolve_url(self, calendar_id: str) -> _Calendar:
        url = self.server_url.join(calendar_id)
        if not url.path.endswith("/"):
            url = url.copy_with(path=url.path + "/")
        if _origin(url) not in self._trusted:
            self._calendar_homes()  # the account's home may live on another host (iCloud)
            if _origin(url) not in self._trusted:
                raise PermanentError(
                    f"calendar URL host {url.host} is neither the server's nor its calendar "
                    "home's; credentials are not sent to it",
                    platform=self.platform,
                )
        body = _propfind_body(
            dav.ResourceType(),
            dav.DisplayName(),
            cdav.CalendarTimeZone(),
            cdav.SupportedCalendarComponentSet(),
        )
        _, found = self._propfind(url, body, 0)
        for item in found:
            calendar = self._as_calendar(item)
            if calendar is not None:
                return calendar
        raise PermanentError(
            f"{url.path} is not a calendar collection that holds events", platform=self.platform
        )

    # --- resources --------------------------------------------------------------------------

    def _href(self, calendar: _Calendar, name: str) -> httpx.URL:
        if not _valid_name(name):
            raise NotFoundError(f"event {name!r} not found", platform=self.platform)
        return httpx.URL(str(calendar.url) + quote(name, safe="@+~!$&'()*,;="))

    def _get(self, calendar: _Calendar, name: str) -> _Resource | None:
        if not _valid_name(name):
            return None
        try:
            response = self._request(
                "GET", self._href(calendar, name), headers={"Accept": "text/calendar"}
            )
        except NotFoundError:
            return None
        if response.status_code != 200:
            raise PermanentError(
                f"GET {name}: unexpected {response.status_code}",
                platform=self.platform,
                status=response.status_code,
            )
        return _Resource(name, response.headers.get("ETag"), _master(response.content))

    def _owned(self, calendar: _Calendar, name: str) -> _Resource:
        current = self._get(calendar, name)
        if current is None:
            raise NotFoundError(f"event {name} not found", platform=self.platform, status=404)
        if current.job_id is None:
            raise NotOwnedError(
                f"event {name} does not carry our job stamp", platform=self.platform
            )
        return current

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _document(
        self, event: CalendarEvent, *, uid: str, sequence: int, created: datetime | None
    ) -> bytes:
        """The calendar object resource: one VEVENT plus the VTIMEZONEs it references.

        No METHOD property: RFC 4791 4.1 forbids it in stored calendar object resources.
        """
        now = self._now()
        try:
            vevent = FeedEvent.ours(
                event,
                uid=uid,
                sequence=sequence,
                dtstamp=now,
                created=created or now,
                last_modified=now,
            )
            zones = []
            for tzid in sorted(vevent.tzids):
                tz = zone(tzid)
                years = (event.start.astimezone(tz).year, event.end.astimezone(tz).year)
                # One span for every event written this year, not one per event: Radicale
                # (vobject) keeps one process-wide definition per TZID and reads every event's
                # TZID times with whichever VTIMEZONE it parsed last, so a 2026 event's
                # VTIMEZONE ending in 2027 shifted a 2028 event by an hour in its time-range
                # queries. A year of margin either side, as the feed does.
                first = min(*years, now.year) - 1
                last = max(*years, now.year + _ZONE_YEARS_AHEAD) + 1
                text = vtimezone(tzid, first, last)
                if text is not None:
                    zones.append(text)
        except IcsFormatError as exc:
            raise PermanentError(f"job {event.job_id}: {exc}", platform=self.platform) from exc
        head = (
            f"BEGIN:VCALENDAR{CRLF}VERSION:2.0{CRLF}PRODID:{PRODID}{CRLF}CALSCALE:GREGORIAN{CRLF}"
        )
        return (head + "".join(zones) + vevent.text + f"END:VCALENDAR{CRLF}").encode("utf-8")

    def _put(
        self, calendar: _Calendar, name: str, body: bytes, condition: dict[str, str]
    ) -> RemoteRef:
        response = self._request(
            "PUT",
            self._href(calendar, name),
            headers={"Content-Type": _ICS, **condition},
            content=body,
        )
        etag = _strong(response.headers.get("ETag"))
        if etag is None:
            # RFC 4791 5.3.4: a server that altered the data on the way in sends no strong
            # ETag; the stored version's etag comes with a GET.
            stored = self._get(calendar, name)
            if stored is None:
                raise NotFoundError(
                    f"event {name} vanished right after it was written", platform=self.platform
                )
            etag = stored.etag
        return RemoteRef(name, etag)

    def _rewrite(
        self, calendar: _Calendar, current: _Resource, event: CalendarEvent, if_match: str | None
    ) -> RemoteRef:
        assert current.master is not None and current.master.uid is not None
        body = self._document(
            event,
            uid=current.master.uid,  # a resource's UID must never change (RFC 4791 5.3.2.1)
            sequence=current.master.sequence + 1,
            created=current.master.created,
        )
        condition = {"If-Match": if_match} if if_match else {}
        return self._put(calendar, current.name, body, condition)

    # --- contract ---------------------------------------------------------------------------

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        calendar = self._calendar(calendar_id)
        name, uid = resource_name(key), uid_for(key)
        body = self._document(event, uid=uid, sequence=0, created=None)
        for _ in range(2):
            try:
                return self._put(calendar, name, body, {"If-None-Match": "*"})
            except PreconditionFailedError:
                pass
            # 412: the resource exists. Most likely this create already ran and its reply was
            # lost; adopt what is there rather than make a second event.
            current = self._get(calendar, name)
            if current is None:
                continue  # deleted between our PUT and GET: create it again
            if current.job_id is None:
                raise NotOwnedError(
                    f"event {name} exists and does not carry our job stamp",
                    platform=self.platform,
                )
            if _same_content(current, event):
                return current.ref
            return self._rewrite(calendar, current, event, _strong(current.etag))
        raise PermanentError(
            f"the server refuses to create {name} (412) although nothing is stored there; "
            f"another event in the calendar probably holds UID {uid}",
            platform=self.platform,
            status=412,
        )

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        calendar = self._calendar(calendar_id)
        current = self._owned(calendar, ref.remote_id)
        if _same_content(current, event) and ref.etag in (None, current.etag):
            return current.ref  # nothing to change: no write, no notification on devices
        return self._rewrite(calendar, current, event, ref.etag or _strong(current.etag))

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        calendar = self._calendar(calendar_id)
        for attempt in range(2):
            current = self._owned(calendar, ref.remote_id)
            etag = _strong(current.etag)
            try:
                self._request(
                    "DELETE",
                    self._href(calendar, current.name),
                    headers={"If-Match": etag} if etag else None,
                )
                return
            except PreconditionFailedError:
                if attempt:
                    raise  # changed under us twice in a row: let the next sync look again

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        current = self._get(self._calendar(calendar_id), remote_id)
        if current is None:
            return None
        content = current.master.event if current.master is not None else None
        return RemoteEvent(current.ref, current.job_id, content)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        # The resource name comes from the key, so what an unrecorded create made is one GET.
        current = self._get(self._calendar(calendar_id), resource_name(key))
        if current is None or current.job_id is None:
            return None
        return current.ref

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            self._calendar(calendar_id)
        except ConnectorError as exc:
            # Discovery failed: none of the batch can land, and each op need not rediscover.
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]
        with self._serial.hold(calendar_id):
            return super().push(calendar_id, ops)

    # --- busy time --------------------------------------------------------------------------

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("busy window must be timezone-aware")
        calendar = self._calendar(calendar_id)
        # `a + b` appends b to a and returns a.
        event_filter = cdav.CompFilter("VEVENT") + cdav.TimeRange(start, end)
        query = (
            cdav.CalendarQuery()
            + (dav.Prop() + dav.GetEtag() + cdav.CalendarData())
            + (cdav.Filter() + (cdav.CompFilter("VCALENDAR") + event_filter))
        )
        try:
            response = self._request(
                "REPORT",
                calendar.url,
                headers={"Depth": "1", "Content-Type": _XML},
                content=_body(query),
            )
        except PermanentError as exc:
            if exc.status != 403:
                raise
            return self._free_busy(calendar, start, end)
        blocks: list[BusyBlock] = []
        for item in self._multistatus("REPORT", response):
            data = item.props.get(f"{_C}calendar-data")
            if data is None or not data.text:
                continue
            try:
                feed = parse_feed(data.text.encode("utf-8", "surrogateescape"))
            except IcsFormatError as exc:
                # Someone else's unreadable event must not hide the rest of the day.
                log.warning("%s: skipping unreadable %s: %s", self.platform, item.href.path, exc)
                continue
            if feed.calendar_timezone is None and calendar.timezone is not None:
                feed = Feed(feed.events, feed.timezones, feed.others, calendar.timezone)
            blocks.extend(BusyBlock(s, e, job) for s, e, job in busy_intervals(feed, start, end))
        blocks.sort(key=lambda b: (b.start, b.end, b.job_id or ""))
        return blocks

    def _free_busy(self, calendar: _Calendar, start: datetime, end: datetime) -> list[BusyBlock]:
        """free-busy-query (RFC 4791 7.10): busy periods only, none of them marked ours."""
        response = self._request(
            "REPORT",
            calendar.url,
            headers={"Depth": "1", "Content-Type": _XML},
            content=_body(cdav.FreeBusyQuery() + cdav.TimeRange(start, end)),
        )
        try:
            document = icalendar.Calendar.from_ical(response.content)
        except ValueError as exc:
            raise PermanentError(
                f"free-busy-query: unreadable reply: {exc}", platform=self.platform
            ) from None
        blocks: list[BusyBlock] = []
        for vfreebusy in document.walk("VFREEBUSY"):
            value = vfreebusy.get("FREEBUSY")
            for prop in value if isinstance(value, list) else [value] if value else []:
                if str(prop.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                    continue
                begin, until = prop.dt
                finish = begin + until if not isinstance(until, datetime) else until
                if begin < end and finish > start:
                    blocks.append(BusyBlock(begin.astimezone(UTC), finish.astimezone(UTC)))
        blocks.sort(key=lambda b: (b.start, b.end))
        return blocks


class ICloudConnector(CalDavConnector):
    """iCloud Calendar: an Apple ID with an app-specific password, Basic auth over https."""

    platform: ClassVar[str] = "icloud"
    # Apple publishes no CalDAV rate limit and throttles with 503 + Retry-After; two
    # calendars at a time per account keeps a large sync clear of that.
    max_parallel_calendars: ClassVar[int] = 2

    def __init__(
        self,
        apple_id: str,
        app_specific_password: str,
        *,
        server_url: str = ICLOUD_SERVER,
        **options: Any,
    ) -> None:
        super().__init__(server_url, apple_id, app_specific_password, **options)
