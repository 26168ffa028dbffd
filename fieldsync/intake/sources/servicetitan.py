"""ServiceTitan appointment webhooks (V2 webhooks, beta). PARTIAL AND UNVERIFIED.

Confirmed from ServiceTitan's documentation:

- V2 webhooks (https://developer-next.servicetitan.io/docs/webhooks): events are POSTed as
  JSON to the app's callback URL; an optional 32-64 character HMAC key lets the receiver
  compute "a hash of the payload using the shared secret (HMAC key)" and compare it "with
  the signature sent in the request header"; any answer other than 2xx is retried.
- The V2 FAQ (https://public-api-developer.st.dev/docs/faqs-v2-webhooks): retries at 10, 30,
  60 and 300 seconds; payload data models are aligned with the public API's models.

Not confirmed (the pages above do not show them) and therefore assumptions:

- The header name (default `X-ServiceTitan-Signature`, configurable) and the encoding of
  the HMAC-SHA256 of the raw body (hex and base64 are both accepted; they spell the same
  digest). No timestamp is documented, so there is no replay window.
- The envelope: `{"eventId", "eventType", "data": {<JPM Appointment>}}`, where the
  appointment has the JPM v2 model's `id`, `start`, `end` and `status` (Scheduled,
  Dispatched, InProgress, Hold, Done, Canceled), as modelled at
  https://raw.githubusercontent.com/api-evangelist/servicetitan/refs/heads/main/json-schema/servicetitan-appointment-schema.json
  The event id is `eventId` (a body digest when it is absent); retries should repeat it.

Scope: an appointment's data carries times and status but not the address, customer or
technician, which need four more ServiceTitan API reads (job, location, customer,
appointment assignments) that this source does not make yet. So it keeps jobs that are
already booked in step (a Change of start/end, or a Cancel) and refuses a new appointment
with a PayloadError, which dead-letters the body for replay once booking is added. Confirm
the assumptions with a ServiceTitan sandbox before enabling it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from fieldsync.inputs import FieldError
from fieldsync.intake.commands import AppointmentRef, Cancel, Change, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    SignatureError,
    WebhookRequest,
    WebhookSource,
)
from fieldsync.store.changes import AppointmentChange

DEFAULT_SIGNATURE_HEADER = "X-ServiceTitan-Signature"
_CREATED = ("created", "booked")
_GONE = ("canceled", "cancelled", "deleted")

_NAMES: Mapping[str, str] = {"start": "data.start", "end": "data.end"}


class ServiceTitanSource(WebhookSource):
    name: ClassVar[str] = "servicetitan"

    def __init__(
        self, hmac_key: str | SecretStr, *, signature_header: str = DEFAULT_SIGNATURE_HEADER
    ) -> None:
        self._key = s.secret_bytes(hmac_key)
        self.signature_header = signature_header

    def __repr__(self) -> str:
        return f"ServiceTitanSource(signature_header={self.signature_header!r})"

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        given = s.require_header(request, self.signature_header).removeprefix("sha256=")
        if len(given) not in (44, 64):
            raise SignatureError(
                f"the {self.signature_header} header is malformed: expected an HMAC-SHA256 in "
                "hex (64 characters) or base64 (44)"
            )
        if not s.matches_hmac(s.hmac_sha256(self._key, request.body), given):
            raise SignatureError(
                f"the {self.signature_header} signature does not match the body "
                "(wrong HMAC key, or the body was altered)"
            )

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        root = s.json_object(s.parse_json(request.body), None)
        event_id = s.text(root, "eventId", "eventId", required=False)
        return event_id or s.bounded_id("sha256", s.body_digest(request.body))

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        root = s.json_object(s.parse_json(request.body), None)
        kind = s.text(root, "eventType", "eventType")
        if "appointment" not in kind.lower():
            return [Ignore(f"ServiceTitan event {kind!r} is not about an appointment")]
        data = s.json_object(root.get("data"), "data")
        appointment_id = s.text(data, "id", "data.id")
        ref = AppointmentRef(source="servicetitan", source_id=appointment_id)
        status = s.text(data, "status", "data.status", required=False).lower()
        if status in _GONE or any(word in kind.lower() for word in _GONE):
            return [Cancel(ref, reason=f"{kind} in ServiceTitan")]
        if any(word in kind.lower() for word in _CREATED):
            raise PayloadError(
                [
                    FieldError(
                        "eventType",
                        f"{kind}: booking a new ServiceTitan appointment needs its job, "
                        "location, customer and technician from the ServiceTitan API, which "
                        "this source does not read yet; the body is kept for replay",
                    )
                ]
            )
        return [Change(ref=ref, change=_times(data))]


def _times(data: Mapping[str, Any]) -> AppointmentChange:
    start = s.aware_time(s.text(data, "start", _NAMES["start"]), _NAMES["start"])
    end = s.aware_time(s.text(data, "end", _NAMES["end"]), _NAMES["end"])
    s.check_order(start, end, _NAMES["end"])
    return s.change({"start": start, "end": end}, _NAMES)
