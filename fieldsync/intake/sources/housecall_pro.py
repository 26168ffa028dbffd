"""Housecall Pro job webhooks. PARTLY UNVERIFIED: read this before enabling the source.

No official Housecall Pro webhook reference was reachable while this was written; what is
known comes from secondary sources:

- Webhooks exist for customer, estimate, invoice, job and lead events (MAX plan only), and
  each comes with a signing secret for verifying payloads
  (https://rollout.com/integration-guides/housecall-pro/api-essentials). The API base is
  https://api.housecallpro.com (https://docs.withampersand.com/provider-guides/housecallPro).
- The Job fields read here (id, description, notes, work_status with values such as
  scheduled / in_progress / complete / user_canceled / pro_canceled, schedule.scheduled_start
  / scheduled_end, customer, address, assigned_employees) follow the public API's Job object
  as modelled at https://raw.githubusercontent.com/api-evangelist/housecall-pro/refs/heads/main/json-schema/housecall-pro-job-schema.json

Assumptions to check against a real delivery before going live:

- The signature scheme. Implemented: `Api-Timestamp` (Unix seconds, or milliseconds) and
  `Api-Signature` = HMAC-SHA256(signing secret, f"{timestamp}.{raw body}"), hex (base64 of
  the same digest is accepted too: both encode the same HMAC, so this adds no way in).
  Timestamps more than `tolerance` away from receipt are refused.
- The envelope: `{"event": "job.scheduled", "job": {<Job object>}, ...}`, the Job embedded
  in full, so no API call is made.
- That the Job carries `updated_at`; the event id is event, job id and `updated_at` (or a
  body digest when it is absent), stable on every redelivery of the same event.

Mapping: job.* events whose job is scheduled (or in progress / completed) become a Book of
the job as sent (an upsert); canceled or deleted jobs, and jobs that lost their schedule,
become Cancel; all other events are Ignored. The technician is the first assigned employee
whose e-mail is ours; an unassigned job is booked unassigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import SecretStr

from fieldsync.domain import AppointmentStatus
from fieldsync.inputs import AppointmentInput
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    SignatureError,
    WebhookRequest,
    WebhookSource,
)

SIGNATURE_HEADER = "Api-Signature"
TIMESTAMP_HEADER = "Api-Timestamp"
_CANCEL_EVENTS = frozenset({"job.canceled", "job.deleted"})
_CANCELED = frozenset({"user_canceled", "pro_canceled", "canceled"})
_UNSCHEDULED = frozenset({"unscheduled", "needs_scheduling"})
_STATUS = {
    "scheduled": AppointmentStatus.SCHEDULED,
    "in_progress": AppointmentStatus.IN_PROGRESS,
    "complete": AppointmentStatus.COMPLETED,
    "complete_rated": AppointmentStatus.COMPLETED,
    "complete_unrated": AppointmentStatus.COMPLETED,
    "completed_unrated": AppointmentStatus.COMPLETED,
}
_MILLISECONDS_AFTER = 10**11  # a Unix time this large can only be in milliseconds

_NAMES: Mapping[str, str] = {
    "job_type": "job.description",
    "start": "job.schedule.scheduled_start",
    "end": "job.schedule.scheduled_end",
    "customer_name": "job.customer",
    "customer_email": "job.customer.email",
    "customer_phone": "job.customer.mobile_number",
    "address": "job.address",
    "notes": "job.notes",
}


class HousecallProSource(WebhookSource):
    name: ClassVar[str] = "housecallpro"

    def __init__(
        self, signing_secret: str | SecretStr, *, tolerance: timedelta = timedelta(minutes=5)
    ) -> None:
        self._key = s.secret_bytes(signing_secret)
        self.tolerance = tolerance

    def __repr__(self) -> str:
        return f"HousecallProSource(tolerance={self.tolerance})"

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        given = s.require_header(request, SIGNATURE_HEADER)
        timestamp = s.require_header(request, TIMESTAMP_HEADER)
        if not timestamp.isdigit():
            raise SignatureError(f"the {TIMESTAMP_HEADER} header is not a Unix time")
        sent_at = s.unix_time(
            timestamp, TIMESTAMP_HEADER, milliseconds=int(timestamp) > _MILLISECONDS_AFTER
        )
        if len(given) not in (44, 64):
            raise SignatureError(
                f"the {SIGNATURE_HEADER} header is malformed: expected an HMAC-SHA256 in hex "
                "(64 characters) or base64 (44)"
            )
        digest = s.hmac_sha256(self._key, timestamp.encode() + b"." + request.body)
        if not s.matches_hmac(digest, given):
            raise SignatureError(
                f"the {SIGNATURE_HEADER} signature does not match "
                "(wrong signing secret, or the body or timestamp was altered)"
            )
        s.check_window(sent_at, request, self.tolerance, TIMESTAMP_HEADER)

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        event, job = _envelope(request.body)
        if job is None:
            return s.bounded_id(event, s.body_digest(request.body))
        job_id = s.text(job, "id", "job.id")
        version = s.text(job, "updated_at", "job.updated_at", required=False)
        return s.bounded_id(event, job_id, version or s.body_digest(request.body))

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        event, job = _envelope(request.body)
        if job is None or not event.startswith("job."):
            return [Ignore(f"Housecall Pro event {event!r} is not about a job")]
        job_id = s.text(job, "id", "job.id")
        ref = AppointmentRef(source="housecallpro", source_id=job_id)
        status = _work_status(job)
        if event in _CANCEL_EVENTS or status in _CANCELED:
            return [Cancel(ref, reason=f"{event} in Housecall Pro")]
        schedule = job.get("schedule")
        start = schedule.get("scheduled_start") if isinstance(schedule, dict) else None
        if status in _UNSCHEDULED or not start:
            return [Cancel(ref, reason="job no longer scheduled in Housecall Pro")]
        return [Book(_booking(job_id, job, directory))]


def _envelope(body: bytes) -> tuple[str, dict[str, Any] | None]:
    root = s.json_object(s.parse_json(body), None)
    event = s.text(root, "event", "event")
    job = root.get("job")
    return event, s.json_object(job, "job") if job is not None else None


def _work_status(job: Mapping[str, Any]) -> str:
    raw = s.text(job, "work_status", "job.work_status", required=False)
    return raw.strip().lower().replace(" ", "_")


def _technician(job: Mapping[str, Any], directory: Directory) -> str | None:
    employees = job.get("assigned_employees")
    emails = [
        e["email"]
        for e in (employees if isinstance(employees, list) else [])
        if isinstance(e, dict) and isinstance(e.get("email"), str)
    ]
    return s.technician(directory, emails, "job.assigned_employees") if emails else None


def _address(job: Mapping[str, Any]) -> str:
    address = job.get("address")
    if not isinstance(address, dict):
        return ""
    keys = ("street", "street_line_2", "city", "state", "zip", "country")
    return ", ".join(str(address[k]).strip() for k in keys if address.get(k))


def _customer(job: Mapping[str, Any]) -> dict[str, str]:
    customer = job.get("customer")
    c = customer if isinstance(customer, dict) else {}
    name = " ".join(str(c.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    phones = [c.get(k) for k in ("mobile_number", "home_number", "work_number")]
    return {
        "customer_name": name or str(c.get("company") or "").strip(),
        "customer_email": str(c.get("email") or "").strip(),
        "customer_phone": next((str(p).strip() for p in phones if p), ""),
    }


def _notes(job: Mapping[str, Any]) -> str:
    notes = job.get("notes")
    if isinstance(notes, str):
        return notes.strip()
    items = notes if isinstance(notes, list) else []
    texts = [str(n.get("content") or "").strip() for n in items if isinstance(n, dict)]
    return "\n".join(t for t in texts if t)


def _job_type(job: Mapping[str, Any]) -> str:
    fields = job.get("job_fields")
    kind = fields.get("job_type") if isinstance(fields, dict) else None
    if isinstance(kind, dict) and kind.get("name"):
        return str(kind["name"]).strip()
    return s.text(job, "description", _NAMES["job_type"])


def _booking(job_id: str, job: Mapping[str, Any], directory: Directory) -> AppointmentInput:
    schedule = s.json_object(job.get("schedule"), "job.schedule")
    start = s.aware_time(s.text(schedule, "scheduled_start", _NAMES["start"]), _NAMES["start"])
    end = s.aware_time(s.text(schedule, "scheduled_end", _NAMES["end"]), _NAMES["end"])
    s.check_order(start, end, _NAMES["end"])
    data: dict[str, Any] = {
        "source": "housecallpro",
        "source_id": job_id,
        "technician_id": _technician(job, directory),
        "status": _STATUS.get(_work_status(job), AppointmentStatus.SCHEDULED),
        "job_type": _job_type(job),
        "start": start,
        "end": end,
        "address": _address(job),
        "notes": _notes(job),
        **_customer(job),
    }
    return s.booking(data, _NAMES)
