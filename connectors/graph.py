"""Microsoft 365 / Outlook calendars over Microsoft Graph (v1.0), with app-only credentials.

Calendar ids
    "tech@contoso.com"                the mailbox's default calendar (/users/{u}/calendar)
    "tech@contoso.com/<calendarId>"   another calendar of that mailbox (/users/{u}/calendars/{c})
The mailbox part may also be the user's object id. Everything after the first "/" is the
calendar id, as Graph returned it.

Tokens
    msal's ConfidentialClientApplication, client credentials with a client secret or a
    certificate (PEM private key + SHA-1 thumbprint). msal caches the token and fetches a new one
    when less than five minutes remain. A 401 from Graph drops the cached token and fetches a
    fresh one once (PolicyClient's REFRESH_AUTH); refused again -> AuthError. msal's HTTP goes
    through the same httpx.Client as Graph calls, so one TLS/proxy setting covers both.

Idempotency and ownership
    Every event we write carries three single-value extended properties in our own property set:
    the job id (our stamp), the idempotency key, and a JSON blob with what Outlook has no field
    for (IANA zone, status, details, coordinates). A create also sends `transactionId`, a UUID
    derived from the key: Graph answers a repeated POST with the event the first one made, which
    covers a create whose response was lost. `lookup()` finds an earlier create by its key
    ($filter on the key property), `create()` looks there before POSTing, and a bulk `push()`
    looks up the creates the ledger marks as retries (an earlier attempt may have landed), so
    a first create costs no lookup and a repeated one is never made twice.
    Events without our job stamp are never changed: update/delete without an etag first read the
    event's stamp (NotOwnedError when absent); with an etag (from our own last write) If-Match
    proves the event is exactly as we left it, and a 412 leads to a re-read that checks the stamp
    again before our content wins.

Content
    subject <- summary, body (text) <- description, location.displayName and .coordinates <-
    location, lat/lon, showAs busy / tentative / free (cancelled) <- status, categories <-
    categories, start/end <- {"dateTime": wall time, "timeZone": the event's IANA zone}. A wall
    time that occurs twice (clocks going back) is sent in UTC instead, so the instant is exact.
    Reads ask for `Prefer: outlook.timezone="UTC"` and convert to the event's zone; no offset is
    ever guessed. Never any attendees: Outlook would mail invitations.

Bulk
    `push()` sends JSON `$batch` requests of at most 20 sub-requests, matches sub-responses by id
    (Graph does not keep their order) and applies `apply_one`'s outcome rules to each: delete of a
    missing event is done, 412 re-reads and retries, 429/5xx sub-responses are sent again after
    backing off (Retry-After as a floor). 200 first creates cost 10 batches.

Limits, as data
    Outlook serves at most 4 concurrent requests per mailbox, and Graph hands up to 4
    sub-requests of one batch to Outlook at once: a batch holds min(4, size) of the mailbox's 4
    slots. Each mailbox also has a token bucket sized so no 10-minute window exceeds 10,000
    requests (burst 1,000 + 15/s x 600 s); a batch spends one token per sub-request. Both are
    shared by every connector in the process. 429 Retry-After is honoured by PolicyClient.

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

import json
import logging
import re
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msal
from msal.exceptions import MsalServiceError

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
    RateLimitedError,
    TransientError,
    scrub,
)
from connectors.http import (
    Action,
    ConcurrencyLimit,
    PolicyClient,
    RateLimiter,
    StatusPolicy,
    backoff_scale,
    error_message,
    json_body,
    retry_after_seconds,
)
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent

log = logging.getLogger(__name__)

__all__ = [
    "DATA_PROPERTY",
    "DEFAULT_API_BASE_URL",
    "DEFAULT_AUTHORITY_HOST",
    "JOB_PROPERTY",
    "KEY_PROPERTY",
    "GraphCredentials",
    "GraphTokenProvider",
    "MicrosoftGraphConnector",
    "decode_event",
    "parse_calendar_id",
    "transaction_id",
]

PLATFORM = "outlook"
DEFAULT_API_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Our MAPI property set. Fixed forever: it is how we recognise our events in every mailbox.
PROPERTY_SET = "{8b5e2f1c-6d4a-4f0e-9c3b-27a1d5e9f604}"
JOB_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncJobId"
KEY_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncKey"
DATA_PROPERTY = f"String {PROPERTY_SET} Name fieldsyncData"
_TRANSACTION_NAMESPACE = uuid.UUID("5f0c7a3e-9b1d-4e62-8a47-c3d2e1f0b9a8")

MAX_BATCH = 20
MAILBOX_CONCURRENCY = 4
# burst + rate * 600 s = 10,000: no 10-minute window can exceed the mailbox quota.
MAILBOX_BURST = 1_000
MAILBOX_RATE = 15.0
SCHEDULE_WINDOW = timedelta(days=42)
VIEW_PAGE_SIZE = 500
_PREFER = 'outlook.timezone="UTC", outlook.body-content-type="text"'
_SHOW_AS = {"confirmed": "busy", "tentative": "tentative", "cancelled": "free"}
_NOT_FOUND_CODES = frozenset({"ErrorItemNotFound", "ItemNotFound"})
_ACCESS_DENIED_CODES = frozenset(
    {"ErrorAccessDenied", "Authorization_RequestDenied", "AccessDenied"}
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def transaction_id(key: str) -> str:
    """The Graph transactionId for an idempotency key: stable, so a repeated create dedupes."""
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, key))


# --- credentials and tokens ----------------------------------------------------------------


@dataclass(frozen=True)
class GraphCredentials:
    """An Entra ID app registration's client credentials. `name` (the block's name) is what
    error messages point ops at; the secret and key never leave this object in text."""

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_private_key: str | None = field(default=None, repr=False)
    certificate_thumbprint: str | None = None
    authority_host: str = DEFAULT_AUTHORITY_HOST
    name: str = "Microsoft Graph credentials"

    def __post_init__(self) -> None:
        if bool(self.client_secret) == bool(self.certificate_private_key):
            raise ValueError(
                f"{self.name}: give exactly one of a client secret or a certificate private key"
            )
        if self.certificate_private_key and not self.certificate_thumbprint:
            raise ValueError(f"{self.name}: a certificate credential needs its thumbprint")

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.client_secret, self.certificate_private_key) if s)


class _MsalTransport:
    """msal's minimal HttpClient interface over our httpx.Client."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @staticmethod
    def _headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
        return {k: str(v) for k, v in (headers or {}).items() if v is not None}

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if isinstance(data, str | bytes):
            return self._client.post(
                url, params=params, content=data, headers=self._headers(headers)
            )
        # msal passes the client assertion as bytes; httpx would form-encode their repr.
        form = {k: v.decode() if isinstance(v, bytes) else v for k, v in (data or {}).items()}
        return self._client.post(url, params=params, data=form, headers=self._headers(headers))

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self._client.get(url, params=params, headers=self._headers(headers))

    def close(self) -> None:
        """The connector owns the httpx.Client."""


class GraphTokenProvider:
    """connectors.http.AuthProvider backed by msal's client-credentials flow and token cache."""

    def __init__(
        self,
        credentials: GraphCredentials,
        http: httpx.Client,
        *,
        scope: str = GRAPH_SCOPE,
        platform: str = PLATFORM,
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self.platform = platform
        self._http = http
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._issued: str | None = None  # the token most recently handed out
        self._local = threading.local()  # the token this thread last sent
        self.fetches = 0  # tokens obtained from the token endpoint (not the cache)

    def headers(self) -> dict[str, str]:
        with self._lock:
            token = self._acquire()
        self._local.token = token
        return {"Authorization": f"Bearer {token}"}

    def refresh(self) -> None:
        with self._lock:
            failed = getattr(self._local, "token", None)
            if failed is not None and self._issued is not None and failed != self._issued:
                return  # another thread already replaced the token this one was refused with
            app = self._application()
            cache = app.token_cache
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
            self._acquire()

    def secrets(self) -> tuple[str, ...]:
        found = self.credentials.secrets()
        return found + ((self._issued,) if self._issued else ())

    # --- internals ---

    def _where(self) -> str:
        c = self.credentials
        return f"credentials block {c.name!r} (tenant {c.tenant_id}, client {c.client_id})"

    def _clean(self, text: str) -> str:
        return scrub(text, tuple(sorted(self.secrets(), key=len, reverse=True)))

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is not None:
            return self._app
        c = self.credentials
        credential: str | dict[str, str]
        if c.client_secret:
            credential = c.client_secret
        else:
            assert c.certificate_private_key and c.certificate_thumbprint
            credential = {
                "private_key": c.certificate_private_key,
                "thumbprint": c.certificate_thumbprint.replace(":", "").strip(),
            }
        host = c.authority_host.rstrip("/")
        try:
            # msal reads the authority's OpenID configuration here, over our transport.
            self._app = msal.ConfidentialClientApplication(
                c.client_id,
                client_credential=credential,
                authority=f"{host}/{c.tenant_id}",
                validate_authority=host == DEFAULT_AUTHORITY_HOST,
                instance_discovery=False,
                http_client=_MsalTransport(self._http),
                token_cache=msal.TokenCache(),
            )
        except Exception as exc:
            raise self._failure(exc, "cannot read the authority's OpenID configuration") from exc
        return self._app

    def _acquire(self) -> str:
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except Exception as exc:
            raise self._failure(exc, "cannot obtain an access token") from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            if result.get("token_source") != "cache":
                self.fetches += 1
            self._issued = token
            return token
        raise self._refused(result if isinstance(result, dict) else {})

    def _failure(self, exc: Exception, what: str) -> ConnectorError:
        if isinstance(exc, httpx.TransportError | MsalServiceError | json.JSONDecodeError):
            return TransientError(
                self._clean(f"{self._where()}: {what}: {type(exc).__name__}: {exc}"),
                platform=self.platform,
            )
        if isinstance(exc, ConnectorError):
            return exc
        # ValueError and friends: an unknown tenant, a bad authority URL or an unreadable key.
        return AuthError(self._clean(f"{self._where()}: {what}: {exc}"), platform=self.platform)

    def _refused(self, result: Mapping[str, Any]) -> ConnectorError:
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "")
        first = description.splitlines()[0].strip() if description else ""  # no trace ids
        codes = result.get("error_codes") or []
        text = f"{self._where()} was refused by Microsoft Entra ID: {error}"
        if first:
            text += f": {first}"
        if error == "invalid_client" and 7000215 in codes:
            text += " Put the secret's Value (not its ID) into the block, or rotate it."
        elif error == "invalid_client" and 7000222 in codes:
            text += " The client secret has expired: create a new one and update the block."
        message = self._clean(text)
        if error in ("temporarily_unavailable", "server_error"):
            return TransientError(message, platform=self.platform)
        return AuthError(message, platform=self.platform)


# --- shared per-mailbox limits --------------------------------------------------------------


class _MailboxSlots:
    """A ConcurrencyLimit whose holders may need several slots at once (a $batch).

    Multi-slot holders take their slots one by one under a per-key gate, so two of them never
    each hold half of what both need; single-slot holders skip the gate.
    """

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}

    def _gate(self, key: str) -> threading.Lock:
        with self._lock:
            return self._gates.setdefault(key, threading.Lock())

    @contextmanager
    def hold(self, key: str, weight: int = 1) -> Iterator[None]:
        weight = max(1, min(weight, self.limit.limit))
        if weight == 1:
            with self.limit.hold(key):
                yield
            return
        with ExitStack() as stack:
            with self._gate(key):
                for _ in range(weight):
                    stack.enter_context(self.limit.hold(key))
            yield


_SHARED_LIMIT = ConcurrencyLimit(MAILBOX_CONCURRENCY)
_slots_by_limit: weakref.WeakKeyDictionary[ConcurrencyLimit, _MailboxSlots] = (
    weakref.WeakKeyDictionary()
)
_limiters: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def _slots_for(limit: ConcurrencyLimit) -> _MailboxSlots:
    with _registry_lock:
        slots = _slots_by_limit.get(limit)
        if slots is None:
            slots = _slots_by_limit[limit] = _MailboxSlots(limit)
        return slots


def _shared_limiter(key: str) -> RateLimiter:
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(MAILBOX_RATE, MAILBOX_BURST)
        return limiter


# --- calendar ids and URLs ------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
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


def _target(calendar_id: str) -> _Target:
    return _Target(*parse_calendar_id(calendar_id))


def _odata(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _expand(*property_ids: str) -> str:
    ids = " or ".join(f"id eq {_odata(p)}" for p in property_ids)
    return f"singleValueExtendedProperties($filter={ids})"


def _with_query(path: str, params: Mapping[str, str]) -> str:
    return path + "?" + urlencode(params, quote_via=quote, safe="$'(),/:@")


def _properties(item: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict) and isinstance(prop.get("id"), str):
            found[prop["id"]] = str(prop.get("value") or "")
    return found


# --- event content ----------------------------------------------------------------------------


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


def _parse_time(stamp: Any) -> datetime:
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
        start=_parse_time(item.get("start")).astimezone(zone),
        end=_parse_time(item.get("end")).astimezone(zone),
        timezone=zone_name,
        location=str(location.get("displayName") or ""),
        description=str((item.get("body") or {}).get("content") or ""),
        status=cast(Any, status),
        lat=lat,
        lon=lon,
        categories=tuple(str(c) for c in item.get("categories") or ()),
        details=details,
    )


# --- status policy ----------------------------------------------------------------------------


def _graph_code(response: httpx.Response) -> str | None:
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _classify(response: httpx.Response) -> Action | None:
    status = response.status_code
    if status < 400:
        return None
    code = _graph_code(response)
    if status == 400 and code == "ErrorInvalidIdMalformed":
        return Action.NOT_FOUND  # no event can have that id in this mailbox
    if status == 404 and code is not None and code not in _NOT_FOUND_CODES:
        # A missing mailbox (ErrorInvalidUser, MailboxNotEnabledForRESTAPI) is not a missing
        # event: a delete there must fail loudly, not count as done.
        return Action.FAIL
    if status == 403 and code in _ACCESS_DENIED_CODES:
        # Newly granted application permissions only appear in a new token.
        return Action.REFRESH_AUTH
    if status == 507 or code == "ErrorQuotaExceeded":
        return Action.FAIL  # the mailbox is full: retrying cannot help until someone acts
    return None


GRAPH_POLICY = StatusPolicy(classify=_classify)


# --- the connector ------------------------------------------------------------------------------


@dataclass
class _Sub:
    pos: int
    method: str
    url: str  # relative to the API base, with its query
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.pos), "method": self.method, "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            out["body"] = self.body
        if headers:
            out["headers"] = headers
        return out


@dataclass
class _Reply:
    response: httpx.Response | None = None
    error: ConnectorError | None = None


class MicrosoftGraphConnector(CalendarConnector):
    platform: ClassVar[str] = PLATFORM
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(
        self,
        credentials: GraphCredentials,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.Client | None = None,
        timeout: float = 30.0,
        reminder_minutes: int | None = 15,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        mailbox_limit: ConcurrencyLimit | None = None,
        mailbox_rate: Callable[[str], RateLimiter] | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_base_url = api_base_url.rstrip("/")
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        # Requests actually sent (retries included), for the benchmark's requests per event.
        self.requests: Counter[str] = Counter()
        self._http.event_hooks.setdefault("request", []).append(self._count)
        self.auth = GraphTokenProvider(credentials, self._http, platform=self.platform)
        self.reminder_minutes = reminder_minutes
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._slots = _slots_for(mailbox_limit or _SHARED_LIMIT)
        self._rate = mailbox_rate or (
            lambda mailbox: _shared_limiter(f"{self.api_base_url}|{mailbox}")
        )
        self._clients: dict[str, PolicyClient] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MicrosoftGraphConnector({self.credentials.name!r}, {self.api_base_url!r})"

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    @property
    def graph_requests(self) -> int:
        return self.requests["graph"]

    def _count(self, request: httpx.Request) -> None:
        kind = "graph" if str(request.url).startswith(self.api_base_url) else "login"
        self.requests[kind] += 1

    # --- HTTP ---

    def _client(self, target: _Target) -> PolicyClient:
        with self._lock:
            client = self._clients.get(target.key)
            if client is None:
                client = self._clients[target.key] = PolicyClient(
                    self.platform,
                    self._http,
                    self.auth,
                    policy=GRAPH_POLICY,
                    max_retries=self._max_retries,
                    backoff_base=self._backoff_base,
                    backoff_cap=self._backoff_cap,
                    sleep=self._sleep,
                    limiter=self._rate(target.key),
                )
            return client

    def _call(
        self, target: _Target, method: str, url: str, *, cost: int = 1, **kwargs: Any
    ) -> httpx.Response:
        """One HTTP request for `cost` mailbox operations (a $batch costs one per sub-request)."""
        client = self._client(target)
        if not url.startswith(("https://", "http://")):
            url = self.api_base_url + url
        with self._slots.hold(target.key, min(cost, MAILBOX_CONCURRENCY)):
            if client.limiter is not None:
                for _ in range(cost - 1):  # PolicyClient itself takes one per attempt
                    client.limiter.acquire()
            return client.request(method, url, **kwargs)

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        body = json_body(response)
        if not isinstance(body, dict):
            raise PermanentError(f"{what}: Graph answered without a JSON object", platform=PLATFORM)
        return body

    def _pages(self, target: _Target, url: str) -> Iterator[dict[str, Any]]:
        while True:
            body = self._json(self._call(target, "GET", url, headers={"Prefer": _PREFER}), url)
            for item in body.get("value") or []:
                if isinstance(item, dict):
                    yield item
            next_link = body.get("@odata.nextLink")
            if not isinstance(next_link, str):
                return
            if not next_link.startswith(self.api_base_url + "/"):
                # Our token must never be sent to a host we were not configured for.
                raise PermanentError(
                    "Graph's next page link points outside the API base URL", platform=PLATFORM
                )
            url = next_link

    def _view(
        self, target: _Target, start: datetime, end: datetime, select: str, *props: str
    ) -> Iterator[dict[str, Any]]:
        params = {
            "startDateTime": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "endDateTime": end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "$select": select,
            "$expand": _expand(*props),
            "$top": str(VIEW_PAGE_SIZE),
        }
        return self._pages(target, _with_query(target.view, params))

    def _failure(
        self, action: Action, method: str, url: str, resp: httpx.Response
    ) -> ConnectorError:
        path = url.split("?", 1)[0]  # queries can quote keys and job ids; paths are enough
        text = scrub(f"{method} {path}: {error_message(resp)}", self.auth.secrets())
        status = resp.status_code
        if action is Action.THROTTLE:
            return RateLimitedError(
                text, platform=PLATFORM, status=status, retry_after=retry_after_seconds(resp)
            )
        if action is Action.RETRY:
            return TransientError(text, platform=PLATFORM, status=status)
        if action is Action.REFRESH_AUTH:
            return AuthError(text, platform=PLATFORM, status=status)
        if action is Action.NOT_FOUND:
            return NotFoundError(text, platform=PLATFORM, status=status)
        if action is Action.PRECONDITION:
            return PreconditionFailedError(text, platform=PLATFORM, status=status)
        return PermanentError(text, platform=PLATFORM, status=status)

    # --- $batch ---

    def _send_batch(self, target: _Target, chunk: Sequence[_Sub]) -> dict[int, httpx.Response]:
        payload = {"requests": [sub.as_json() for sub in chunk]}
        body = self._json(
            self._call(target, "POST", "/$batch", cost=len(chunk), json=payload), "POST /$batch"
        )
        replies = body.get("responses")
        if not isinstance(replies, list):
            raise PermanentError("POST /$batch: answer has no responses", platform=PLATFORM)
        out: dict[int, httpx.Response] = {}
        for reply in replies:
            if not isinstance(reply, dict):
                continue
            try:
                pos, status = int(reply["id"]), int(reply["status"])
            except (KeyError, TypeError, ValueError):
                continue
            headers = {
                str(k): str(v)
                for k, v in (reply.get("headers") or {}).items()
                if str(k).lower() not in ("content-type", "content-length")
            }
            if reply.get("body") is None:
                out[pos] = httpx.Response(status, headers=headers)
            else:
                out[pos] = httpx.Response(status, headers=headers, json=reply["body"])
        return out

    def _batch(self, target: _Target, subs: Sequence[_Sub]) -> dict[int, _Reply]:
        """Every sub-request's final reply: throttled and 5xx ones are sent again, after a
        backoff, in later batches; a failed batch request fails its sub-requests."""
        replies: dict[int, _Reply] = {}
        pending = list(subs)
        retry = 0
        client = self._client(target)
        while pending:
            again: list[_Sub] = []
            floor: float | None = None
            for i in range(0, len(pending), MAX_BATCH):
                chunk = pending[i : i + MAX_BATCH]
                try:
                    answers = self._send_batch(target, chunk)
                except ConnectorError as exc:
                    for sub in chunk:
                        replies[sub.pos] = _Reply(error=exc)
                    continue
                for sub in chunk:
                    resp = answers.get(sub.pos)
                    if resp is None:
                        replies[sub.pos] = _Reply(
                            error=TransientError(
                                f"{sub.method} {sub.url.split('?')[0]}: no answer in the batch",
                                platform=PLATFORM,
                            )
                        )
                        continue
                    action = GRAPH_POLICY.action_for(resp)
                    if action in (Action.RETRY, Action.THROTTLE) and retry < self._max_retries:
                        again.append(sub)
                        wait = retry_after_seconds(resp)
                        if wait is not None:
                            floor = wait if floor is None else max(floor, wait)
                        continue
                    replies[sub.pos] = _Reply(response=resp)
            if again:
                delay = client.backoff(retry, floor) * backoff_scale()
                log.info(
                    "%s: %d batched requests throttled or failed, retry %d/%d in %.2fs",
                    PLATFORM,
                    len(again),
                    retry + 1,
                    self._max_retries,
                    delay,
                )
                self._sleep(delay)
                retry += 1
            pending = again
        return replies

    # --- request bodies ---

    def _fields(self, event: CalendarEvent) -> dict[str, Any]:
        location: dict[str, Any] = {"displayName": event.location, "locationType": "default"}
        if event.lat is not None and event.lon is not None:
            location["coordinates"] = {"latitude": event.lat, "longitude": event.lon}
        reminder = self.reminder_minutes is not None and event.status != "cancelled"
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
            fields["reminderMinutesBeforeStart"] = self.reminder_minutes
        return fields

    def _create_body(self, key: str, event: CalendarEvent) -> dict[str, Any]:
        body = self._fields(event)
        body["transactionId"] = transaction_id(key)
        body["attendees"] = []  # never anyone to invite: Outlook would send them mail
        body["singleValueExtendedProperties"].append({"id": KEY_PROPERTY, "value": key})
        return body

    @staticmethod
    def _ref(body: Mapping[str, Any], what: str) -> RemoteRef:
        remote_id = body.get("id")
        if not isinstance(remote_id, str) or not remote_id:
            raise PermanentError(f"{what}: Graph answered without an event id", platform=PLATFORM)
        etag = body.get("@odata.etag")
        return RemoteRef(remote_id, etag if isinstance(etag, str) else None)

    # --- single operations ---

    def _owned(self, target: _Target, remote_id: str) -> RemoteRef:
        """The event's current ref, after checking it carries our stamp."""
        url = _with_query(
            target.event(remote_id), {"$select": "id", "$expand": _expand(JOB_PROPERTY)}
        )
        body = self._json(self._call(target, "GET", url), "GET event")
        if not _properties(body).get(JOB_PROPERTY):
            raise NotOwnedError(
                f"event {remote_id} does not carry our job stamp; it is never changed",
                platform=PLATFORM,
            )
        return self._ref(body, "GET event")

    def _patch(self, target: _Target, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        headers = {"Prefer": _PREFER}
        if ref.etag:
            headers["If-Match"] = ref.etag
        resp = self._call(
            target, "PATCH", target.event(ref.remote_id), json=self._fields(event), headers=headers
        )
        return self._ref(self._json(resp, "PATCH event"), "PATCH event")

    def _delete_exact(self, target: _Target, ref: RemoteRef) -> None:
        headers = {"If-Match": ref.etag} if ref.etag else {}
        self._call(target, "DELETE", target.event(ref.remote_id), headers=headers)

    def _read(self, target: _Target, remote_id: str) -> RemoteEvent | None:
        url = _with_query(
            target.event(remote_id),
            {"$expand": _expand(JOB_PROPERTY, KEY_PROPERTY, DATA_PROPERTY)},
        )
        try:
            resp = self._call(target, "GET", url, headers={"Prefer": _PREFER})
        except NotFoundError:
            return None
        body = self._json(resp, "GET event")
        ref = self._ref(body, "GET event")
        props = _properties(body)
        job_id = props.get(JOB_PROPERTY) or None
        if job_id is None:
            return RemoteEvent(ref, None, None)
        try:
            event: CalendarEvent | None = decode_event(job_id, body, props.get(DATA_PROPERTY))
        except (ConnectorError, ValueError, TypeError, KeyError) as exc:
            log.warning(
                "%s: event %s carries our stamp but cannot be decoded: %s", PLATFORM, remote_id, exc
            )
            event = None
        return RemoteEvent(ref, job_id, event)

    # --- contract ---

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        target = _target(calendar_id)
        existing = self.lookup(calendar_id, key)
        if existing is not None:
            # An earlier create with this key landed but its outcome was lost: bring that
            # event up to date rather than making a second one.
            return self._update_reconciling(calendar_id, Op(0, OpKind.UPDATE, key, event, existing))
        resp = self._call(
            target,
            "POST",
            target.events,
            json=self._create_body(key, event),
            headers={"Prefer": _PREFER},
        )
        return self._ref(self._json(resp, "POST event"), "POST event")

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        target = _target(calendar_id)
        if ref.etag is None:
            ref = self._owned(target, ref.remote_id)
        return self._patch(target, ref, event)

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        target = _target(calendar_id)
        if ref.etag is None:
            ref = self._owned(target, ref.remote_id)
        try:
            self._delete_exact(target, ref)
        except PreconditionFailedError:
            # Changed since our last write (by hand, in Outlook): delete it if it is still ours.
            self._delete_exact(target, self._owned(target, ref.remote_id))

    def _update_reconciling(self, calendar_id: str, op: Op) -> RemoteRef:
        assert op.ref is not None and op.event is not None
        try:
            return self.update(calendar_id, op.ref, op.event)
        except PreconditionFailedError:
            current = self.read(calendar_id, op.ref.remote_id)
            if current is None:
                raise NotFoundError(
                    f"event {op.ref.remote_id} vanished during update", platform=PLATFORM
                ) from None
            if current.job_id is None:
                raise NotOwnedError(
                    f"event {op.ref.remote_id} no longer carries our job stamp", platform=PLATFORM
                ) from None
            return self.update(calendar_id, current.ref, op.event)

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        return self._read(_target(calendar_id), remote_id)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        target = _target(calendar_id)
        url = _with_query(
            target.events,
            {
                "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{_odata(KEY_PROPERTY)} and ep/value eq {_odata(key)})",
                "$select": "id",
                "$expand": _expand(KEY_PROPERTY),
            },
        )
        for item in self._pages(target, url):
            # Graph compares property values case-insensitively; keys are exact.
            if _properties(item).get(KEY_PROPERTY) == key:
                return self._ref(item, "GET events")
        return None

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        target = _target(calendar_id)
        if end <= start:
            return []
        items: list[tuple[datetime, datetime]] = []
        window = start
        while window < end:
            window_end = min(end, window + SCHEDULE_WINDOW)
            items.extend(self._schedule(target, window, window_end, first=window == start))
            window = window_end
        unclaimed = Counter(items)
        blocks: list[BusyBlock] = []
        for item in self._view(target, start, end, "id,start,end,showAs,isCancelled", JOB_PROPERTY):
            if item.get("isCancelled") or item.get("showAs") == "free":
                continue
            span = (_parse_time(item.get("start")), _parse_time(item.get("end")))
            if unclaimed[span] > 0:
                unclaimed[span] -= 1
            blocks.append(BusyBlock(span[0], span[1], _properties(item).get(JOB_PROPERTY) or None))
        for (s, e), count in unclaimed.items():
            blocks.extend(BusyBlock(s, e, None) for _ in range(count))
        blocks.sort(key=lambda b: (b.start, b.end, b.job_id is None, b.job_id or ""))
        return blocks

    def _schedule(
        self, target: _Target, start: datetime, end: datetime, *, first: bool
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
        resp = self._call(
            target, "POST", target.schedule, json=payload, headers={"Prefer": _PREFER}
        )
        spans: list[tuple[datetime, datetime]] = []
        for schedule in self._json(resp, "getSchedule").get("value") or []:
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
                s, e = _parse_time(item.get("start")), _parse_time(item.get("end"))
                if not first and s < start:
                    continue  # reported whole by the previous window already
                spans.append((s, e))
        return spans

    # --- bulk ---

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            target = _target(calendar_id)
        except ConnectorError as exc:
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]
        results: dict[int, OpResult] = {}
        refs: dict[int, RemoteRef] = {}
        verify: list[int] = []
        write: list[int] = []
        creates: list[int] = []
        for pos, op in enumerate(ops):
            if op.kind is not OpKind.DELETE and op.event is None:
                results[pos] = OpResult(
                    op.item,
                    op.kind,
                    op.ref,
                    error=PermanentError(f"{op.kind.value} without an event", platform=PLATFORM),
                )
            elif op.kind is OpKind.CREATE:
                creates.append(pos)
            elif op.ref is None:
                # The create's outcome was never recorded: the shared rules look it up first.
                results[pos] = self.apply_one(calendar_id, op)
            elif op.ref.etag is None:
                verify.append(pos)
            else:
                refs[pos] = op.ref
                write.append(pos)
        for p in creates:
            if ops[p].retry:
                # An earlier attempt may have landed and Graph may have forgotten its
                # transactionId: find it by our key property before creating again.
                try:
                    found = self.lookup(calendar_id, ops[p].key)
                except ConnectorError as exc:
                    results[p] = OpResult(ops[p].item, ops[p].kind, error=exc)
                    continue
                if found is not None:
                    refs[p] = found
            write.append(p)
        if verify:
            self._verify(target, ops, verify, refs, results, write)
        if write:
            self._write(target, ops, sorted(write), refs, results)
        return [results[p] for p in range(len(ops))]

    def _verify(
        self,
        target: _Target,
        ops: Sequence[Op],
        verify: Sequence[int],
        refs: dict[int, RemoteRef],
        results: dict[int, OpResult],
        write: list[int],
    ) -> None:
        """Read the stamp of events we have no etag for; only ours go on to be written."""
        subs = []
        for p in verify:
            ref = ops[p].ref
            assert ref is not None
            url = _with_query(
                target.event(ref.remote_id), {"$select": "id", "$expand": _expand(JOB_PROPERTY)}
            )
            subs.append(_Sub(p, "GET", url))
        replies = self._batch(target, subs)
        for sub in subs:
            op = ops[sub.pos]
            outcome = self._outcome(sub, replies[sub.pos])
            if isinstance(outcome, NotFoundError) and op.kind is OpKind.DELETE:
                results[sub.pos] = OpResult(op.item, op.kind, op.ref)
            elif isinstance(outcome, ConnectorError):
                results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=outcome)
            elif not _properties(outcome).get(JOB_PROPERTY):
                remote_id = op.ref.remote_id if op.ref is not None else "?"
                error = NotOwnedError(
                    f"event {remote_id} does not carry our job stamp; it is never changed",
                    platform=PLATFORM,
                )
                results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=error)
            else:
                try:
                    refs[sub.pos] = self._ref(outcome, "GET event")
                except ConnectorError as exc:
                    results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=exc)
                else:
                    write.append(sub.pos)

    def _outcome(self, sub: _Sub, reply: _Reply) -> dict[str, Any] | ConnectorError:
        """The sub-response's JSON body on success (empty for 204), else its mapped error."""
        if reply.error is not None:
            return reply.error
        resp = reply.response
        assert resp is not None
        action = GRAPH_POLICY.action_for(resp)
        if action is not Action.OK:
            return self._failure(action, sub.method, sub.url, resp)
        body = json_body(resp) if resp.content else {}
        return body if isinstance(body, dict) else {}

    def _write(
        self,
        target: _Target,
        ops: Sequence[Op],
        write: Sequence[int],
        refs: dict[int, RemoteRef],
        results: dict[int, OpResult],
    ) -> None:
        subs = []
        for p in write:
            op, ref = ops[p], refs.get(p)
            if op.kind is OpKind.CREATE and ref is None:
                assert op.event is not None
                body = self._create_body(op.key, op.event)
                subs.append(_Sub(p, "POST", target.events, body, {"Prefer": _PREFER}))
                continue
            assert ref is not None
            headers = {"If-Match": ref.etag} if ref.etag else {}
            if op.kind is OpKind.DELETE:
                subs.append(_Sub(p, "DELETE", target.event(ref.remote_id), None, headers))
            else:
                assert op.event is not None
                headers["Prefer"] = _PREFER
                url = target.event(ref.remote_id)
                subs.append(_Sub(p, "PATCH", url, self._fields(op.event), headers))
        replies = self._batch(target, subs)
        conflicts: list[int] = []
        for sub in subs:
            op = ops[sub.pos]
            outcome = self._outcome(sub, replies[sub.pos])
            if isinstance(outcome, PreconditionFailedError) and sub.method != "POST":
                conflicts.append(sub.pos)
            elif isinstance(outcome, NotFoundError) and op.kind is OpKind.DELETE:
                results[sub.pos] = OpResult(op.item, op.kind, op.ref)  # gone already: done
            elif isinstance(outcome, ConnectorError):
                results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=outcome)
            elif op.kind is OpKind.DELETE:
                results[sub.pos] = OpResult(op.item, op.kind, op.ref)
            else:
                try:
                    results[sub.pos] = OpResult(op.item, op.kind, self._ref(outcome, sub.method))
                except ConnectorError as exc:
                    results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=exc)
        for p in conflicts:
            results[p] = self._reconcile(target, ops[p], refs[p])

    def _reconcile(self, target: _Target, op: Op, ref: RemoteRef) -> OpResult:
        """After a 412: re-read; if the event is still ours, our content (or delete) wins."""
        try:
            current = self._read(target, ref.remote_id)
            if current is None:
                if op.kind is OpKind.DELETE:
                    return OpResult(op.item, op.kind, op.ref)
                raise NotFoundError(
                    f"event {ref.remote_id} vanished during update", platform=PLATFORM
                )
            if current.job_id is None:
                raise NotOwnedError(
                    f"event {ref.remote_id} no longer carries our job stamp", platform=PLATFORM
                )
            if op.kind is OpKind.DELETE:
                with suppress(NotFoundError):
                    self._delete_exact(target, current.ref)
                return OpResult(op.item, op.kind, op.ref)
            assert op.event is not None
            return OpResult(op.item, op.kind, self._patch(target, current.ref, op.event))
        except ConnectorError as exc:
            return OpResult(op.item, op.kind, op.ref, error=exc)
