"""A stateful fake of Google's OAuth token endpoint and the Google Calendar API v3, on loopback.

The real connector, google-api-python-client and google-auth run unchanged against it:

    POST /token                                        refresh_token grant (OAuth user) and
                                                       jwt-bearer grant (service account, with
                                                       `sub` for domain-wide delegation)
    POST /batch/calendar/v3                            multipart/mixed batch, one application/http
                                                       response part per request part
    GET|POST /calendar/v3/calendars/{c}/events         list (timeMin/timeMax/privateExtended-
                                                       Property/showDeleted/pageToken) / insert
                                                       (client-chosen id; 409 duplicate)
    GET|PATCH|PUT|DELETE .../events/{id}               If-Match -> 412 conditionNotMet;
                                                       DELETE of a deleted event -> 410 deleted
    POST /calendar/v3/freeBusy                         merged busy blocks per calendar

Like Google, deleting an event only marks it `cancelled`: GET still returns it, an insert with
its id is still a 409 duplicate, and a PATCH may bring it back. Error bodies are Google's
({"error": {"code", "message", "errors": [{"domain", "reason", "message"}], "status"}}) and the
token endpoint's ({"error", "error_description"}). Event times are rendered in the calendar's
own zone, as Google does, so a client must not rely on getting its offsets back.

Knobs: `inject(Fault(...))` for statuses with Retry-After (top level, token endpoint, or one part
of a batch), delays past the client's timeout, dropped connections before or after the request
took effect; `expire_tokens()` (next call: 401), `invalid_grant` (the token endpoint refuses
every grant), `owner_only` and `share()` (who may see which calendar). With `strict` (default) a
write without sendUpdates=none, or one carrying attendees, is refused with 400 and recorded in
`violations`. `requests` logs every HTTP request and every batch part.
"""

from __future__ import annotations

import copy
import email.message
import email.parser
import itertools
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

API_PREFIX = "/calendar/v3"
BATCH_PATH = "/batch/calendar/v3"
TOKEN_PATH = "/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_BATCH_PARTS = 1000  # Google's documented limit for one Calendar batch
_ID_CHARS = set("abcdefghijklmnopqrstuv0123456789")
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_READ_ROLES = {"reader", "writer", "owner"}
_WRITE_ROLES = {"writer", "owner"}
AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "errors": [{"domain": self.domain, "reason": self.reason, "message": self.message}],
            "code": self.code,
            "message": self.message,
        }
        if self.code in _STATUS_NAMES:
            error["status"] = _STATUS_NAMES[self.code]
        return {"error": error}


def _not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


@dataclass
class Fault:
    """One injected failure, taken by the first `times` requests it matches."""

    kind: str = "status"  # "status" | "delay" | "drop"
    status: int = 503
    reason: str = "backendError"
    message: str = "Backend Error"
    domain: str = "global"
    retry_after: str | None = None
    seconds: float = 0.0  # delay: how long to stall before handling the request
    after: bool = False  # drop: handle the request first, so it takes effect but the reply is lost
    method: str | None = None
    path_contains: str | None = None
    part: bool = False  # one request inside a batch rather than an HTTP request
    token: bool = False  # the token endpoint rather than the Calendar API
    times: int = 1

    def matches(self, method: str, path: str, *, part: bool, token: bool) -> bool:
        return (
            self.part == part
            and self.token == token
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
        )


_RANDOM_FAULTS = (
    Fault(status=503, reason="backendError", message="Backend Error"),
    Fault(status=429, reason="rateLimitExceeded", message="Rate Limit Exceeded", retry_after="1"),
    Fault(status=403, reason="userRateLimitExceeded", message="User Rate Limit Exceeded"),
    Fault(kind="drop"),
    Fault(kind="drop", after=True),
)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    part: bool
    principal: str | None
    headers: dict[str, str]
    body: Any


@dataclass
class StoredEvent:
    calendar_id: str
    resource: dict[str, Any]  # as written, plus the server's fields; times are re-rendered
    start: datetime
    end: datetime
    all_day: bool

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def cancelled(self) -> bool:
        return self.resource.get("status") == "cancelled"

    @property
    def private(self) -> dict[str, str]:
        return dict(self.resource.get("extendedProperties", {}).get("private", {}))


@dataclass
class _Token:
    principal: str
    expires: float
    scopes: tuple[str, ...] = ()


@dataclass
class ServiceAccountKey:
    """A throwaway service account: its JSON key (what an admin downloads) and public key."""

    info: dict[str, str]
    public_key: rsa.RSAPublicKey = field(repr=False)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _parse_instant(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ApiError(400, "badRequest", f"Bad Request: {what} is missing")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "badRequest", f"Bad Request: {what} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise ApiError(400, "badRequest", f"Bad Request: {what} has no time zone offset")
    return parsed


def _zone(name: Any, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(400, "invalid", f"Invalid time zone definition for {what}.") from None


def _when(spec: Any, what: str) -> tuple[datetime, bool]:
    """A start/end object as Google reads it: dateTime (offset or timeZone) or an all-day date."""
    if not isinstance(spec, dict):
        raise ApiError(400, "required", f"Missing {what}.")
    if spec.get("dateTime") is not None:
        try:
            parsed = datetime.fromisoformat(str(spec["dateTime"]))
        except ValueError:
            raise ApiError(400, "invalid", f"Invalid {what}.") from None
        if parsed.tzinfo is None:
            if not spec.get("timeZone"):
                raise ApiError(400, "required", f"Missing time zone definition for {what}.")
            parsed = parsed.replace(tzinfo=_zone(spec["timeZone"], what))
        elif spec.get("timeZone"):
            _zone(spec["timeZone"], what)
        return parsed, False
    if spec.get("date") is not None:
        try:
            day = date.fromisoformat(str(spec["date"]))
        except ValueError:
            raise ApiError(400, "invalid", f"Invalid {what}.") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    raise ApiError(400, "required", f"Missing {what}.")


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Patch semantics: objects merge key by key, null removes a key, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def new_service_account(client_email: str, project_id: str = "fieldsync-test") -> ServiceAccountKey:
    """A fresh RSA key pair in Google's JSON key file layout (token_uri is set by the caller)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(uuid.uuid4().int)[:21],
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return ServiceAccountKey(info, key.public_key())


class FakeGoogleCalendar:
    def __init__(self, *, calendar_time_zone: str = "America/Los_Angeles") -> None:
        self.lock = threading.RLock()
        self.calendar_time_zone = calendar_time_zone
        self.calendars: dict[str, dict[str, StoredEvent]] = {}
        self.acl: dict[str, dict[str, str]] = {}  # calendar -> principal -> role
        self.owner_only = False  # calendars without ACL entries: only their owner may use them
        self.oauth_clients: dict[str, str] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (client id, principal)
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self.access_tokens: dict[str, _Token] = {}
        self.faults: list[Fault] = []
        self.invalid_grant = False
        self.token_lifetime = 3599
        self.strict = True
        self.violations: list[str] = []
        self.requests: list[LoggedRequest] = []
        self.http_requests = 0  # every HTTP request received, token endpoint included
        self.token_requests = 0
        self.batch_sizes: list[int] = []
        # Share of API requests (and batch parts) failing transiently at random, beyond the
        # injected faults: 503, 429 and 403 rateLimitExceeded with Retry-After, and connections
        # dropped before or after the request took effect.
        self.fault_rate = 0.0
        self.random_faults = 0
        self._rng = random.Random(3)
        self._etags = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGoogleCalendar:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGoogleCalendar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.base_url.rstrip("/") + TOKEN_PATH

    # --- setup and inspection ----------------------------------------------------------------

    def add_oauth_client(
        self, client_id: str, client_secret: str, refresh_token: str, principal: str
    ) -> None:
        with self.lock:
            self.oauth_clients[client_id] = client_secret
            self.refresh_tokens[refresh_token] = (client_id, principal)

    def add_service_account(self, key: ServiceAccountKey | None = None) -> ServiceAccountKey:
        """Trust a service account (a fresh one unless given); its key's token_uri is ours."""
        key = key or new_service_account("fieldsync@fieldsync-test.iam.gserviceaccount.com")
        key = ServiceAccountKey({**key.info, "token_uri": self.token_uri}, key.public_key)
        with self.lock:
            self.service_accounts[key.info["client_email"]] = key.public_key
        return key

    def share(self, calendar_id: str, principal: str, role: str) -> None:
        with self.lock:
            self.acl.setdefault(calendar_id, {})[principal] = role

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working, as if it had expired early."""
        with self.lock:
            self.access_tokens.clear()

    def events(self, calendar_id: str, *, include_deleted: bool = False) -> list[StoredEvent]:
        with self.lock:
            found = list(self.calendars.get(calendar_id, {}).values())
        return [e for e in found if include_deleted or not e.cancelled]

    def event(self, calendar_id: str, event_id: str) -> StoredEvent | None:
        with self.lock:
            return self.calendars.get(calendar_id, {}).get(event_id)

    def plant_event(
        self,
        calendar_id: str,
        start: datetime,
        end: datetime,
        *,
        summary: str = "Dentist",
        transparency: str = "opaque",
        private: Mapping[str, str] | None = None,
    ) -> str:
        """An event someone made by hand in Google Calendar (no stamp unless `private` says)."""
        resource: dict[str, Any] = {
            "summary": summary,
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": end.isoformat()},
            "transparency": transparency,
        }
        if private:
            resource["extendedProperties"] = {"private": dict(private)}
        with self.lock:
            stored = self._store_new(calendar_id, uuid.uuid4().hex, resource, "someone@example.com")
        return stored.id

    def tamper(self, calendar_id: str, event_id: str, **changes: Any) -> None:
        """An edit made by hand in Google Calendar: the content and the etag change."""
        with self.lock:
            stored = self.calendars[calendar_id][event_id]
            _merge(stored.resource, changes)
            self._touch(stored)

    def writes(self) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    # --- state -------------------------------------------------------------------------------

    def _next_etag(self) -> str:
        return f'"{3181161784712000 + next(self._etags)}"'

    def _touch(self, stored: StoredEvent) -> None:
        stored.resource["etag"] = self._next_etag()
        stored.resource["updated"] = _iso(datetime.now(UTC))
        stored.resource["sequence"] = int(stored.resource.get("sequence", 0)) + 1
        start, all_day = _when(stored.resource.get("start"), "start time")
        end, _ = _when(stored.resource.get("end"), "end time")
        stored.start, stored.end, stored.all_day = start, end, all_day

    def _validated_times(self, resource: Mapping[str, Any]) -> tuple[datetime, datetime, bool]:
        start, start_all_day = _when(resource.get("start"), "start time")
        end, end_all_day = _when(resource.get("end"), "end time")
        if start_all_day != end_all_day:
            raise ApiError(
                400, "invalid", "Start and end times must either both be date or both be dateTime."
            )
        if end <= start:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        return start, end, start_all_day

    def _store_new(
        self, calendar_id: str, event_id: str, resource: dict[str, Any], principal: str
    ) -> StoredEvent:
        resource = _prune_nulls(copy.deepcopy(resource))
        for blank in ("summary", "description", "location"):
            if resource.get(blank) == "":
                del resource[blank]  # Google leaves empty text fields out of the resource
        start, end, all_day = self._validated_times(resource)
        now = _iso(datetime.now(UTC))
        resource.update(
            {
                "kind": "calendar#event",
                "id": event_id,
                "etag": self._next_etag(),
                "status": resource.get("status", "confirmed"),
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                "created": now,
                "updated": now,
                "creator": {"email": principal},
                "organizer": {"email": calendar_id, "self": True},
                "iCalUID": f"{event_id}@google.com",
                "sequence": 0,
                "reminders": {"useDefault": True},
                "eventType": "default",
            }
        )
        stored = StoredEvent(calendar_id, resource, start, end, all_day)
        self.calendars.setdefault(calendar_id, {})[event_id] = stored
        return stored

    def _render(self, stored: StoredEvent, zone_name: str) -> dict[str, Any]:
        out = copy.deepcopy(stored.resource)
        if not stored.all_day:
            zone = ZoneInfo(zone_name)
            for key, when in (("start", stored.start), ("end", stored.end)):
                spec = dict(out.get(key, {}))
                spec["dateTime"] = when.astimezone(zone).isoformat()
                spec.pop("date", None)
                out[key] = spec
        return out

    # --- faults ------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str, *, part: bool, token: bool) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path, part=part, token=token):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
            if not token and self._rng.random() < self.fault_rate:
                self.random_faults += 1
                # Inside a batch only statuses make sense; the connection is the batch's.
                return self._rng.choice(_RANDOM_FAULTS[:3] if part else _RANDOM_FAULTS)
        return None

    # --- token endpoint ----------------------------------------------------------------------

    def token_endpoint(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant == "refresh_token":
            client_id = form.get("client_id", "")
            if self.oauth_clients.get(client_id) != form.get("client_secret") or not client_id:
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
            known = self.refresh_tokens.get(form.get("refresh_token", ""))
            if self.invalid_grant or known is None or known[0] != client_id:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            return 200, self._issue(known[1], tuple(form.get("scope", "").split()))
        if grant == JWT_GRANT:
            principal, scopes, error = self._check_assertion(form.get("assertion", ""))
            if error is not None:
                return 400, {"error": "invalid_grant", "error_description": error}
            if self.invalid_grant:
                return 400, {"error": "invalid_grant", "error_description": "Invalid grant."}
            return 200, self._issue(principal, scopes)
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}

    def _check_assertion(self, assertion: str) -> tuple[str, tuple[str, ...], str | None]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return "", (), "Invalid JWT."
        issuer = str(unverified.get("iss", ""))
        public_key = self.service_accounts.get(issuer)
        if public_key is None:
            return "", (), "Invalid JWT Signature."
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                # Google's documented audience, whatever URL the assertion was posted to.
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except jwt.InvalidAudienceError:
            return "", (), "Invalid JWT: audience is not the token endpoint."
        except jwt.PyJWTError:
            return "", (), "Invalid JWT Signature."
        scopes = tuple(str(claims.get("scope", "")).split())
        if not scopes:
            return "", (), "Invalid JWT: no scope."
        return str(claims.get("sub") or issuer), scopes, None

    def _issue(self, principal: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens[token] = _Token(principal, time.time() + self.token_lifetime, scopes)
        return {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }

    def principal_for(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        found = self.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if found is None or found.expires < time.time():
            raise ApiError(
                401,
                "authError",
                AUTH_MESSAGE,
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        return found.principal

    # --- the API -----------------------------------------------------------------------------

    def _role(self, principal: str, calendar_id: str) -> str | None:
        entries = self.acl.get(calendar_id)
        if principal == calendar_id:
            return "owner"
        if entries:
            return entries.get(principal)
        return None if self.owner_only else "owner"

    def _need(self, principal: str, calendar_id: str, roles: set[str]) -> None:
        role = self._role(principal, calendar_id)
        if role is None or (role == "freeBusyReader" and "freeBusyReader" not in roles):
            raise _not_found()
        if role not in roles:
            raise ApiError(
                403,
                "requiredAccessLevel",
                "You need to have writer access to this calendar.",
                domain="calendar",
            )

    def _check_write(self, query: Mapping[str, list[str]], body: Any) -> None:
        problems = []
        if query.get("sendUpdates") != ["none"]:
            problems.append(f"sendUpdates={query.get('sendUpdates')} (must be none)")
        if isinstance(body, dict) and body.get("attendees"):
            problems.append("the body carries attendees")
        if problems:
            self.violations.extend(problems)
            if self.strict:
                raise ApiError(400, "invalid", "fake Google: " + "; ".join(problems))

    def handle_api(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        raw_body: bytes,
        *,
        part: bool,
    ) -> tuple[int, dict[str, str], bytes]:
        """One Calendar API request, top level or a batch part: (status, headers, body)."""
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        body: Any = None
        principal: str | None = None
        try:
            if raw_body.strip():
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    raise ApiError(400, "parseError", "Parse Error") from None
            principal = self.principal_for(headers.get("authorization"))
            with self.lock:
                status, payload, extra = self._route(method, path, query, headers, body, principal)
        except ApiError as exc:
            status, payload, extra = exc.code, exc.body(), exc.headers
        finally:
            with self.lock:
                self.requests.append(
                    LoggedRequest(method, path, query, part, principal, dict(headers), body)
                )
        out_headers = {"Content-Type": "application/json; charset=UTF-8", **extra}
        if status == 204:
            return status, {}, b""
        return status, out_headers, json.dumps(payload).encode()

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: Any,
        principal: str,
    ) -> tuple[int, Any, dict[str, str]]:
        if not path.startswith(API_PREFIX + "/"):
            raise _not_found()
        parts = [unquote(p) for p in path[len(API_PREFIX) + 1 :].split("/")]
        if parts == ["freeBusy"] and method == "POST":
            return 200, self._freebusy(body or {}, principal), {}
        if len(parts) >= 3 and parts[0] == "calendars" and parts[2] == "events":
            calendar_id = parts[1]
            if len(parts) == 3 and method == "GET":
                return 200, self._list(calendar_id, query, principal), {}
            if len(parts) == 3 and method == "POST":
                return 200, self._insert(calendar_id, query, body, principal), {}
            if len(parts) == 4:
                return self._one(method, calendar_id, parts[3], query, headers, body, principal)
        raise _not_found()

    def _insert(
        self, calendar_id: str, query: Mapping[str, list[str]], body: Any, principal: str
    ) -> dict[str, Any]:
        self._need(principal, calendar_id, _WRITE_ROLES)
        self._check_write(query, body)
        if not isinstance(body, dict):
            raise ApiError(400, "required", "Missing end time.")
        event_id = body.get("id")
        if event_id is None:
            event_id = uuid.uuid4().hex
        elif (
            not isinstance(event_id, str)
            or not 5 <= len(event_id) <= 1024
            or not set(event_id) <= _ID_CHARS
        ):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        self._check_private(body)
        if event_id in self.calendars.get(calendar_id, {}):
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        stored = self._store_new(calendar_id, event_id, body, principal)
        return self._render(stored, self._zone_param(query))

    def _check_private(self, body: Mapping[str, Any]) -> None:
        private = (body.get("extendedProperties") or {}).get("private") or {}
        for key, value in private.items():
            if len(key) > 44 or (value is not None and len(str(value)) > 1024):
                raise ApiError(400, "invalid", "Invalid extended property value.")

    def _zone_param(self, query: Mapping[str, list[str]]) -> str:
        zone = query.get("timeZone", [self.calendar_time_zone])[0]
        _zone(zone, "timeZone")
        return zone

    def _one(
        self,
        method: str,
        calendar_id: str,
        event_id: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: Any,
        principal: str,
    ) -> tuple[int, Any, dict[str, str]]:
        writing = method in ("PATCH", "PUT", "DELETE")
        self._need(principal, calendar_id, _WRITE_ROLES if writing else _READ_ROLES)
        if writing:
            self._check_write(query, body)
        stored = self.calendars.get(calendar_id, {}).get(event_id)
        if stored is None:
            raise _not_found()
        if method == "GET":
            rendered = self._render(stored, self._zone_param(query))
            return 200, rendered, {"ETag": stored.resource["etag"]}
        if_match = headers.get("if-match")
        if if_match is not None and if_match not in (stored.resource["etag"], "*"):
            raise ApiError(
                412, "conditionNotMet", "Precondition Failed", headers={"Location": "If-Match"}
            )
        if method == "DELETE":
            if stored.cancelled:
                raise ApiError(410, "deleted", "Resource has been deleted")
            stored.resource["status"] = "cancelled"
            self._touch(stored)
            return 204, None, {}
        if not isinstance(body, dict):
            raise ApiError(400, "required", "Missing body.")
        self._check_private(body)
        candidate = copy.deepcopy(stored.resource)
        if method == "PUT":
            keep = {k: candidate[k] for k in ("kind", "id", "etag", "created", "iCalUID")}
            candidate = {**_prune_nulls(copy.deepcopy(body)), **keep}
        else:
            _merge(candidate, {k: v for k, v in body.items() if k not in ("id", "etag")})
        candidate.setdefault("status", "confirmed")
        self._validated_times(candidate)
        stored.resource = candidate
        self._touch(stored)
        return 200, self._render(stored, self._zone_param(query)), {}

    def _list(
        self, calendar_id: str, query: Mapping[str, list[str]], principal: str
    ) -> dict[str, Any]:
        self._need(principal, calendar_id, _READ_ROLES)
        low = _parse_instant(query["timeMin"][0], "timeMin") if "timeMin" in query else None
        high = _parse_instant(query["timeMax"][0], "timeMax") if "timeMax" in query else None
        if low is not None and high is not None and high <= low:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        show_deleted = query.get("showDeleted", ["false"])[0] == "true"
        wanted = [p.partition("=") for p in query.get("privateExtendedProperty", [])]
        zone = self._zone_param(query)
        page_size = min(int(query.get("maxResults", ["250"])[0]), 2500)
        offset = int(query.get("pageToken", ["0"])[0])
        found = []
        for stored in self.calendars.get(calendar_id, {}).values():
            if stored.cancelled and not show_deleted:
                continue
            if low is not None and stored.end <= low:
                continue
            if high is not None and stored.start >= high:
                continue
            private = stored.private
            if any(private.get(key) != value for key, _, value in wanted):
                continue
            found.append(stored)
        found.sort(key=lambda e: (e.start, e.id))
        page = found[offset : offset + page_size]
        result: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": self._next_etag(),
            "summary": calendar_id,
            "updated": _iso(datetime.now(UTC)),
            "timeZone": self.calendar_time_zone,
            "accessRole": self._role(principal, calendar_id),
            "defaultReminders": [],
            "items": [self._render(e, zone) for e in page],
        }
        if offset + page_size < len(found):
            result["nextPageToken"] = str(offset + page_size)
        return result

    def _freebusy(self, body: Mapping[str, Any], principal: str) -> dict[str, Any]:
        low = _parse_instant(body.get("timeMin"), "timeMin")
        high = _parse_instant(body.get("timeMax"), "timeMax")
        calendars: dict[str, Any] = {}
        for item in body.get("items", []):
            calendar_id = str(item.get("id"))
            if self._role(principal, calendar_id) is None:
                calendars[calendar_id] = {
                    "errors": [{"domain": "global", "reason": "notFound"}],
                    "busy": [],
                }
                continue
            spans = sorted(
                (max(e.start, low), min(e.end, high))
                for e in self.calendars.get(calendar_id, {}).values()
                if not e.cancelled
                and e.resource.get("transparency", "opaque") == "opaque"
                and e.end > low
                and e.start < high
            )
            merged: list[list[datetime]] = []
            for start, end in spans:
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            calendars[calendar_id] = {
                "busy": [
                    {"start": _iso(s.astimezone(UTC)), "end": _iso(e.astimezone(UTC))}
                    for s, e in merged
                ]
            }
        return {
            "kind": "calendar#freeBusy",
            "timeMin": _iso(low.astimezone(UTC)),
            "timeMax": _iso(high.astimezone(UTC)),
            "calendars": calendars,
        }

    # --- batch -------------------------------------------------------------------------------

    def handle_batch(
        self, headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/mixed"):
            error = ApiError(400, "badRequest", "Batch request must be multipart/mixed.")
            return 400, {"Content-Type": "application/json"}, json.dumps(error.body()).encode()
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw_body
        )
        parts = message.get_payload()
        assert isinstance(parts, list)
        if len(parts) > MAX_BATCH_PARTS:
            error = ApiError(400, "badRequest", f"Too many requests in a batch: {len(parts)}.")
            return 400, {"Content-Type": "application/json"}, json.dumps(error.body()).encode()
        with self.lock:
            self.batch_sizes.append(len(parts))
        # Headers of the outer request apply to every part unless the part sets its own.
        outer = {k: v for k, v in headers.items() if not k.startswith("content-") and k != "host"}
        boundary = "batch_" + uuid.uuid4().hex
        chunks: list[bytes] = []
        for part in parts:
            assert isinstance(part, email.message.Message)
            content_id = str(part.get("Content-ID", ""))
            inner = part.get_payload()
            assert isinstance(inner, str)
            status, out_headers, body = self._batch_part(inner, outer)
            response_id = f"<response-{content_id[1:-1]}>" if content_id else ""
            lines = [f"--{boundary}", "Content-Type: application/http"]
            if response_id:
                lines.append(f"Content-ID: {response_id}")
            lines += ["", f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
            lines += [f"{k}: {v}" for k, v in out_headers.items()]
            lines += [f"Content-Length: {len(body)}", "", ""]
            chunks.append("\r\n".join(lines).encode() + body + b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, b"".join(chunks)

    def _batch_part(
        self, inner: str, outer: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        request_line, _, rest = inner.partition("\n")
        method, target, _version = request_line.strip().split(" ", 2)
        head, _, body = rest.replace("\r\n", "\n").partition("\n\n")
        part_headers = dict(outer)
        for line in head.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                part_headers[name.strip().lower()] = value.strip()
        path = urlsplit(target).path
        fault = self.take_fault(method, path, part=True, token=False)
        if fault is not None and fault.kind == "status":
            status, out_headers, payload = self._fault_response(fault)
            with self.lock:
                self.requests.append(LoggedRequest(method, path, {}, True, None, {}, None))
            return status, out_headers, payload
        return self.handle_api(method, target, part_headers, body.encode(), part=True)

    def _fault_response(self, fault: Fault) -> tuple[int, dict[str, str], bytes]:
        error = ApiError(fault.status, fault.reason, fault.message, domain=fault.domain)
        out = {"Content-Type": "application/json; charset=UTF-8"}
        if fault.retry_after is not None:
            out["Retry-After"] = fault.retry_after
        return fault.status, out, json.dumps(error.body()).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGoogleCalendar
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        try:
            self.send_response(status, _REASONS.get(status))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout fault)

    def _handle(self) -> None:
        fake = self.fake
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        token = path == TOKEN_PATH
        with fake.lock:
            fake.http_requests += 1
            fake.token_requests += token
        fault = fake.take_fault(self.command, path, part=False, token=token)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault is not None and fault.kind == "status":
            self._send(*fake._fault_response(fault))
            return
        elif fault is not None and fault.kind == "drop" and not fault.after:
            self.close_connection = True
            return
        status, out_headers, body = self._dispatch(path, headers, raw, token=token)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True  # it took effect, but the client never hears so
            return
        self._send(status, out_headers, body)

    def _dispatch(
        self, path: str, headers: Mapping[str, str], raw: bytes, *, token: bool
    ) -> tuple[int, dict[str, str], bytes]:
        fake = self.fake
        if token:
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            with fake.lock:
                status, payload = fake.token_endpoint(form)
            return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        if path == BATCH_PATH and self.command == "POST":
            return fake.handle_batch(headers, raw)
        return fake.handle_api(self.command, self.path, headers, raw, part=False)

    do_GET = _handle
    do_POST = _handle
    do_PATCH = _handle
    do_PUT = _handle
    do_DELETE = _handle
