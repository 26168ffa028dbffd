"""Acuity Scheduling webhooks: form-encoded notices, details fetched from the Acuity API.

Documented contract followed here (https://developers.acuityscheduling.com/docs/webhooks):

- The body is application/x-www-form-urlencoded: `action` (scheduled, rescheduled, canceled,
  changed, order.completed), `id` (the appointment), `calendarID`, `appointmentTypeID`.
  Dynamic webhooks are subscribed as `appointment.scheduled` etc.; that prefix is accepted.
- `X-Acuity-Signature` is base64(HMAC-SHA256(API key, raw body)). Acuity signs no timestamp,
  so there is no replay window to check: a replayed notice can only make us re-read the
  appointment's current state, which is harmless.
- The notice carries no details; they come from GET /api/v1/appointments/{id}
  (https://developers.acuityscheduling.com/reference/get-appointments-id) with HTTP Basic
  auth, user id : API key (https://developers.acuityscheduling.com/docs/quick-start-1).

Choices:

- scheduled / rescheduled / changed become one `Book` carrying the appointment as Acuity
  holds it now: Book is an upsert on (acuity, id), so the fetched full state is always right,
  whatever happened in between. An appointment that reads `canceled: true` becomes `Cancel`.
  canceled becomes `Cancel` without a fetch, so cancellations work while the API is down.
- Technician: the appointment names its calendar (`calendarID`); the calendar's e-mail
  (GET /api/v1/calendars, which may list several, comma-separated) is looked up in our
  directory. The calendar list is cached for `calendar_ttl` and re-read once when an unknown
  calendar shows up.
- Event id: Acuity sends no delivery id, and every notice about one appointment looks the
  same (a second reschedule has the very body of the first). An id made of action, id and a
  body digest alone would make the intake drop that second reschedule as a "redelivery". As
  each command re-reads the current state, applying a true redelivery twice is harmless, so
  the id also carries the second the notice arrived: identical notices in the same second
  (a duplicate send) collapse, later ones are applied.
- API failures: timeouts, 5xx, 429 and refused credentials raise UpstreamUnavailable (the
  intake keeps the notice and retries); 404 for the appointment is a PayloadError on `id`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
from pydantic import SecretStr

from connectors.http import PolicyClient
from fieldsync.inputs import AppointmentInput, FieldError
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    WebhookRequest,
    WebhookSource,
)

SIGNATURE_HEADER = "X-Acuity-Signature"
DEFAULT_BASE_URL = "https://acuityscheduling.com"
_UPSERTS = frozenset({"scheduled", "rescheduled", "changed"})
_SIGNATURE_LENGTH = 44  # base64 of a 32-byte digest

_NAMES: Mapping[str, str] = {
    "source_id": "id",
    "job_type": "type",
    "start": "datetime",
    "duration_minutes": "duration",
    "customer_name": "firstName",
    "customer_email": "email",
    "customer_phone": "phone",
    "address": "location",
    "notes": "notes",
}


class AcuitySource(WebhookSource):
    name: ClassVar[str] = "acuity"
    resolves_later: ClassVar[bool] = True
    content_type: ClassVar[str] = "application/x-www-form-urlencoded"

    def __init__(
        self,
        user_id: str,
        api_key: str | SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_retries: int = 2,
        calendar_ttl: timedelta = timedelta(minutes=10),
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._key = s.secret_bytes(key)
        # Few retries: the platform waits on our answer; the intake retries later anyway.
        self._api = PolicyClient(
            "acuity",
            http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout),
            s.BasicAuth("acuity", user_id, key),
            max_retries=max_retries,
        )
        self._calendar_ttl = calendar_ttl.total_seconds()
        self._clock = clock
        self._calendars: dict[str, dict[str, Any]] = {}
        self._calendars_at: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AcuitySource(base_url={str(self._api.client.base_url)!r})"

    def close(self) -> None:
        self._api.close()

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        s.verify_body_hmac_b64(request, SIGNATURE_HEADER, self._key, "API key")

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        action, appointment_id = _notice(request.body)
        second = request.received_at.strftime("%Y%m%dT%H%M%SZ")
        return s.bounded_id(action, appointment_id, s.body_digest(request.body), second)

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        action, appointment_id = _notice(request.body)
        ref = AppointmentRef(source="acuity", source_id=appointment_id)
        if action == "canceled":
            return [Cancel(ref, reason="canceled in Acuity")]
        if action not in _UPSERTS:
            return [Ignore(f"Acuity action {action!r} does not book, move or cancel a job")]
        appointment = self._appointment(appointment_id)
        if appointment.get("canceled") is True:
            return [Cancel(ref, reason="canceled in Acuity")]
        technician = self._technician(appointment, directory)
        return [Book(_booking(appointment, appointment_id, technician))]

    # --- the Acuity API ---------------------------------------------------------------------

    def _appointment(self, appointment_id: str) -> dict[str, Any]:
        missing = FieldError("id", f"appointment {appointment_id} does not exist in Acuity")
        found = s.fetch_json(
            self._api, "GET", f"/api/v1/appointments/{appointment_id}", missing=missing
        )
        return s.json_object(found, "appointment")

    def _technician(self, appointment: Mapping[str, Any], directory: Directory) -> str:
        calendar_id = s.text(appointment, "calendarID", "calendarID")
        calendar = self._calendar(calendar_id)
        if calendar is None:
            raise PayloadError(
                [FieldError("calendarID", f"calendar {calendar_id} is not in the Acuity account")]
            )
        emails = str(calendar.get("email") or "").split(",")
        return s.technician(directory, emails, "calendarID")

    def _calendar(self, calendar_id: str) -> dict[str, Any] | None:
        with self._lock:
            stale = (
                self._calendars_at is None
                or self._clock() - self._calendars_at > self._calendar_ttl
            )
            if stale or calendar_id not in self._calendars:
                self._load_calendars()
            return self._calendars.get(calendar_id)

    def _load_calendars(self) -> None:
        listed = s.fetch_json(
            self._api,
            "GET",
            "/api/v1/calendars",
            missing=FieldError("calendarID", "the Acuity calendar list is not available"),
        )
        if not isinstance(listed, list):
            raise PayloadError([FieldError("calendarID", "Acuity's calendar list is not a list")])
        self._calendars = {str(c["id"]): c for c in listed if isinstance(c, dict) and "id" in c}
        self._calendars_at = self._clock()


def _notice(body: bytes) -> tuple[str, str]:
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError("the body is not form-encoded (action=...&id=...)") from None
    values = {key: items[0].strip() for key, items in form.items() if items}
    action = values.get("action", "").removeprefix("appointment.")
    if not action:
        raise PayloadError([FieldError("action", "is required but missing")])
    appointment_id = values.get("id", "")
    if not appointment_id.isdigit():
        raise PayloadError([FieldError("id", "is missing or not a numeric appointment id")])
    return action, appointment_id


def _form_answers(appointment: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    forms = appointment.get("forms")
    for form in forms if isinstance(forms, list) else []:
        values = form.get("values") if isinstance(form, dict) else None
        for item in values if isinstance(values, list) else []:
            if isinstance(item, dict):
                name, value = item.get("name"), item.get("value")
                if isinstance(name, str) and isinstance(value, str) and value.strip():
                    pairs.append((name.strip(), value.strip()))
    return pairs


def _address(appointment: Mapping[str, Any], answers: list[tuple[str, str]]) -> str:
    location = s.text(appointment, "location", "location", required=False)
    if location:
        return location
    for question, answer in answers:
        if "address" in question.lower():
            return answer
    raise PayloadError(
        [
            FieldError(
                "location",
                "is empty and no intake form answers an address question: a field job "
                "needs the address",
            )
        ]
    )


def _booking(
    appointment: Mapping[str, Any], appointment_id: str, technician: str
) -> AppointmentInput:
    answers = _form_answers(appointment)
    start: datetime = s.aware_time(s.text(appointment, "datetime", "datetime"), "datetime")
    first = s.text(appointment, "firstName", "firstName", required=False)
    last = s.text(appointment, "lastName", "lastName", required=False)
    notes = [s.text(appointment, "notes", "notes", required=False)]
    notes += [f"{q}: {a}" for q, a in answers]
    data = {
        "source": "acuity",
        "source_id": appointment_id,
        "technician_id": technician,
        "job_type": s.text(appointment, "type", "type"),
        "start": start,
        "duration_minutes": s.text(appointment, "duration", "duration"),
        "customer_name": f"{first} {last}".strip(),
        "customer_email": s.text(appointment, "email", "email", required=False),
        "customer_phone": s.text(appointment, "phone", "phone", required=False),
        "address": _address(appointment, answers),
        "notes": "\n".join(n for n in notes if n),
    }
    return s.booking(data, _NAMES)
