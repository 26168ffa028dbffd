"""Calendly webhook subscriptions (API v2): invitee.created and invitee.canceled.

Documented contract followed here:

- Signature: https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures
  `Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex>`, where v1 is
  HMAC-SHA256(signing key, f"{t}.{raw body}") in hex. Calendly's example refuses timestamps
  older than three minutes; the window is a constructor parameter, applied both ways.
- Reschedules: https://developer.calendly.com/docs/api-guides/see-how-webhook-payloads-change-when-invitees-reschedule-events
  A reschedule sends invitee.canceled for the old invitee (`rescheduled: true`, `new_invitee`)
  and invitee.created for a new one (`old_invitee`). The two become ONE reschedule: the
  created half is a Change keyed by the old invitee URI that re-keys the job to the new one,
  the canceled half is an Ignore. Either may arrive first; the intake's store keeps both.
- Payload (the Invitee resource plus `scheduled_event`), see
  https://developer.calendly.com/api-docs/calendly-api/webhooks/get-sample-webhook-data

Calendly sends no delivery id, so the event id is the event name, the invitee URI and the
event's own `created_at`: identical on every redelivery, distinct for the two halves of a
reschedule.

Mapping: the invitee URI is the job's source id; the scheduled event's name is the job type;
the host (`event_memberships[].user_email`, first one we know) is the technician; the address
comes from an in-person / ask-invitee / custom location, else from an answer to a question
about the address; the invitee's name, e-mail and SMS number are the customer; the answers
to the booking questions become the notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import SecretStr

from fieldsync.inputs import AppointmentInput, FieldError
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Change, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    SignatureError,
    WebhookRequest,
    WebhookSource,
    signatures_match,
)

SIGNATURE_HEADER = "Calendly-Webhook-Signature"
CREATED = "invitee.created"
CANCELED = "invitee.canceled"
# Location kinds whose `location` text is where the technician goes; the others are phone
# numbers or meeting links.
_ADDRESS_LOCATIONS = frozenset({"physical", "ask_invitee", "custom"})

# Our model's field -> where it came from in the Calendly payload, for error messages.
_NAMES: Mapping[str, str] = {
    "source_id": "payload.uri",
    "job_type": "payload.scheduled_event.name",
    "start": "payload.scheduled_event.start_time",
    "end": "payload.scheduled_event.end_time",
    "customer_name": "payload.name",
    "customer_email": "payload.email",
    "customer_phone": "payload.text_reminder_number",
    "address": "payload.scheduled_event.location",
    "notes": "payload.questions_and_answers",
}


class CalendlySource(WebhookSource):
    name: ClassVar[str] = "calendly"

    def __init__(
        self, signing_key: str | SecretStr, *, tolerance: timedelta = timedelta(minutes=3)
    ) -> None:
        self._key = s.secret_bytes(signing_key)
        self.tolerance = tolerance

    def __repr__(self) -> str:
        return f"CalendlySource(tolerance={self.tolerance})"

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        header = s.require_header(request, SIGNATURE_HEADER)
        timestamp, signatures = _parse_signature(header)
        sent_at = s.unix_time(timestamp, SIGNATURE_HEADER)
        expected = s.hmac_sha256(self._key, timestamp.encode() + b"." + request.body).hex()
        if not any(signatures_match(expected, given.lower()) for given in signatures):
            raise SignatureError(
                f"the {SIGNATURE_HEADER} v1 signature does not match the body "
                "(wrong signing key, or the body was altered)"
            )
        # After the signature: only a genuine timestamp makes "too old" a meaningful answer.
        s.check_window(sent_at, request, self.tolerance, SIGNATURE_HEADER)

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        event = s.json_object(s.parse_json(request.body), None)
        name = s.text(event, "event", "event")
        invitee = s.json_object(event.get("payload"), "payload")
        uri = s.text(invitee, "uri", "payload.uri")
        created_at = s.text(event, "created_at", "created_at", required=False)
        return s.bounded_id(name, uri, created_at) if created_at else s.bounded_id(name, uri)

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        event = s.json_object(s.parse_json(request.body), None)
        name = s.text(event, "event", "event")
        if name not in (CREATED, CANCELED):
            return [Ignore(f"Calendly event {name!r} does not book, move or cancel a job")]
        invitee = s.json_object(event.get("payload"), "payload")
        uri = s.text(invitee, "uri", "payload.uri")
        if name == CANCELED:
            return [_canceled(invitee, uri)]
        old = s.text(invitee, "old_invitee", "payload.old_invitee", required=False)
        if old:
            return [_rescheduled(invitee, old, uri, directory)]
        return [Book(_booking(invitee, uri, directory))]


def _parse_signature(header: str) -> tuple[str, list[str]]:
    timestamp = ""
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not value.strip():
            raise SignatureError(
                f"the {SIGNATURE_HEADER} header is malformed: expected 't=<unix time>,v1=<hex>'"
            )
        if key == "t":
            timestamp = value.strip()
        elif key == "v1":
            signatures.append(value.strip())
    if not timestamp:
        raise SignatureError(f"the {SIGNATURE_HEADER} header has no timestamp (t=)")
    if not signatures:
        raise SignatureError(f"the {SIGNATURE_HEADER} header has no v1 signature")
    return timestamp, signatures


def _canceled(invitee: Mapping[str, Any], uri: str) -> Command:
    if invitee.get("rescheduled") is True:
        new = s.text(invitee, "new_invitee", "payload.new_invitee", required=False)
        target = f" to {new}" if new else ""
        return Ignore(
            f"the cancel half of a Calendly reschedule{target}; its invitee.created moves the job"
        )
    reason = ""
    cancellation = invitee.get("cancellation")
    if isinstance(cancellation, dict):
        reason = s.text(cancellation, "reason", "payload.cancellation.reason", required=False)
    return Cancel(AppointmentRef(source="calendly", source_id=uri), reason=reason)


def _scheduled_event(invitee: Mapping[str, Any]) -> dict[str, Any]:
    return s.json_object(invitee.get("scheduled_event"), "payload.scheduled_event")


def _times(event: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start_field, end_field = _NAMES["start"], _NAMES["end"]
    start = s.aware_time(s.text(event, "start_time", start_field), start_field)
    end = s.aware_time(s.text(event, "end_time", end_field), end_field)
    s.check_order(start, end, end_field)
    return start, end


def _host(event: Mapping[str, Any], directory: Directory) -> str:
    field = "payload.scheduled_event.event_memberships"
    members = event.get("event_memberships")
    if not isinstance(members, list):
        raise PayloadError([FieldError(field, "is missing: the event names no host")])
    emails = [m["user_email"] for m in members if isinstance(m, dict) and m.get("user_email")]
    return s.technician(directory, [e for e in emails if isinstance(e, str)], field)


def _rescheduled(invitee: Mapping[str, Any], old: str, uri: str, directory: Directory) -> Command:
    event = _scheduled_event(invitee)
    start, end = _times(event)
    values = {"start": start, "end": end, "technician_id": _host(event, directory)}
    return Change(
        ref=AppointmentRef(source="calendly", source_id=old),
        change=s.change(values, _NAMES),
        new_source_id=uri,
    )


def _answers(invitee: Mapping[str, Any]) -> list[tuple[str, str]]:
    items = invitee.get("questions_and_answers")
    if not isinstance(items, list):
        return []
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, dict):
            question, answer = item.get("question"), item.get("answer")
            if isinstance(question, str) and isinstance(answer, str) and answer.strip():
                pairs.append((question.strip(), answer.strip()))
    return pairs


def _address(event: Mapping[str, Any], answers: list[tuple[str, str]]) -> str:
    location = event.get("location")
    kind = ""
    if isinstance(location, dict):
        kind = str(location.get("type") or "")
        place = location.get("location")
        if kind in _ADDRESS_LOCATIONS and isinstance(place, str) and place.strip():
            return place.strip()
    for question, answer in answers:
        if "address" in question.lower():
            return answer
    detail = f" (location type {kind!r})" if kind else ""
    raise PayloadError(
        [
            FieldError(
                _NAMES["address"],
                f"gives no street address{detail}: use an in-person location, or ask the "
                "invitee for the address",
            )
        ]
    )


def _booking(invitee: Mapping[str, Any], uri: str, directory: Directory) -> AppointmentInput:
    event = _scheduled_event(invitee)
    start, end = _times(event)
    answers = _answers(invitee)
    data = {
        "source": "calendly",
        "source_id": uri,
        "technician_id": _host(event, directory),
        "job_type": s.text(event, "name", _NAMES["job_type"]),
        "start": start,
        "end": end,
        "customer_name": s.text(invitee, "name", _NAMES["customer_name"]),
        "customer_email": s.text(invitee, "email", _NAMES["customer_email"], required=False),
        "customer_phone": s.text(
            invitee, "text_reminder_number", _NAMES["customer_phone"], required=False
        ),
        "address": _address(event, answers),
        "notes": "\n".join(f"{q}: {a}" for q, a in answers),
    }
    return s.booking(data, _NAMES)
