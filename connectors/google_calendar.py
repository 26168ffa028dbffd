"""Google Calendar (API v3) connector, for Google accounts and Google Workspace domains.

Two ways in (blocks/google.py builds either):

- OAuth user credentials (platform "google"): one Google account, authorized once for a refresh
  token, writes the technicians' calendars (its own, or ones shared with it).
- A service account with domain-wide delegation (platform "google_workspace"): each technician
  is impersonated (subject = the calendar id, their email, unless the block names one delegated
  subject for every calendar), so each writes their own calendar under their own user quota.

HTTP. google-api-python-client builds every request from its bundled discovery document, and
`_PolicyHttp` - an httplib2-compatible object over httpx and the shared `PolicyClient` - sends
them (option (a) of the design): one retry/backoff/Retry-After table, one rate limiter, one
401-refresh rule and one scrubber for every connector; the SDK's own retries stay off. Google's
one difference is data in `GOOGLE_POLICY`: 403 with reason rateLimitExceeded or
userRateLimitExceeded is throttling like 429; any other 403 is a PermanentError carrying
Google's message. Token requests go through the same httpx client (`_TokenTransport`), and an
`invalid_grant` becomes an AuthError telling ops to re-authorize, naming the block.

Idempotent create. We choose the event id: base32hex (Google's id alphabet, a-v and 0-9) of
the SHA-256 of the idempotency key, 52 characters. Google guarantees an insert whose id exists
fails with 409 duplicate - deleted-but-not-purged events included - so a retried create never
makes a second event: on 409 we fetch the event and, if it is ours and differs, patch it.
`lookup()` is a GET of that id.

Ownership. Our events carry {"fieldsyncJobId": job id} in extendedProperties.private. An update
or delete holding the etag we recorded goes straight out with If-Match: a matching etag proves
the event is still the version we wrote, stamp included, so no read is spent. Without an etag,
or after a 412, the event is read first and touched only if it carries the stamp (else
NotOwnedError); so `_update_reconciling` is overridden to refuse a re-read foreign event.
Deleting marks an event cancelled; deleting it again is 410 -> NotFoundError.

Content. summary, description, location; start/end as {dateTime in the technician's zone,
timeZone: that zone}; status; transparency opaque. The job id, lat/lon, categories and details
go into private extended properties (categories and details as JSON cut into 1000-character
values, Google allowing 1024), so read() returns exactly the CalendarEvent pushed. Every write
sends sendUpdates=none and no attendees: a sync must never mail a technician's customers.

Busy time. events.list(timeMin, timeMax, singleEvents=true) tells whose each event is, which
freebusy.query cannot (it merges blocks and names nobody). freebusy.query serves calendars
whose events we may not list (shared "free/busy only": events.list answers 404 or 403); their
blocks carry no job id.

Bulk. push() sends creates, and updates/deletes holding an etag, as multipart batches of at
most 50 requests to /batch/calendar/v3 (0.02 HTTP requests per created event). Each part's
status is judged by the same StatusPolicy: retryable parts go again in a new batch after the
policy's backoff; a 409 on create, a 412 on patch or delete is settled outside the batch with
the single-event code above; a 404/410 on delete is done. Ops that need a read first (no ref,
or no etag) go through apply_one.

Quotas, as data (`GoogleQuotas`): 600 requests/minute per user (the impersonated technician,
or the OAuth account) and 10,000/minute per project, as token buckets shared within the
process; a batch of n requests counts n, as Google counts it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import httplib2
import httpx
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import Error as SdkError
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from connectors.base import BusyBlock, CalendarConnector, Op, OpResult, RemoteEvent, RemoteRef
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
    PolicyClient,
    RateLimiter,
    StatusPolicy,
    backoff_scale,
    error_message,
    json_body,
    retry_after_seconds,
)
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent, EventStatus

PLATFORM = "google"
WORKSPACE_PLATFORM = "google_workspace"
DEFAULT_API_BASE_URL = "https://www.googleapis.com/"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Events read and write, plus free/busy for calendars shared with us only that far.
DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
)
STAMP_KEY = "fieldsyncJobId"
MAX_BATCH = 50
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})

_LAT_KEY = "fieldsyncLat"
_LON_KEY = "fieldsyncLon"
_EXTRA_KEY = "fieldsyncExtra"  # + part number
_EXTRA_PARTS_KEY = "fieldsyncExtraParts"
_EXTRA_CHUNK = 1000
# Google allows 32 kB of extended properties per event; leave room for the fixed keys.
_MAX_EXTRA_PARTS = 24
_CONFLICT_ATTEMPTS = 3
_LIST_FIELDS = (
    "items(id,etag,status,start,end,transparency,extendedProperties/private,"
    "attendees(self,responseStatus)),nextPageToken,timeZone"
)


# --- ids and content ---------------------------------------------------------------------------


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


def _ref(item: Mapping[str, Any]) -> RemoteRef:
    etag = item.get("etag")
    return RemoteRef(str(item["id"]), etag if isinstance(etag, str) else None)


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


# --- status policy -----------------------------------------------------------------------------


def _error_reasons(body: Any) -> set[str]:
    error = body.get("error") if isinstance(body, dict) else None
    errors = error.get("errors") if isinstance(error, dict) else None
    if not isinstance(errors, list):
        return set()
    return {str(e.get("reason")) for e in errors if isinstance(e, dict)}


def _classify(response: httpx.Response) -> Action | None:
    # Google reports its per-user and per-project rate limits as 403, not 429.
    if response.status_code == 403 and _error_reasons(json_body(response)) & RATE_LIMIT_REASONS:
        return Action.THROTTLE
    return None


GOOGLE_POLICY = StatusPolicy(classify=_classify)


# --- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    per_minute: float
    burst: int

    def limiter(self, sleep: Callable[[float], None]) -> RateLimiter:
        return RateLimiter(self.per_minute / 60.0, self.burst, sleep=sleep)


USER_QUOTA = Quota(per_minute=600, burst=MAX_BATCH)
PROJECT_QUOTA = Quota(per_minute=10_000, burst=500)


@dataclass(frozen=True)
class GoogleQuotas:
    """Calendar API usage limits: per user (per impersonated technician) and per project."""

    per_user: Quota = USER_QUOTA
    per_project: Quota = PROJECT_QUOTA


class QuotaBuckets:
    """Token buckets by (project) and (project, user), shared by every connector using it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], RateLimiter] = {}

    def bucket(
        self, key: tuple[str, ...], quota: Quota, sleep: Callable[[float], None]
    ) -> RateLimiter:
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = quota.limiter(sleep)
            return found


SHARED_BUCKETS = QuotaBuckets()


class _Buckets(RateLimiter):
    """Each request takes a token from its user's bucket and from the project's."""

    def __init__(self, user: RateLimiter, project: RateLimiter) -> None:
        super().__init__(user.rate, user.burst)
        self.user = user
        self.project = project

    def acquire(self) -> None:
        self.project.acquire()
        self.user.acquire()


# --- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthUserAuth:
    """A Google account's OAuth client and refresh token (installed-app or web flow)."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_uri: str = DEFAULT_TOKEN_URI


@dataclass(frozen=True)
class ServiceAccountAuth:
    """A service account key with domain-wide delegation in a Google Workspace domain."""

    info: Mapping[str, Any] = field(repr=False)  # the JSON key file, parsed
    subject: str | None = None  # impersonate this user for every calendar; else the calendar id
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    token_uri: str | None = None  # overrides the key file's token_uri


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return dict(self._response.headers)

    @property
    def data(self) -> bytes:
        return self._response.content


class _TokenTransport(google.auth.transport.Request):
    """google-auth's token requests, over our httpx client (its timeouts, its request count)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        try:
            response = self._client.request(
                method,
                url,
                content=body,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            # No str(exc): it can quote the request, and the request carries the grant.
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from exc
        return _TokenResponse(response)


class _GoogleAuth:
    """PolicyClient's AuthProvider: google-auth credentials refreshed through our transport.

    A refused grant is remembered: it cannot heal by itself, and asking again for every event of
    a push would only hammer the token endpoint.
    """

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        transport: _TokenTransport,
        *,
        platform: str,
        refused: Callable[[str, str], str],
        secrets: tuple[str, ...],
    ) -> None:
        self._credentials = credentials
        self._transport = transport
        self._platform = platform
        self._refused = refused
        self._secrets = secrets
        self._lock = threading.RLock()
        self._failure: str | None = None

    @property
    def valid(self) -> bool:
        with self._lock:
            return self._failure is None and bool(self._credentials.valid)

    def headers(self) -> dict[str, str]:
        with self._lock:
            if not self._credentials.valid:
                self._refresh_locked()
            headers: dict[str, str] = {}
            self._credentials.apply(headers)  # type: ignore[no-untyped-call]
            return headers

    def refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def secrets(self) -> tuple[str, ...]:
        token = self._credentials.token
        return (*self._secrets, token) if isinstance(token, str) else self._secrets

    def _refresh_locked(self) -> None:
        if self._failure is not None:
            raise AuthError(self._failure, platform=self._platform)
        try:
            self._credentials.refresh(self._transport)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Mapping) else {}
            code = str(data.get("error") or "")
            description = str(data.get("error_description") or (exc.args[0] if exc.args else ""))
            if getattr(exc, "retryable", False):
                raise TransientError(
                    scrub(f"token endpoint: {code}: {description}", self.secrets()),
                    platform=self._platform,
                ) from exc
            self._failure = scrub(self._refused(code, description), self.secrets())
            raise AuthError(self._failure, platform=self._platform) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(scrub(str(exc), self.secrets()), platform=self._platform) from exc
        except (ValueError, TypeError) as exc:
            # google-auth could not build the grant from what the block holds.
            message = self._refused("unusable_credentials", type(exc).__name__)
            raise AuthError(scrub(message, self.secrets()), platform=self._platform) from exc


class _SdkCredentials(google.auth.credentials.Credentials):
    """The credentials the SDK finds on our http object. BatchHttpRequest refreshes them when a
    part comes back 401 and applies them to re-sent parts; both go to `_GoogleAuth`, so every
    token request still uses our transport, lock and error mapping."""

    def __init__(self, auth: _GoogleAuth) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._auth = auth

    @property
    def valid(self) -> bool:
        return self._auth.valid

    def refresh(self, request: google.auth.transport.Request) -> None:
        self._auth.refresh()

    def apply(self, headers: MutableMapping[str, str], token: str | None = None) -> None:
        headers.update(self._auth.headers())


class _PolicyHttp:
    """The `http` object the SDK sends through: httplib2's request() over PolicyClient."""

    def __init__(self, policy: PolicyClient, credentials: _SdkCredentials) -> None:
        self.policy = policy
        self.credentials = credentials

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        redirections: int = 5,
        connection_type: object = None,
    ) -> tuple[Any, bytes]:
        # The SDK computes content-length from str length; httpx counts the encoded bytes.
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}
        response = self.policy.request(method, uri, content=body, headers=sent)
        info = {k.lower(): v for k, v in response.headers.items()}
        info.pop("content-encoding", None)  # httpx has decoded the body already
        info["status"] = str(response.status_code)
        return httplib2.Response(info), response.content

    def close(self) -> None:
        """The connector owns the httpx client and closes it."""


@dataclass
class _Session:
    """Everything that acts as one Google user: a technician, or the OAuth account."""

    subject: str
    auth: _GoogleAuth
    policy: PolicyClient
    service: Any
    limiter: RateLimiter


def _as_httpx(resp: Any, content: Any) -> httpx.Response:
    headers = [
        (str(k), str(v))
        for k, v in dict(resp).items()
        if str(k).lower() not in ("status", "content-encoding", "content-length")
    ]
    raw = content if isinstance(content, bytes) else str(content or "").encode()
    return httpx.Response(int(resp.status), headers=headers, content=raw)


def _path(uri: str) -> str:
    # Only the path: query strings may carry anything a caller put there.
    try:
        return httpx.URL(uri).path or "/"
    except httpx.InvalidURL:
        return "<invalid url>"


# --- the connector -----------------------------------------------------------------------------


class GoogleCalendarConnector(CalendarConnector):
    platform: ClassVar[str] = PLATFORM
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(
        self,
        auth: OAuthUserAuth | ServiceAccountAuth,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        credentials_name: str = "",
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        quotas: GoogleQuotas | None = None,
        buckets: QuotaBuckets | None = None,
        batch_size: int = MAX_BATCH,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.auth = auth
        self.credentials_name = credentials_name
        base = api_base_url.rstrip("/")
        self.api_endpoint = f"{base}/calendar/v3/"
        # The SDK's new_batch_http_request() takes the batch URL from the discovery document's
        # rootUrl and ignores client_options.api_endpoint, so the batch is built with it here.
        self.batch_uri = f"{base}/batch/calendar/v3"
        self.max_retries = max_retries
        self.batch_size = batch_size
        self._policy_args: dict[str, Any] = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
            "max_retry_after": max_retry_after,
            "sleep": sleep,
            "rng": rng,
        }
        self._sleep = sleep
        self._quotas = quotas or GoogleQuotas()
        self._buckets = buckets or SHARED_BUCKETS
        self._counts_lock = threading.Lock()
        self.api_requests = 0  # HTTP requests sent to the Calendar API, retries included
        self.token_requests = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            event_hooks={"request": [self._count]},
        )
        self._token_transport = _TokenTransport(self._client)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._service_account: service_account.Credentials | None = None

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def http_requests(self) -> int:
        return self.api_requests + self.token_requests

    def _count(self, request: httpx.Request) -> None:
        token_uri = httpx.URL(self._token_uri())
        token = request.url.host == token_uri.host and request.url.path == token_uri.path
        with self._counts_lock:
            if token:
                self.token_requests += 1
            else:
                self.api_requests += 1

    def close(self) -> None:
        self._client.close()

    def _block(self) -> str:
        return f"block {self.credentials_name!r}" if self.credentials_name else "the block"

    def _token_uri(self) -> str:
        if isinstance(self.auth, OAuthUserAuth):
            return self.auth.token_uri
        return self.auth.token_uri or str(self.auth.info.get("token_uri") or DEFAULT_TOKEN_URI)

    def _subject_for(self, calendar_id: str) -> str:
        if isinstance(self.auth, OAuthUserAuth):
            return ""  # one account writes every calendar
        subject = self.auth.subject or calendar_id
        if "@" not in subject:
            raise AuthError(
                f"calendar {calendar_id!r}: a Workspace service account writes a calendar by "
                "impersonating its owner, so the calendar id must be the technician's email "
                f"address, or {self._block()} must name a delegated subject",
                platform=self.platform,
            )
        return subject

    def _session(self, calendar_id: str) -> _Session:
        subject = self._subject_for(calendar_id)
        with self._lock:
            session = self._sessions.get(subject)
            if session is None:
                session = self._sessions[subject] = self._open(subject)
            return session

    def _open(self, subject: str) -> _Session:
        credentials, secrets, user_key, project_key = self._credentials(subject)
        auth = _GoogleAuth(
            credentials,
            self._token_transport,
            platform=self.platform,
            refused=lambda code, text: self._refused_message(subject, code, text),
            secrets=secrets,
        )
        sleep = self._policy_args["sleep"]
        limiter = _Buckets(
            self._buckets.bucket(("user", project_key, user_key), self._quotas.per_user, sleep),
            self._buckets.bucket(("project", project_key), self._quotas.per_project, sleep),
        )
        policy = PolicyClient(
            self.platform,
            self._client,
            auth,
            policy=GOOGLE_POLICY,
            limiter=limiter,
            **self._policy_args,
        )
        http = _PolicyHttp(policy, _SdkCredentials(auth))
        service = build(
            "calendar",
            "v3",
            http=http,
            static_discovery=True,
            cache_discovery=False,  # the bundled document needs no cache
            client_options={"api_endpoint": self.api_endpoint},
        )
        return _Session(subject, auth, policy, service, limiter)

    def _credentials(
        self, subject: str
    ) -> tuple[google.auth.credentials.Credentials, tuple[str, ...], str, str]:
        """(credentials, secret values to scrub, quota user key, quota project key)."""
        if isinstance(self.auth, OAuthUserAuth):
            a = self.auth
            credentials = oauth_credentials.Credentials(  # type: ignore[no-untyped-call]
                token=None,
                refresh_token=a.refresh_token,
                token_uri=a.token_uri,
                client_id=a.client_id,
                client_secret=a.client_secret,
            )
            user = hashlib.sha256(f"{a.client_id}\0{a.refresh_token}".encode()).hexdigest()[:16]
            return credentials, (a.refresh_token, a.client_secret), user, a.client_id
        if self._service_account is None:
            info = dict(self.auth.info)
            info["token_uri"] = self._token_uri()
            try:
                loaded = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=list(self.auth.scopes)
                )
                self._service_account = loaded
            except (ValueError, KeyError, TypeError) as exc:
                raise AuthError(
                    f"{self._block()}: service_account_info is not a usable service account "
                    f"JSON key ({type(exc).__name__}); download a new key for the service "
                    "account and save it in the block",
                    platform=self.platform,
                ) from None
        key = str(self.auth.info.get("private_key") or "")
        project = str(self.auth.info.get("project_id") or self.auth.info.get("client_email"))
        return self._service_account.with_subject(subject), (key,), subject, project

    def _refused_message(self, subject: str, code: str, description: str) -> str:
        what = f"{code}: {description}" if code else description
        if isinstance(self.auth, OAuthUserAuth):
            if code == "invalid_client":
                return (
                    f"Google refused the OAuth client in {self._block()} ({what}): check its "
                    "client id and secret, then re-authorize fieldsync and save a new refresh "
                    "token in the block"
                )
            return (
                f"Google refused the refresh token in {self._block()} ({what}): it has expired "
                "or been revoked. Re-authorize fieldsync with that Google account and save the "
                "new refresh token in the block"
            )
        return (
            f"Google refused the service account in {self._block()} when impersonating "
            f"{subject} ({what}). Check that its key is still active, that the Workspace admin "
            "console grants its client id domain-wide delegation for the scopes "
            f"{', '.join(self.auth.scopes)}, and that {subject} is a user of the domain; if "
            "the key was revoked or rotated, re-authorize by saving a new key in the block"
        )

    def _body(self, event: CalendarEvent, *, for_patch: bool = False) -> dict[str, Any]:
        try:
            return event_body(event, for_patch=for_patch)
        except EventEncodingError as exc:
            raise PermanentError(f"job {event.job_id}: {exc}", platform=self.platform) from exc

    def _call(self, session: _Session, request: Any) -> Any:
        """Execute one SDK request; non-2xx answers arrive as ConnectorErrors from PolicyClient."""
        try:
            return request.execute()
        except HttpError as exc:
            # Only a 3xx gets here (PolicyClient returns those as they are).
            response = _as_httpx(exc.resp, exc.content)
            action = GOOGLE_POLICY.action_for(response)
            raise self._error(session, action, request, response, 1) from exc
        except SdkError as exc:
            raise TransientError(
                f"{request.method} {_path(request.uri)}: unreadable reply from Google "
                f"({type(exc).__name__})",
                platform=self.platform,
            ) from exc

    def _error(
        self,
        session: _Session,
        action: Action,
        request: Any,
        response: httpx.Response,
        attempts: int,
    ) -> ConnectorError:
        """The same mapping PolicyClient applies, for statuses seen inside a batch."""
        text = f"{request.method} {_path(request.uri)}: {error_message(response)}"
        if action in (Action.RETRY, Action.THROTTLE):
            text += f" (gave up after {attempts} attempts)"
        secrets = sorted(set(session.auth.secrets()), key=len, reverse=True)
        message = scrub(text, tuple(secrets))
        status = response.status_code
        if action is Action.THROTTLE:
            return RateLimitedError(
                message,
                platform=self.platform,
                status=status,
                retry_after=retry_after_seconds(response),
            )
        if action is Action.RETRY:
            return TransientError(message, platform=self.platform, status=status)
        if action is Action.REFRESH_AUTH:
            return AuthError(
                f"{message} (still refused after refreshing credentials)",
                platform=self.platform,
                status=status,
            )
        if action is Action.NOT_FOUND:
            return NotFoundError(message, platform=self.platform, status=status)
        if action is Action.PRECONDITION:
            return PreconditionFailedError(message, platform=self.platform, status=status)
        return PermanentError(message, platform=self.platform, status=status)

    # --- requests ----------------------------------------------------------------------------

    def _insert(self, session: _Session, calendar_id: str, event_id: str, ev: CalendarEvent) -> Any:
        body = {"id": event_id, **self._body(ev)}
        return session.service.events().insert(
            calendarId=calendar_id, body=body, sendUpdates="none"
        )

    def _patch(
        self, session: _Session, calendar_id: str, remote_id: str, etag: str, ev: CalendarEvent
    ) -> Any:
        request = session.service.events().patch(
            calendarId=calendar_id,
            eventId=remote_id,
            body=self._body(ev, for_patch=True),
            sendUpdates="none",
        )
        request.headers["If-Match"] = etag
        return request

    def _delete(self, session: _Session, calendar_id: str, remote_id: str, etag: str) -> Any:
        request = session.service.events().delete(
            calendarId=calendar_id, eventId=remote_id, sendUpdates="none"
        )
        request.headers["If-Match"] = etag
        return request

    def _get(self, session: _Session, calendar_id: str, remote_id: str) -> dict[str, Any] | None:
        request = session.service.events().get(calendarId=calendar_id, eventId=remote_id)
        try:
            item: dict[str, Any] = self._call(session, request)
        except NotFoundError:
            return None
        return item

    def _owned(self, session: _Session, calendar_id: str, remote_id: str) -> dict[str, Any]:
        item = self._get(session, calendar_id, remote_id)
        if item is None:
            raise NotFoundError(f"event {remote_id} not found", platform=self.platform, status=404)
        if stamp_of(item) is None:
            raise NotOwnedError(
                f"event {remote_id} does not carry our job stamp", platform=self.platform
            )
        return item

    # --- contract ----------------------------------------------------------------------------

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        session = self._session(calendar_id)
        event_id = event_id_for(key)
        try:
            item = self._call(session, self._insert(session, calendar_id, event_id, event))
        except PreconditionFailedError as exc:
            if exc.status != 409:
                raise
            return self._adopt(session, calendar_id, event_id, event)
        return _ref(item)

    def _adopt(
        self, session: _Session, calendar_id: str, event_id: str, event: CalendarEvent
    ) -> RemoteRef:
        """The id of a create is taken: our own earlier attempt whose reply was lost."""
        for _ in range(_CONFLICT_ATTEMPTS):
            item = self._get(session, calendar_id, event_id)
            if item is None:
                # Purged since the 409: the id is free again.
                try:
                    return _ref(
                        self._call(session, self._insert(session, calendar_id, event_id, event))
                    )
                except PreconditionFailedError as exc:
                    if exc.status != 409:
                        raise
                    continue
            job_id, current = decode_event(item)
            if job_id is None:
                raise NotOwnedError(
                    f"event id {event_id} is taken by an event without our job stamp",
                    platform=self.platform,
                )
            if current is not None and current.canonical() == event.canonical():
                return _ref(item)
            try:
                request = self._patch(session, calendar_id, event_id, str(item["etag"]), event)
                return _ref(self._call(session, request))
            except PreconditionFailedError:
                continue  # changed again since our read: read it once more
        raise PreconditionFailedError(
            f"event {event_id} kept changing while we reconciled a repeated create",
            platform=self.platform,
        )

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        session = self._session(calendar_id)
        etag = ref.etag
        if etag is None:
            # Nothing proves the event is ours: read it before writing.
            etag = str(self._owned(session, calendar_id, ref.remote_id)["etag"])
        return _ref(
            self._call(session, self._patch(session, calendar_id, ref.remote_id, etag, event))
        )

    def _update_reconciling(self, calendar_id: str, op: Op) -> RemoteRef:
        assert op.ref is not None and op.event is not None
        try:
            return self.update(calendar_id, op.ref, op.event)
        except PreconditionFailedError:
            return self._update_fresh(calendar_id, op.ref.remote_id, op.event)

    def _update_fresh(self, calendar_id: str, remote_id: str, event: CalendarEvent) -> RemoteRef:
        """After a 412: our content wins, but only while the event still carries our stamp."""
        session = self._session(calendar_id)
        try:
            item = self._owned(session, calendar_id, remote_id)
        except NotFoundError:
            raise NotFoundError(
                f"event {remote_id} vanished during update", platform=self.platform
            ) from None
        request = self._patch(session, calendar_id, remote_id, str(item["etag"]), event)
        return _ref(self._call(session, request))

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        session = self._session(calendar_id)
        if ref.etag is not None:
            try:
                self._call(session, self._delete(session, calendar_id, ref.remote_id, ref.etag))
                return
            except PreconditionFailedError:
                pass  # edited since our write: delete it still, if it still carries our stamp
        self._delete_fresh(session, calendar_id, ref.remote_id)

    def _delete_fresh(self, session: _Session, calendar_id: str, remote_id: str) -> None:
        item = self._owned(session, calendar_id, remote_id)
        if item.get("status") == "cancelled":
            raise NotFoundError(
                f"event {remote_id} is deleted already", platform=self.platform, status=410
            )
        self._call(session, self._delete(session, calendar_id, remote_id, str(item["etag"])))

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        session = self._session(calendar_id)
        item = self._get(session, calendar_id, remote_id)
        if item is None:
            return None
        job_id, event = decode_event(item)
        return RemoteEvent(_ref(item), job_id, event)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        found = self.read(calendar_id, event_id_for(key))
        return None if found is None else found.ref

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        session = self._session(calendar_id)
        try:
            blocks = self._busy_from_events(session, calendar_id, start, end)
        except NotFoundError:
            blocks = self._busy_from_freebusy(session, calendar_id, start, end)
        except PermanentError as exc:
            if exc.status != 403:
                raise
            blocks = self._busy_from_freebusy(session, calendar_id, start, end)
        return sorted(blocks, key=lambda b: (b.start, b.end))

    def _busy_from_events(
        self, session: _Session, calendar_id: str, start: datetime, end: datetime
    ) -> list[BusyBlock]:
        blocks: list[BusyBlock] = []
        page_token: str | None = None
        while True:
            request = session.service.events().list(
                calendarId=calendar_id,
                timeMin=_rfc3339(start),
                timeMax=_rfc3339(end),
                singleEvents=True,
                showDeleted=False,
                maxResults=2500,
                pageToken=page_token,
                fields=_LIST_FIELDS,
            )
            page = self._call(session, request)
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

    def _busy_from_freebusy(
        self, session: _Session, calendar_id: str, start: datetime, end: datetime
    ) -> list[BusyBlock]:
        body = {
            "timeMin": _rfc3339(start),
            "timeMax": _rfc3339(end),
            "items": [{"id": calendar_id}],
        }
        result = self._call(session, session.service.freebusy().query(body=body))
        entry = (result.get("calendars") or {}).get(calendar_id) or {}
        errors = entry.get("errors") or []
        if errors:
            reason = str(errors[0].get("reason", "unknown"))
            error = NotFoundError if reason == "notFound" else PermanentError
            raise error(f"freeBusy of {calendar_id}: {reason}", platform=self.platform)
        return [
            BusyBlock(datetime.fromisoformat(b["start"]), datetime.fromisoformat(b["end"]))
            for b in entry.get("busy", [])
        ]

    # --- bulk --------------------------------------------------------------------------------

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            session = self._session(calendar_id)
        except ConnectorError as exc:
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]
        results: dict[int, OpResult] = {}
        planned: list[tuple[int, Any]] = []
        one_by_one: list[int] = []
        for position, op in enumerate(ops):
            try:
                request = self._batched(session, calendar_id, op)
            except ConnectorError as exc:
                results[position] = OpResult(op.item, op.kind, op.ref, error=exc)
                continue
            if request is None:
                one_by_one.append(position)
            else:
                planned.append((position, request))
        outcomes = self._run_batches(session, planned)
        for position, _ in planned:
            results[position] = self._settle(
                session, calendar_id, ops[position], outcomes[position]
            )
        for position in one_by_one:
            results[position] = self.apply_one(calendar_id, ops[position])
        return [results[position] for position in range(len(ops))]

    def _batched(self, session: _Session, calendar_id: str, op: Op) -> Any:
        """The request an op sends in a batch; None when it must read first (apply_one)."""
        if op.kind is OpKind.CREATE:
            assert op.event is not None
            return self._insert(session, calendar_id, event_id_for(op.key), op.event)
        if op.ref is None or op.ref.etag is None:
            return None
        if op.kind is OpKind.UPDATE:
            assert op.event is not None
            return self._patch(session, calendar_id, op.ref.remote_id, op.ref.etag, op.event)
        return self._delete(session, calendar_id, op.ref.remote_id, op.ref.etag)

    def _settle(self, session: _Session, calendar_id: str, op: Op, outcome: Any) -> OpResult:
        """An op's result from its part's outcome, by the rules the single calls follow."""
        if not isinstance(outcome, ConnectorError):
            if op.kind is OpKind.DELETE:
                return OpResult(op.item, op.kind, op.ref)
            return OpResult(op.item, op.kind, _ref(outcome))
        try:
            if isinstance(outcome, PreconditionFailedError):
                if op.kind is OpKind.CREATE and outcome.status == 409:
                    assert op.event is not None
                    ref = self._adopt(session, calendar_id, event_id_for(op.key), op.event)
                    return OpResult(op.item, op.kind, ref)
                if op.kind is OpKind.UPDATE:
                    assert op.ref is not None and op.event is not None
                    ref = self._update_fresh(calendar_id, op.ref.remote_id, op.event)
                    return OpResult(op.item, op.kind, ref)
                if op.kind is OpKind.DELETE:
                    assert op.ref is not None
                    with suppress(NotFoundError):  # gone meanwhile: the delete is done
                        self._delete_fresh(session, calendar_id, op.ref.remote_id)
                    return OpResult(op.item, op.kind, op.ref)
            if isinstance(outcome, NotFoundError) and op.kind is OpKind.DELETE:
                return OpResult(op.item, op.kind, op.ref)  # already gone: done
            return OpResult(op.item, op.kind, op.ref, error=outcome)
        except ConnectorError as exc:
            return OpResult(op.item, op.kind, op.ref, error=exc)

    def _run_batches(self, session: _Session, calls: list[tuple[int, Any]]) -> dict[int, Any]:
        """Send (position, request) pairs in batches; each position's parsed body, or its
        ConnectorError. Retryable parts are sent again, in fresh batches, after a backoff."""
        outcomes: dict[int, Any] = {}
        pending = calls
        retry = 0
        while pending:
            again: list[tuple[int, Any]] = []
            floor: float | None = None
            for start in range(0, len(pending), self.batch_size):
                chunk = pending[start : start + self.batch_size]
                for position, request, action, response in self._send_batch(session, chunk):
                    if action is None:
                        outcomes[position] = response
                    elif action in (Action.RETRY, Action.THROTTLE) and retry < self.max_retries:
                        again.append((position, request))
                        wait = (
                            retry_after_seconds(response)
                            if isinstance(response, httpx.Response)
                            else None
                        )
                        if wait is not None:
                            floor = wait if floor is None else max(floor, wait)
                    elif isinstance(response, ConnectorError):
                        outcomes[position] = response
                    else:
                        outcomes[position] = self._error(
                            session, action, request, response, retry + 1
                        )
            if again:
                # The same wait PolicyClient takes between attempts, scale knob included.
                self._sleep(session.policy.backoff(retry, floor) * backoff_scale())
                retry += 1
            pending = again
        return outcomes

    def _send_batch(
        self, session: _Session, chunk: list[tuple[int, Any]]
    ) -> list[tuple[int, Any, Action | None, Any]]:
        """One batch request: per part (position, request, action, body or response). A None
        action is success; for a failed batch the action is FAIL and the 'response' the error."""
        # Google counts each request in a batch against the quota; PolicyClient takes the
        # token for the HTTP request itself.
        for _ in range(len(chunk) - 1):
            session.limiter.acquire()
        replies: dict[str, tuple[Any, Any]] = {}

        def collect(request_id: str, response: Any, exception: Any) -> None:
            replies[request_id] = (response, exception)

        batch = BatchHttpRequest(callback=collect, batch_uri=self.batch_uri)
        for position, request in chunk:
            batch.add(request, request_id=str(position))
        try:
            batch.execute()
        except ConnectorError as exc:
            return [(position, request, Action.FAIL, exc) for position, request in chunk]
        except SdkError as exc:
            error = TransientError(
                f"POST {_path(self.batch_uri)}: unreadable batch reply ({type(exc).__name__})",
                platform=self.platform,
            )
            error.__cause__ = exc
            return [(position, request, Action.FAIL, error) for position, request in chunk]
        out: list[tuple[int, Any, Action | None, Any]] = []
        for position, request in chunk:
            reply = replies.get(str(position))
            if reply is None:
                missing = TransientError(
                    f"{request.method} {_path(request.uri)}: no reply in the batch response",
                    platform=self.platform,
                )
                out.append((position, request, Action.RETRY, missing))
                continue
            response, exception = reply
            if exception is None:
                out.append((position, request, None, response))
            elif isinstance(exception, HttpError):
                part = _as_httpx(exception.resp, exception.content)
                out.append((position, request, GOOGLE_POLICY.action_for(part), part))
            else:
                error = TransientError(
                    f"{request.method} {_path(request.uri)}: {type(exception).__name__}",
                    platform=self.platform,
                )
                out.append((position, request, Action.FAIL, error))
        return out


class GoogleWorkspaceConnector(GoogleCalendarConnector):
    """The same connector, for a Workspace service account impersonating each technician."""

    platform: ClassVar[str] = WORKSPACE_PLATFORM
