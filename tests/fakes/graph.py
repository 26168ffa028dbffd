"""A stateful fake of Microsoft Entra ID (token endpoint) and Microsoft Graph calendars.

It speaks the documented HTTP contract on 127.0.0.1 over TLS (msal refuses authorities that are
not https), so the real connector, msal and httpx run unchanged against it:

    GET  /{tenant}/v2.0/.well-known/openid-configuration      OpenID discovery, as msal needs
    POST /{tenant}/oauth2/v2.0/token                          client credentials: secret or a
                                                              certificate-signed JWT assertion
    POST /v1.0/$batch                                         JSON batching, at most 20 requests
    GET|POST /v1.0/users/{u}/calendar[s/{c}]/events           list ($filter on an extended
                                                              property) / create (transactionId)
    GET|PATCH|DELETE /v1.0/users/{u}/calendar[s/{c}]/events/{id}   If-Match -> 412
    GET  /v1.0/users/{u}/calendar[s/{c}]/calendarView         startDateTime / endDateTime
    POST /v1.0/users/{u}/calendar/getSchedule                 free/busy of mailboxes

Error bodies are Graph's ({"error": {"code", "message"}}) and Entra's ({"error",
"error_description", "error_codes"}). Fault knobs: statuses with Retry-After (top level and
inside $batch), delays past the client's timeout, dropped connections before or after the
request took effect, expired tokens. Like Outlook, a mailbox serves at most 4 requests at once
(sub-requests of a batch count, four of them run in parallel); more get 429 MailboxConcurrency,
and the highest concurrency seen per mailbox is recorded.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import random
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
GRAPH_PREFIX = "/v1.0"
MAX_BATCH = 20
MAILBOX_CONCURRENCY = 4
BATCH_PARALLELISM = 4  # Graph hands up to four sub-requests of a batch to Outlook at once
MAX_SCHEDULE_DAYS = 42
_WINDOWS_ZONES = {
    "Central Standard Time": "America/Chicago",
    "Eastern Standard Time": "America/New_York",
    "Pacific Standard Time": "America/Los_Angeles",
    "W. Europe Standard Time": "Europe/Berlin",
    "GMT Standard Time": "Europe/London",
}
_LITERAL = r"'((?:[^']|'')*)'"
_ANY_FILTER = re.compile(
    r"^\s*singleValueExtendedProperties/Any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+"
    + _LITERAL
    + r"\s+and\s+\1/value\s+eq\s+"
    + _LITERAL
    + r"\s*\)\s*$"
)
_EXPAND = re.compile(r"^\s*singleValueExtendedProperties\(\s*\$filter=(.*)\)\s*$")
_EXPAND_ID = re.compile(r"id\s+eq\s+" + _LITERAL)


# --- TLS material ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsMaterial:
    cert_pem: str
    cert_file: str
    key_file: str

    def client_context(self) -> ssl.SSLContext:
        """What a client must trust to talk to the fake."""
        return ssl.create_default_context(cadata=self.cert_pem)


def _self_signed(common_name: str, *, server: bool) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    if server:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
    return key, builder.sign(key, hashes.SHA256())


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def tls_material() -> TlsMaterial:
    """One self-signed server certificate per test process: key generation costs ~0.1 s."""
    key, cert = _self_signed("fieldsync fake graph", server=True)
    folder = Path(tempfile.mkdtemp(prefix="fake-graph-tls-"))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (folder / "cert.pem").write_text(cert_pem)
    (folder / "key.pem").write_text(_key_pem(key))
    return TlsMaterial(cert_pem, str(folder / "cert.pem"), str(folder / "key.pem"))


@dataclass(frozen=True)
class ClientCertificate:
    """An app registration's certificate credential: the private key stays with the client."""

    private_key_pem: str
    thumbprint: str  # SHA-1 of the DER certificate, hex, as the Azure portal shows it
    public_key_pem: str


@functools.cache
def client_certificate() -> ClientCertificate:
    key, cert = _self_signed("fieldsync app credential", server=False)
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ClientCertificate(_key_pem(key), thumbprint, public.decode())


# --- state -----------------------------------------------------------------------------------


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }


def _not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _new_id(prefix: str = "AAMkAGI2") -> str:
    # Real ids are long base64 strings that end in '=' and need escaping in a URL path.
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode() + "AAA="


@dataclass
class FakeEvent:
    id: str
    mailbox: str
    calendar_id: str
    fields: dict[str, Any]  # the writable Graph properties, as last written
    props: dict[str, str]  # single-value extended properties by id
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    transaction_id: str | None
    created: dt.datetime
    modified: dt.datetime
    version: int = 1

    @property
    def change_key(self) -> str:
        digest = hashlib.sha256(f"{self.id}/{self.version}".encode()).digest()[:12]
        return "DwAAABYAAAA" + base64.b64encode(digest).decode()

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    @property
    def show_as(self) -> str:
        return str(self.fields.get("showAs") or "busy")

    @property
    def cancelled(self) -> bool:
        return bool(self.fields.get("isCancelled"))

    @property
    def attendees(self) -> list[Any]:
        return list(self.fields.get("attendees") or [])


@dataclass
class Mailbox:
    address: str
    default_calendar: str
    calendars: dict[str, dict[str, FakeEvent]] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str  # "status" | "drop" | "drop_after" | "delay"
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after: str | None = None
    seconds: float = 0.0
    match: Callable[[str, str], bool] | None = None


_RANDOM_FAULTS = (
    _Fault("status", 503, "ServiceUnavailable", "Service temporarily unavailable."),
    _Fault("status", 429, "TooManyRequests", "Too many requests.", retry_after="1"),
    _Fault("drop"),
    _Fault("drop_after"),
)


@dataclass
class _Token:
    client_id: str
    expires: float
    revoked: bool = False


def _zone(name: str) -> dt.tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(_WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{name}'.",
        ) from None


def _parse_local(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise GraphError(400, "ErrorInvalidRequest", "dateTime must be a string.")
    text = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(400, "ErrorInvalidRequest", f"Cannot convert '{value}'.") from None
    return parsed.replace(tzinfo=None)


def _to_utc(stamp: Any) -> dt.datetime:
    if not isinstance(stamp, dict) or "dateTime" not in stamp or "timeZone" not in stamp:
        raise GraphError(400, "ErrorInvalidRequest", "start and end need dateTime and timeZone.")
    local = _parse_local(stamp["dateTime"])
    # Like Exchange: wall time in the named zone (the first of two on an ambiguous hour).
    return local.replace(tzinfo=_zone(str(stamp["timeZone"]))).astimezone(UTC)


def _render_time(when: dt.datetime, zone_name: str) -> dict[str, str]:
    local = when.astimezone(_zone(zone_name))
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone_name}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _odata_unquote(text: str) -> str:
    return text.replace("''", "'")


def _prefer(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """(time zone, body content type) from Prefer headers; Graph's default zone is UTC."""
    zone, body_type = "UTC", None
    for part in headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip() == "outlook.timezone":
            zone = value.strip().strip('"')
        elif name.strip() == "outlook.body-content-type":
            body_type = value.strip().strip('"')
    return zone, body_type


# --- the server --------------------------------------------------------------------------------


class FakeGraph:
    """Start with `start()` (or as a context manager); `base_url` is the authority host and
    `api_base_url` the Graph base (…/v1.0)."""

    def __init__(
        self,
        *,
        tenant_id: str = "0b5b7f3e-2f7d-4c55-9b8c-6d3c2f1e4a10",
        client_id: str = "6a1f4c2e-8d3b-4e7f-a5c9-1b2d3e4f5a6b",
        client_secret: str = "fake~SecretValue.Do-Not-Log_123456",
        certificate: ClientCertificate | None = None,
        token_ttl: float = 3599.0,
        latency: float = 0.0,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.certificate = certificate
        self.token_ttl = token_ttl
        self.latency = latency  # seconds each Graph operation takes, so overlaps show
        self.refuse_tokens = False  # every access token is refused, even fresh ones
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.transactions: dict[tuple[str, str], str] = {}
        self.tokens: dict[str, _Token] = {}
        self._faults: deque[_Fault] = deque()
        self._sub_faults: deque[_Fault] = deque()
        self._token_faults: deque[_Fault] = deque()
        self._inflight: Counter[str] = Counter()
        self.max_concurrency: Counter[str] = Counter()
        # Counters: top-level HTTP requests to Graph, of which $batch; sub-requests; logins.
        self.graph_requests = 0
        self.batch_requests = 0
        self.sub_requests = 0
        self.token_requests = 0
        self.discovery_requests = 0
        self.unauthorized = 0
        self.throttled_for_concurrency = 0
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of Graph operations
        self.attendee_writes = 0  # writes that carried attendees: must stay 0
        # Share of Graph requests (and $batch sub-requests) that fail transiently at random,
        # beyond the queued faults: 503, 429 with Retry-After, connections dropped before or
        # after the request took effect.
        self.fault_rate = 0.0
        self.random_faults = 0
        self._rng = random.Random(5)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeGraph:
        material = tls_material()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(material.cert_file, material.key_file)
        self._server = _Server(self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-graph",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        return self.base_url + GRAPH_PREFIX

    # --- setup and inspection ---

    def add_mailbox(self, address: str, *calendars: str) -> Mailbox:
        """A mailbox with its default calendar and optional extra calendars (ids returned)."""
        with self.lock:
            default = _new_id("AAMkCal")
            box = Mailbox(address, default, {default: {}})
            for cal in calendars:
                box.calendars[cal] = {}
            self.mailboxes[address.lower()] = box
            return box

    def events(self, mailbox: str, calendar_id: str | None = None) -> list[FakeEvent]:
        with self.lock:
            box = self.mailboxes[mailbox.lower()]
            cals = [calendar_id] if calendar_id else list(box.calendars)
            return [e for c in cals for e in box.calendars[c].values()]

    def event(self, mailbox: str, event_id: str) -> FakeEvent | None:
        with self.lock:
            for cal in self.mailboxes[mailbox.lower()].calendars.values():
                if event_id in cal:
                    return cal[event_id]
            return None

    def plant_foreign(
        self,
        mailbox: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        calendar_id: str | None = None,
        subject: str = "Dentist",
        show_as: str = "busy",
    ) -> str:
        """An event someone made in Outlook: no extended properties of ours."""
        with self.lock:
            box = self.mailboxes[mailbox.lower()]
            cal = calendar_id or box.default_calendar
            now = dt.datetime.now(UTC)
            ev = FakeEvent(
                _new_id(),
                box.address,
                cal,
                {
                    "subject": subject,
                    "showAs": show_as,
                    "start": {
                        "dateTime": start.astimezone(UTC).isoformat()[:19],
                        "timeZone": "UTC",
                    },
                    "end": {"dateTime": end.astimezone(UTC).isoformat()[:19], "timeZone": "UTC"},
                },
                {},
                start.astimezone(UTC),
                end.astimezone(UTC),
                None,
                now,
                now,
            )
            box.calendars[cal][ev.id] = ev
            return ev.id

    def tamper(self, mailbox: str, event_id: str, subject: str) -> None:
        """An edit made in Outlook: content and change key move on."""
        with self.lock:
            ev = self.event(mailbox, event_id)
            assert ev is not None
            ev.fields["subject"] = subject
            ev.version += 1

    # --- fault knobs ---

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        code: str = "",
        message: str = "",
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """The next matching top-level Graph requests get this status (before taking effect)."""
        fault = _Fault(
            "status",
            status,
            code,
            message,
            None if retry_after is None else str(retry_after),
            match=match,
        )
        self._faults.extend([fault] * times)

    def fail_next_sub(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        code: str = "",
        message: str = "",
    ) -> None:
        """The next sub-requests inside $batch get this status."""
        fault = _Fault(
            "status", status, code, message, None if retry_after is None else str(retry_after)
        )
        self._sub_faults.extend([fault] * times)

    def drop_next(
        self,
        *,
        after_commit: bool,
        times: int = 1,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Close the connection without a response, before or after the request took effect."""
        self._faults.extend([_Fault("drop_after" if after_commit else "drop", match=match)] * times)

    def delay_next(
        self, seconds: float, *, times: int = 1, match: Callable[[str, str], bool] | None = None
    ) -> None:
        """Answer only after `seconds` (the request still takes effect): a client timeout."""
        self._faults.extend([_Fault("delay", seconds=seconds, match=match)] * times)

    def fail_next_token(
        self, status: int, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        self._token_faults.extend([_Fault("status", status, retry_after=retry_after)] * times)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working, as at the end of its lifetime."""
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    def _take_fault(self, queue: deque[_Fault], method: str, path: str) -> _Fault | None:
        with self.lock:
            for i, fault in enumerate(queue):
                if fault.match is None or fault.match(method, path):
                    del queue[i]
                    return fault
            if queue is not self._token_faults and self._rng.random() < self.fault_rate:
                self.random_faults += 1
                # Inside a $batch only statuses make sense; the connection is the batch's.
                return self._rng.choice(
                    _RANDOM_FAULTS if queue is self._faults else _RANDOM_FAULTS[:2]
                )
            return None

    # --- Entra ID ---

    def login(
        self, method: str, path: str, form: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != self.tenant_id:
            tenant = parts[0] if parts else ""
            return (
                400,
                {},
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found. Check to make "
                    "sure you have the correct tenant ID and are signing into the correct cloud.",
                    "error_codes": [90002],
                },
            )
        if method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            with self.lock:
                self.discovery_requests += 1
            root = f"{self.base_url}/{self.tenant_id}"
            return (
                200,
                {},
                {
                    "token_endpoint": f"{root}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                    "issuer": f"{root}/v2.0",
                    "jwks_uri": f"{root}/discovery/v2.0/keys",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "response_types_supported": ["code", "id_token", "code id_token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "tenant_region_scope": "NA",
                },
            )
        if method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            with self.lock:
                self.token_requests += 1
            fault = self._take_fault(self._token_faults, method, path)
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return (
                    fault.status,
                    headers,
                    {
                        "error": "temporarily_unavailable",
                        "error_description": "AADSTS50196: The server terminated an operation "
                        "because it encountered a client request loop.",
                        "error_codes": [50196],
                    },
                )
            return self._token(form)
        return 404, {}, {"error": "not_found", "error_description": path}

    def _oauth_error(
        self, status: int, error: str, code: int, text: str
    ) -> tuple[int, dict[str, str], Any]:
        trace = uuid.uuid4()
        return (
            status,
            {},
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: "
                f"{dt.datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
                "error_codes": [code],
                "timestamp": f"{dt.datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
                "trace_id": str(trace),
                "correlation_id": str(uuid.uuid4()),
                "error_uri": f"{self.base_url}/error?code={code}",
            },
        )

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        if form.get("client_id") != self.client_id:
            return self._oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{self.tenant_id}'.",
            )
        scope = form.get("scope", "")
        if "https://graph.microsoft.com/.default" not in scope.split():
            return self._oauth_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
            )
        if "client_assertion" in form:
            problem = self._check_assertion(form)
            if problem:
                return self._oauth_error(401, "invalid_client", 700027, problem)
        elif form.get("client_secret") != self.client_secret:
            # Like Entra: the message names the app, never the value that was sent.
            return self._oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{self.client_id}'.",
            )
        token = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[token] = _Token(form["client_id"], time.time() + self.token_ttl)
        return (
            200,
            {},
            {
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl),
                "ext_expires_in": int(self.token_ttl),
                "access_token": token,
            },
        )

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        cert = self.certificate
        if cert is None:
            return "Client assertion contains an invalid signature: no certificate is registered."
        if form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return "Invalid client_assertion_type."
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "Client assertion is not a JWT."
        expected_x5t = base64.urlsafe_b64encode(bytes.fromhex(cert.thumbprint)).decode().rstrip("=")
        if str(header.get("x5t", "")).rstrip("=") != expected_x5t:
            return f"Client assertion failed signature validation. Key was not found: {header}"
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key_pem,
                algorithms=["RS256", "PS256"],
                audience=f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token",
                issuer=self.client_id,
            )
        except jwt.PyJWTError as exc:
            return f"Client assertion failed validation: {exc}"
        if claims.get("sub") != self.client_id:
            return "Client assertion subject does not match the client id."
        return None

    # --- Graph: authentication and dispatch ---

    def authenticate(self, authorization: str | None) -> GraphError | None:
        scheme, _, token = (authorization or "").partition(" ")
        with self.lock:
            found = self.tokens.get(token) if scheme.lower() == "bearer" else None
            valid = found is not None and not found.revoked and found.expires > time.time()
            if valid and not self.refuse_tokens:
                return None
            self.unauthorized += 1
        return GraphError(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid."
            if found is not None
            else "IDX14100: JWT is not well formed.",
            {
                "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.'
                'microsoftonline.com/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'
            },
        )

    @contextmanager
    def _mailbox_slot(self, mailbox: str) -> Iterator[bool]:
        key = mailbox.lower()
        with self.lock:
            self._inflight[key] += 1
            now = self._inflight[key]
            self.max_concurrency[key] = max(self.max_concurrency[key], now)
        try:
            yield now <= MAILBOX_CONCURRENCY
        finally:
            with self.lock:
                self._inflight[key] -= 1

    def operation(
        self, method: str, target: str, headers: Mapping[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        """One Graph operation (a top-level request or a $batch sub-request)."""
        split = urlsplit(target)
        path = split.path
        if path.startswith(GRAPH_PREFIX + "/"):
            path = path[len(GRAPH_PREFIX) :]
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        segments = [unquote(s) for s in path.split("/") if s]
        status, out_headers, out = self._routed(method, segments, query, headers, body, path)
        with self.lock:
            self.log.append((method, path, status))
        return status, out_headers, out

    def _routed(
        self,
        method: str,
        segments: list[str],
        query: dict[str, str],
        headers: Mapping[str, str],
        body: Any,
        path: str,
    ) -> tuple[int, dict[str, str], Any]:
        if len(segments) < 2 or segments[0] != "users":
            return (
                400,
                {},
                GraphError(
                    400,
                    "BadRequest",
                    f"Resource not found for the segment '{segments[0] if segments else ''}'.",
                ).body(),
            )
        mailbox = segments[1]
        with self._mailbox_slot(mailbox) as allowed:
            if not allowed:
                with self.lock:
                    self.throttled_for_concurrency += 1
                err = GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
                return 429, err.headers, err.body()
            if self.latency:
                time.sleep(self.latency)
            try:
                return self._handle(method, mailbox, segments[2:], query, headers, body)
            except GraphError as err:
                return err.status, err.headers, err.body()

    def _box(self, mailbox: str) -> Mailbox:
        box = self.mailboxes.get(mailbox.lower())
        if box is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.")
        return box

    def _calendar(self, box: Mailbox, rest: list[str]) -> tuple[str, list[str]]:
        if rest and rest[0] == "calendar":
            return box.default_calendar, rest[1:]
        if len(rest) >= 2 and rest[0] == "calendars":
            if not rest[1].startswith("AAMk"):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            if rest[1] not in box.calendars:
                raise _not_found()
            return rest[1], rest[2:]
        raise GraphError(400, "BadRequest", "Unsupported resource path.")

    def _handle(
        self,
        method: str,
        mailbox: str,
        rest: list[str],
        query: dict[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            box = self._box(mailbox)
            if rest == ["calendar", "getSchedule"] and method == "POST":
                return 200, {}, self._get_schedule(body, headers)
            if rest[:1] == ["events"]:
                calendar, tail = None, rest
            else:
                calendar, tail = self._calendar(box, rest)
            if tail == ["events"] and calendar is not None:
                if method == "POST":
                    return self._create(box, calendar, body, headers)
                if method == "GET":
                    return 200, {}, self._list(box, calendar, query, headers)
            if tail == ["calendarView"] and method == "GET" and calendar is not None:
                return 200, {}, self._calendar_view(box, calendar, query, headers)
            if len(tail) == 2 and tail[0] == "events":
                ev = self._find(box, calendar, tail[1])
                if method == "GET":
                    return 200, {}, self._render(ev, query, headers)
                if method == "PATCH":
                    self._check_if_match(ev, headers)
                    self._apply(ev, body, creating=False)
                    ev.version += 1
                    ev.modified = dt.datetime.now(UTC)
                    return 200, {}, self._render(ev, {}, headers)
                if method == "DELETE":
                    self._check_if_match(ev, headers)
                    del box.calendars[ev.calendar_id][ev.id]
                    if ev.transaction_id:
                        self.transactions.pop((box.address.lower(), ev.transaction_id), None)
                    return 204, {}, None
            raise GraphError(405, "ErrorInvalidRequest", f"{method} is not supported here.")

    def _find(self, box: Mailbox, calendar: str | None, event_id: str) -> FakeEvent:
        if not event_id.startswith("AAMk"):
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        cals = [calendar] if calendar is not None else list(box.calendars)
        for cal in cals:
            if event_id in box.calendars[cal]:
                return box.calendars[cal][event_id]
        raise _not_found()

    @staticmethod
    def _check_if_match(ev: FakeEvent, headers: Mapping[str, str]) -> None:
        wanted = headers.get("if-match")
        if wanted is not None and wanted != "*" and wanted != ev.etag:
            raise GraphError(
                412,
                "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the change key "
                "passed in the request does not match the current change key for the item.",
            )

    def _apply(self, ev: FakeEvent, body: Any, *, creating: bool) -> None:
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        if body.get("attendees"):
            self.attendee_writes += 1
        if not creating and "transactionId" in body and body["transactionId"] != ev.transaction_id:
            raise GraphError(400, "ErrorInvalidRequest", "transactionId cannot be changed.")
        props = body.get("singleValueExtendedProperties")
        if props is not None:
            if not isinstance(props, list):
                raise GraphError(400, "BadRequest", "singleValueExtendedProperties must be a list.")
            for prop in props:
                if not isinstance(prop, dict) or not isinstance(prop.get("id"), str):
                    raise GraphError(400, "BadRequest", "An extended property needs an id.")
                if not re.match(r"^String \{[0-9a-fA-F-]{36}\} Name \w+$", prop["id"]):
                    raise GraphError(400, "ErrorInvalidProperty", f"Bad property {prop['id']}.")
                ev.props[prop["id"]] = str(prop.get("value") or "")
        for name, value in body.items():
            if name in ("singleValueExtendedProperties", "transactionId", "id", "@odata.etag"):
                continue
            ev.fields[name] = value
        start = _to_utc(ev.fields.get("start"))
        end = _to_utc(ev.fields.get("end"))
        if end < start:
            raise GraphError(400, "ErrorInvalidRequest", "The end time is before the start time.")
        ev.start, ev.end = start, end

    def _create(
        self, box: Mailbox, calendar: str, body: Any, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        txn = body.get("transactionId") if isinstance(body, dict) else None
        if txn:
            known = self.transactions.get((box.address.lower(), str(txn)))
            if known is not None:
                for cal in box.calendars.values():
                    if known in cal:
                        # A repeated create: the event the first one made, not a second one.
                        return 201, {}, self._render(cal[known], {}, headers)
        now = dt.datetime.now(UTC)
        ev = FakeEvent(_new_id(), box.address, calendar, {}, {}, now, now, txn, now, now)
        self._apply(ev, body, creating=True)
        box.calendars[calendar][ev.id] = ev
        if txn:
            self.transactions[(box.address.lower(), str(txn))] = ev.id
        return 201, {}, self._render(ev, {}, headers)

    # --- Graph: reads ---

    def _render(
        self, ev: FakeEvent, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        zone, _ = _prefer(headers)
        f = ev.fields
        out: dict[str, Any] = {
            "@odata.etag": ev.etag,
            "id": ev.id,
            "createdDateTime": _iso(ev.created),
            "lastModifiedDateTime": _iso(ev.modified),
            "changeKey": ev.change_key,
            "categories": list(f.get("categories") or []),
            "transactionId": ev.transaction_id,
            "originalStartTimeZone": (f.get("start") or {}).get("timeZone", "UTC"),
            "originalEndTimeZone": (f.get("end") or {}).get("timeZone", "UTC"),
            "reminderMinutesBeforeStart": f.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": f.get("isReminderOn", True),
            "subject": f.get("subject", ""),
            "bodyPreview": str((f.get("body") or {}).get("content", ""))[:255],
            "isAllDay": False,
            "isCancelled": ev.cancelled,
            "isOrganizer": True,
            "responseRequested": f.get("responseRequested", True),
            "showAs": ev.show_as,
            "type": "singleInstance",
            "body": f.get("body") or {"contentType": "text", "content": ""},
            "start": _render_time(ev.start, zone),
            "end": _render_time(ev.end, zone),
            "location": f.get("location") or {"displayName": "", "locationType": "default"},
            "attendees": ev.attendees,
            "organizer": {"emailAddress": {"name": ev.mailbox, "address": ev.mailbox}},
        }
        select = query.get("$select")
        if select:
            keep = {s.strip() for s in select.split(",")} | {"id", "@odata.etag"}
            out = {k: v for k, v in out.items() if k in keep}
        expand = query.get("$expand")
        if expand:
            match = _EXPAND.match(expand)
            if match is None:
                raise GraphError(
                    400, "BadRequest", f"Parsing OData Select and Expand failed: {expand}"
                )
            wanted = [_odata_unquote(m) for m in _EXPAND_ID.findall(match.group(1))]
            found = [{"id": pid, "value": ev.props[pid]} for pid in wanted if pid in ev.props]
            if found:  # Graph leaves the navigation property out when nothing matched
                out["singleValueExtendedProperties"] = found
        return out

    def _page(
        self,
        items: list[FakeEvent],
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        default_top: int,
    ) -> dict[str, Any]:
        top = min(int(query.get("$top", default_top)), 1000)
        skip = int(query.get("$skip", "0"))
        page = items[skip : skip + top]
        out: dict[str, Any] = {"value": [self._render(e, query, headers) for e in page]}
        if skip + top < len(items):
            nxt = dict(query, **{"$skip": str(skip + top)})
            out["@odata.nextLink"] = f"{self.api_base_url}{path}?{urlencode(nxt, quote_via=quote)}"
        return out

    def _list(
        self, box: Mailbox, calendar: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        items = sorted(box.calendars[calendar].values(), key=lambda e: e.created)
        flt = query.get("$filter")
        if flt:
            match = _ANY_FILTER.match(flt)
            if match is None:
                raise GraphError(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                )
            pid, value = _odata_unquote(match.group(2)), _odata_unquote(match.group(3))
            # Graph compares extended property values case-insensitively.
            items = [e for e in items if e.props.get(pid, "").lower() == value.lower()]
        path = f"/users/{quote(box.address, safe='@')}/calendars/{quote(calendar, safe='')}/events"
        return self._page(items, path, query, headers, 10)

    def _calendar_view(
        self, box: Mailbox, calendar: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        try:
            start = _query_time(query["startDateTime"])
            end = _query_time(query["endDateTime"])
        except KeyError:
            raise GraphError(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
            ) from None
        if "$filter" in query:
            raise GraphError(400, "ErrorInvalidUrlQueryFilter", "Filter is not supported here.")
        items = sorted(
            (e for e in box.calendars[calendar].values() if e.start < end and e.end > start),
            key=lambda e: (e.start, e.created),
        )
        path = (
            f"/users/{quote(box.address, safe='@')}/calendars/{quote(calendar, safe='')}"
            "/calendarView"
        )
        return self._page(items, path, query, headers, 10)

    def _get_schedule(self, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("schedules"), list):
            raise GraphError(400, "ErrorInvalidParameter", "schedules is required.")
        start, end = _to_utc(body.get("startTime")), _to_utc(body.get("endTime"))
        if end <= start or end - start > dt.timedelta(days=MAX_SCHEDULE_DAYS):
            raise GraphError(
                400,
                "ErrorInvalidTimeInterval",
                f"The time interval must be positive and at most {MAX_SCHEDULE_DAYS} days.",
            )
        zone, _ = _prefer(headers)
        interval = int(body.get("availabilityViewInterval", 30))
        values = []
        for address in body["schedules"]:
            box = self.mailboxes.get(str(address).lower())
            if box is None:
                values.append(
                    {
                        "scheduleId": address,
                        "error": {
                            "message": "The user or group was not found.",
                            "responseCode": "ErrorMailRecipientNotFound",
                        },
                    }
                )
                continue
            events = sorted(
                (
                    e
                    for e in box.calendars[box.default_calendar].values()
                    if e.start < end and e.end > start and not e.cancelled
                ),
                key=lambda e: e.start,
            )
            view = []
            slot = start
            rank = {"free": 0, "tentative": 1, "busy": 2, "oof": 3, "workingElsewhere": 4}
            while slot < end:
                slot_end = slot + dt.timedelta(minutes=interval)
                states = [
                    rank.get(e.show_as, 2) for e in events if e.start < slot_end and e.end > slot
                ]
                view.append(str(max(states, default=0)))
                slot = slot_end
            values.append(
                {
                    "scheduleId": address,
                    "availabilityView": "".join(view),
                    "scheduleItems": [
                        {
                            "isPrivate": False,
                            "status": e.show_as,
                            "subject": e.fields.get("subject", ""),
                            "location": (e.fields.get("location") or {}).get("displayName", ""),
                            "isMeeting": False,
                            "isRecurring": False,
                            "isException": False,
                            "isReminderSet": bool(e.fields.get("isReminderOn", True)),
                            "start": _render_time(e.start, zone),
                            "end": _render_time(e.end, zone),
                        }
                        for e in events
                    ],
                    "workingHours": {
                        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                        "startTime": "08:00:00.0000000",
                        "endTime": "17:00:00.0000000",
                        "timeZone": {"name": "UTC"},
                    },
                }
            )
        return {"value": values}

    # --- $batch ---

    def batch(self, body: Any, headers: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return 400, {}, GraphError(400, "BadRequest", "Invalid batch payload format.").body()
        if len(requests) > MAX_BATCH:
            return (
                400,
                {},
                GraphError(
                    400,
                    "BadRequest",
                    f"The number of requests in a batch exceeds the limit of {MAX_BATCH}.",
                ).body(),
            )
        ids = [str(r.get("id")) for r in requests if isinstance(r, dict)]
        if len(set(ids)) != len(requests):
            return (
                400,
                {},
                GraphError(400, "BadRequest", "Batch request ids must be unique.").body(),
            )

        def run(sub: dict[str, Any]) -> dict[str, Any]:
            sub_headers = {k.lower(): str(v) for k, v in (sub.get("headers") or {}).items()}
            with self.lock:
                self.sub_requests += 1
            fault = self._take_fault(self._sub_faults, str(sub.get("method")), str(sub.get("url")))
            if fault is not None:
                err = GraphError(
                    fault.status,
                    fault.code
                    or ("TooManyRequests" if fault.status == 429 else "ServiceUnavailable"),
                    fault.message or "Too many requests.",
                    {"Retry-After": fault.retry_after} if fault.retry_after else {},
                )
                status, out_headers, out = err.status, err.headers, err.body()
            else:
                url = str(sub.get("url", ""))
                status, out_headers, out = self.operation(
                    str(sub.get("method", "GET")).upper(),
                    url if url.startswith("/") else "/" + url,
                    sub_headers,
                    sub.get("body"),
                )
            reply: dict[str, Any] = {
                "id": str(sub.get("id")),
                "status": status,
                "headers": {"Content-Type": "application/json", **out_headers},
            }
            if out is not None:
                reply["body"] = out
            return reply

        with ThreadPoolExecutor(BATCH_PARALLELISM) as pool:
            replies = list(pool.map(run, requests))
        # Graph does not promise the order of responses; clients must match ids.
        replies.reverse()
        return 200, {}, {"responses": replies}


def _query_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00")))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # Graph reads an offset-less value as UTC
    return parsed.astimezone(UTC)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeGraph, context: ssl.SSLContext) -> None:
        self.fake = fake
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK cost
        # 40 ms a response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake happens in the handler's thread, so one slow client cannot stall accept.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped and timed-out connections are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if not path.startswith(GRAPH_PREFIX + "/"):
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                status, out_headers, out = fake.login(method, path, form)
                self._send(status, out_headers, out)
                return
            with fake.lock:
                fake.graph_requests += 1
            fault = fake._take_fault(fake._faults, method, path)
            denied = fake.authenticate(headers.get("authorization"))
            if denied is not None:
                self._send(denied.status, denied.headers, denied.body())
                return
            if fault is not None and fault.kind == "status":
                err = GraphError(
                    fault.status,
                    fault.code
                    or {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
                        fault.status, "generalException"
                    ),
                    fault.message or "Injected failure.",
                    {"Retry-After": fault.retry_after} if fault.retry_after else {},
                )
                self._send(err.status, err.headers, err.body())
                return
            if fault is not None and fault.kind == "drop":
                self._drop()
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            body = json.loads(raw) if raw else None
            if path == GRAPH_PREFIX + "/$batch" and method == "POST":
                with fake.lock:
                    fake.batch_requests += 1
                status, out_headers, out = fake.batch(body, headers)
            else:
                status, out_headers, out = fake.operation(method, self.path, headers, body)
            if fault is not None and fault.kind == "drop_after":
                self._drop()  # it took effect, but the client never hears so
                return
            self._send(status, out_headers, out)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


__all__ = [
    "ClientCertificate",
    "FakeEvent",
    "FakeGraph",
    "GraphError",
    "TlsMaterial",
    "client_certificate",
    "tls_material",
]
