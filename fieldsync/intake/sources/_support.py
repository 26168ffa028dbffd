"""What every platform source needs: signature checks, replay windows, payload reading, the
validation gate, technician lookup, and platform API reads behind our HTTP policy client.

Messages raised from here never contain a secret or an expected signature: they say which
header or field is wrong and how, so an operator can fix the setup from the log alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr, ValidationError

from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    TransientError,
)
from connectors.http import PolicyClient
from fieldsync.inputs import AppointmentInput, FieldError, field_errors, show
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    SignatureError,
    UpstreamUnavailable,
    WebhookRequest,
    signatures_match,
)
from fieldsync.store.changes import AppointmentChange

# The intake stores event ids in a String(300) column; longer ids are shortened to a digest.
_EVENT_ID_LIMIT = 300


# --- signatures -----------------------------------------------------------------------------


def secret_bytes(secret: str | SecretStr) -> bytes:
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not value:
        raise ValueError("the signing secret must not be empty")
    return value.encode()


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def matches_hmac(digest: bytes, given: str) -> bool:
    """`given` is `digest` in hex or base64; for platforms whose encoding is not documented.

    Both spell the same HMAC, so accepting either lets no forged request through.
    """
    hex_match = signatures_match(digest.hex(), given.lower())
    return signatures_match(b64(digest), given) or hex_match


def require_header(request: WebhookRequest, name: str) -> str:
    value = request.header(name)
    if value is None or not value.strip():
        raise SignatureError(f"the {name} header is missing")
    return value.strip()


def check_window(
    sent_at: datetime, request: WebhookRequest, tolerance: timedelta, header: str
) -> None:
    """Refuse a timestamp outside `tolerance` of our receipt time, either way.

    Both directions matter: an old timestamp is a replay, one far ahead means a signature
    minted for later, or a clock so wrong that the window means nothing.
    """
    skew = (request.received_at - sent_at).total_seconds()
    limit = tolerance.total_seconds()
    if skew > limit:
        raise SignatureError(
            f"the {header} timestamp is {skew:.0f} s old, more than the {limit:.0f} s "
            "allowed (a replay, or a delivery held up too long)"
        )
    if -skew > limit:
        raise SignatureError(
            f"the {header} timestamp is {-skew:.0f} s in the future, more than the "
            f"{limit:.0f} s allowed (check the clocks)"
        )


def unix_time(text: str, header: str, *, milliseconds: bool = False) -> datetime:
    stripped = text.strip()
    if not stripped.isdigit():
        raise SignatureError(f"the {header} timestamp {show(text, 40)} is not a Unix time")
    value = int(stripped)
    try:
        return datetime.fromtimestamp(value / 1000 if milliseconds else value, UTC)
    except (OverflowError, OSError, ValueError):
        raise SignatureError(f"the {header} timestamp {show(text, 40)} is out of range") from None


# --- payloads -------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None


def json_object(value: Any, field: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        what = "the body" if field is None else f"'{field}'"
        raise PayloadError([FieldError(field, f"{what} is not a JSON object")])
    return value


def text(obj: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str:
    """A string (or number) member as stripped text; '' when optional and absent."""
    value = obj.get(key)
    if isinstance(value, bool) or value is None or value == "":
        if required:
            raise PayloadError([FieldError(field, "is required but missing")])
        return ""
    if isinstance(value, str | int):
        return str(value).strip()
    raise PayloadError([FieldError(field, f"{show(value)} is not text")])


def bounded_id(*parts: str) -> str:
    """Parts joined into an event id; an id too long to store becomes a stable digest."""
    joined = ":".join(parts)
    if len(joined) <= _EVENT_ID_LIMIT:
        return joined
    return f"{parts[0][:40]}:sha256:{hashlib.sha256(joined.encode()).hexdigest()}"


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


# --- the validation gate --------------------------------------------------------------------


def _renamed(errors: Iterable[FieldError], names: Mapping[str, str]) -> list[FieldError]:
    # The platform's own field names: the person fixing a payload reads the platform's docs.
    return [FieldError(names.get(e.field, e.field) if e.field else None, e.message) for e in errors]


def booking(data: Mapping[str, Any], names: Mapping[str, str]) -> AppointmentInput:
    """`data` through the same gate as every other intake; errors name the platform's fields."""
    try:
        return AppointmentInput.model_validate(dict(data))
    except ValidationError as exc:
        raise PayloadError(_renamed(field_errors(exc), names)) from None


def change(values: Mapping[str, Any], names: Mapping[str, str]) -> AppointmentChange:
    try:
        return AppointmentChange.model_validate(dict(values))
    except ValidationError as exc:
        raise PayloadError(_renamed(field_errors(exc), names)) from None


def aware_time(value: str, field: str) -> datetime:
    """A platform date-time that must carry its offset (never guessed)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(
            [FieldError(field, f"{show(value)} is not an ISO 8601 date-time")]
        ) from None
    if moment.tzinfo is None:
        raise PayloadError([FieldError(field, f"{show(value)} has no UTC offset")])
    return moment


def check_order(start: datetime, end: datetime, end_field: str) -> None:
    if end <= start:
        raise PayloadError(
            [FieldError(end_field, f"{show(end)} is not after the start {show(start)}")]
        )


def technician(directory: Directory, emails: Iterable[str], field: str) -> str:
    """The first of `emails` that names one of our technicians."""
    tried: list[str] = []
    for email in emails:
        if not email.strip():
            continue
        tried.append(email.strip())
        found = directory.technician_by_email(email.strip().lower())
        if found is not None:
            return found
    if not tried:
        raise PayloadError([FieldError(field, "names no host, so the job has no technician")])
    listed = ", ".join(show(e) for e in tried)
    noun = (
        "is not the e-mail of a known technician"
        if len(tried) == 1
        else "are not known technicians"
    )
    raise PayloadError([FieldError(field, f"{listed} {noun}")])


# --- platform API reads ---------------------------------------------------------------------


class BasicAuth:
    """HTTP Basic credentials for PolicyClient; a refused key cannot be refreshed."""

    def __init__(self, platform: str, username: str, password: SecretStr) -> None:
        token = b64(f"{username}:{password.get_secret_value()}".encode())
        self._header = f"Basic {token}"
        self._secrets = (password.get_secret_value(), token)
        self._platform = platform

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}

    def refresh(self) -> None:
        raise AuthError("the API refused the credentials", platform=self._platform, status=401)

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def __repr__(self) -> str:
        return "BasicAuth(***)"


class BearerAuth:
    """A long-lived API token (HubSpot private app, Jobber/ServiceTitan access token)."""

    def __init__(self, platform: str, token: SecretStr, header: str = "Authorization") -> None:
        self._token = token
        self._header = header
        self._platform = platform

    def headers(self) -> dict[str, str]:
        value = self._token.get_secret_value()
        return {self._header: f"Bearer {value}" if self._header == "Authorization" else value}

    def refresh(self) -> None:
        raise AuthError("the API refused the access token", platform=self._platform, status=401)

    def secrets(self) -> tuple[str, ...]:
        return (self._token.get_secret_value(),)

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def fetch_json(
    client: PolicyClient,
    method: str,
    url: str,
    *,
    missing: FieldError | None,
    **kwargs: Any,
) -> Any:
    """One platform API call, its failures sorted the way the intake contract needs.

    Gone (404/410) means the event points at something the platform no longer has: the body
    is dead-lettered (PayloadError with `missing`), or, when `missing` is None, the answer is
    None for the caller to decide. Everything that may heal on its own or with an operator's
    fix (timeouts, 5xx, 429, refused credentials) is UpstreamUnavailable, so the request is
    kept and resolved later rather than lost.
    """
    try:
        response = client.request(method, url, **kwargs)
    except NotFoundError:
        if missing is None:
            return None
        raise PayloadError([missing]) from None
    except (TransientError, AuthError) as exc:
        raise UpstreamUnavailable(str(exc)) from exc
    except ConnectorError as exc:
        # The platform refused this exact request (other 4xx): retrying cannot help.
        field = missing.field if missing is not None else None
        raise PayloadError([FieldError(field, f"the platform refused it: {exc}")]) from exc
    try:
        return response.json()
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UpstreamUnavailable(
            f"{client.platform}: {method} answered {response.status_code} without JSON"
        ) from None


BASE64_SHA256_LENGTH = 44  # base64 of a 32-byte digest


def verify_body_hmac_b64(
    request: WebhookRequest, header: str, key: bytes, secret_name: str
) -> None:
    """The scheme Acuity and Jobber share: `header` holds base64(HMAC-SHA256(key, raw body)).
    `secret_name` says which secret to check in the mismatch message (never its value)."""
    given = require_header(request, header)
    if len(given) != BASE64_SHA256_LENGTH or not given.endswith("="):
        raise SignatureError(
            f"the {header} header is malformed: expected a base64 HMAC-SHA256 "
            f"({BASE64_SHA256_LENGTH} characters)"
        )
    if not signatures_match(b64(hmac_sha256(key, request.body)), given):
        raise SignatureError(
            f"the {header} signature does not match the body "
            f"(wrong {secret_name}, or the body was altered)"
        )
