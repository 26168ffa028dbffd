"""HubSpot webhooks for meetings (CRM object type 0-47), details read from the CRM v3 API.

Documented contract followed here:

- Signature v3: https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
  (and the changelog https://developers.hubspot.com/changelog/introducing-version-3-of-webhook-signatures):
  `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI + body +
  timestamp)), where the timestamp is `X-HubSpot-Request-Timestamp` (milliseconds) exactly
  as sent; requests older than 5 minutes are refused (we refuse as far in the future too).
  The URI is the full public URL HubSpot posted to. Behind proxies the service cannot see it
  reliably, so it is configured (FIELDSYNC_HUBSPOT_WEBHOOK_URL); the characters HubSpot's
  guide lists are URL-decoded in it before signing. The method is always POST for webhooks.
- Payload: a JSON array of up to 100 events (`eventId`, `subscriptionId`, `portalId`,
  `occurredAt`, `subscriptionType` such as object.creation / object.propertyChange /
  object.deletion / object.restore, `objectTypeId`, `objectId`, `attemptNumber`, ...), see
  https://developers.hubspot.com/docs/guides/crm/private-apps/webhooks .
- Meeting details: GET /crm/v3/objects/meetings/{id}?properties=...&associations=contacts
  (https://developers.hubspot.com/docs/api/crm/meetings), the owner's e-mail from
  GET /crm/v3/owners/{id}, and the customer from the first associated contact
  (GET /crm/v3/objects/contacts/{id}), all with a private-app access token.

Choices:

- Which meetings are field jobs: those whose "Call and meeting type" (`hs_activity_type`) is
  one of `field_job_types` (default: "Field visit"). Any other meeting is Ignored, so sales
  calls never reach a technician's calendar. A field job whose type is later changed is also
  only Ignored (we cannot tell it was one); cancel it in HubSpot instead.
- A meeting event becomes a Book of the meeting's current state (an upsert), or Cancel when
  its outcome (`hs_meeting_outcome`) is CANCELED or the meeting was deleted. Several events
  about one meeting in a batch give one command. A meeting that no longer exists when read is
  Ignored: its own deletion event cancels it, and one vanished meeting must not dead-letter
  the rest of the batch.
- Technician: the meeting owner's e-mail; address: `hs_meeting_location`, else the contact's
  address; job type: the meeting title; notes: the meeting body and internal notes.
- Event id: HubSpot says `eventId` alone is not guaranteed unique, and `attemptNumber`
  changes on each retry, so the id is the batch's sorted `subscriptionId-eventId` pairs.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from connectors.http import PolicyClient
from fieldsync.inputs import AppointmentInput, FieldError
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    SignatureError,
    WebhookRequest,
    WebhookSource,
    signatures_match,
)

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
DEFAULT_BASE_URL = "https://api.hubapi.com"
MEETING_TYPE_ID = "0-47"
_SIGNATURE_LENGTH = 44
# The percent-escapes HubSpot's v3 guide says to decode in the URI before signing.
_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_MEETING_PROPERTIES = (
    "hs_meeting_title",
    "hs_meeting_start_time",
    "hs_meeting_end_time",
    "hs_meeting_location",
    "hs_meeting_outcome",
    "hs_activity_type",
    "hs_meeting_body",
    "hs_internal_meeting_notes",
    "hubspot_owner_id",
)
_CONTACT_PROPERTIES = ("firstname", "lastname", "email", "phone", "address", "city", "state", "zip")

_NAMES: Mapping[str, str] = {
    "job_type": "properties.hs_meeting_title",
    "start": "properties.hs_meeting_start_time",
    "end": "properties.hs_meeting_end_time",
    "address": "properties.hs_meeting_location",
    "customer_name": "contact.properties.firstname",
    "customer_email": "contact.properties.email",
    "customer_phone": "contact.properties.phone",
}


def decode_uri(uri: str) -> str:
    for escape, char in _DECODED.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


class HubSpotSource(WebhookSource):
    name: ClassVar[str] = "hubspot"
    resolves_later: ClassVar[bool] = True

    def __init__(
        self,
        client_secret: str | SecretStr,
        webhook_url: str,
        access_token: str | SecretStr,
        *,
        field_job_types: Iterable[str] = ("Field visit",),
        base_url: str = DEFAULT_BASE_URL,
        tolerance: timedelta = timedelta(minutes=5),
        timeout: float = 10.0,
        max_retries: int = 2,
        http: httpx.Client | None = None,
    ) -> None:
        self._key = s.secret_bytes(client_secret)
        self._uri = decode_uri(webhook_url.strip())
        token = access_token if isinstance(access_token, SecretStr) else SecretStr(access_token)
        self.field_job_types = frozenset(t.strip().lower() for t in field_job_types if t.strip())
        self.tolerance = tolerance
        self._api = PolicyClient(
            "hubspot",
            http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout),
            s.BearerAuth("hubspot", token),
            max_retries=max_retries,
        )
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HubSpotSource(webhook_url={self._uri!r})"

    def close(self) -> None:
        self._api.close()

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        given = s.require_header(request, SIGNATURE_HEADER)
        timestamp = s.require_header(request, TIMESTAMP_HEADER)
        sent_at = s.unix_time(timestamp, TIMESTAMP_HEADER, milliseconds=True)
        if len(given) != _SIGNATURE_LENGTH or not given.endswith("="):
            raise SignatureError(
                f"the {SIGNATURE_HEADER} header is malformed: expected a base64 HMAC-SHA256 "
                f"({_SIGNATURE_LENGTH} characters)"
            )
        message = b"POST" + self._uri.encode() + request.body + timestamp.encode()
        if not signatures_match(s.b64(s.hmac_sha256(self._key, message)), given):
            raise SignatureError(
                f"the {SIGNATURE_HEADER} signature does not match (wrong client secret, "
                "body altered, or FIELDSYNC_HUBSPOT_WEBHOOK_URL is not the URL HubSpot posts to)"
            )
        s.check_window(sent_at, request, self.tolerance, TIMESTAMP_HEADER)

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        keys = sorted({_event_key(event, i) for i, event in enumerate(_events(request.body))})
        return s.bounded_id("batch", ",".join(keys))

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        deleted: set[str] = set()
        meetings: dict[str, None] = {}  # ordered: one command per meeting, in arrival order
        ignored: list[Command] = []
        for i, event in enumerate(_events(request.body)):
            kind = s.text(event, "subscriptionType", f"[{i}].subscriptionType")
            type_id = s.text(event, "objectTypeId", f"[{i}].objectTypeId", required=False)
            if type_id != MEETING_TYPE_ID:
                ignored.append(Ignore(f"HubSpot {kind} on object type {type_id or '?'}"))
                continue
            meeting_id = s.text(event, "objectId", f"[{i}].objectId")
            meetings[meeting_id] = None
            if kind == "object.deletion":
                deleted.add(meeting_id)
        result = [self._meeting_command(m, m in deleted, directory) for m in meetings] + ignored
        return result or [Ignore("the HubSpot batch is empty")]

    def _meeting_command(self, meeting_id: str, deleted: bool, directory: Directory) -> Command:
        ref = AppointmentRef(source="hubspot", source_id=meeting_id)
        if deleted:
            return Cancel(ref, reason="meeting deleted in HubSpot")
        meeting = self._get(
            f"/crm/v3/objects/meetings/{quote(meeting_id)}",
            {"properties": ",".join(_MEETING_PROPERTIES), "associations": "contacts"},
        )
        if meeting is None:
            return Ignore(f"meeting {meeting_id} no longer exists in HubSpot")
        props = s.json_object(meeting.get("properties"), "properties")
        kind = s.text(props, "hs_activity_type", "properties.hs_activity_type", required=False)
        if kind.lower() not in self.field_job_types:
            return Ignore(
                f"meeting {meeting_id} is a {kind or 'untyped'!r} meeting, not a field job"
            )
        outcome = s.text(
            props, "hs_meeting_outcome", "properties.hs_meeting_outcome", required=False
        )
        if outcome.upper() == "CANCELED":
            return Cancel(ref, reason="meeting outcome set to canceled in HubSpot")
        owner = s.text(props, "hubspot_owner_id", "properties.hubspot_owner_id")
        technician = s.technician(directory, [self._owner_email(owner)], "hubspot_owner_id")
        contact = self._contact(meeting)
        return Book(_booking(meeting_id, props, contact, technician))

    # --- the HubSpot API --------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """An object, or None when HubSpot no longer has it."""
        found = s.fetch_json(self._api, "GET", path, missing=None, params=params)
        return None if found is None else s.json_object(found, path)

    def _owner_email(self, owner_id: str) -> str:
        with self._lock:
            cached = self._owners.get(owner_id)
        if cached is not None:
            return cached
        owner = self._get(f"/crm/v3/owners/{quote(owner_id)}")
        if owner is None:
            raise PayloadError(
                [FieldError("hubspot_owner_id", f"owner {owner_id} does not exist in HubSpot")]
            )
        email = s.text(owner, "email", "owner.email")
        with self._lock:
            self._owners[owner_id] = email
        return email

    def _contact(self, meeting: Mapping[str, Any]) -> dict[str, Any]:
        associations = meeting.get("associations")
        results: Any = None
        if isinstance(associations, dict) and isinstance(associations.get("contacts"), dict):
            results = associations["contacts"].get("results")
        ids = [r["id"] for r in results or [] if isinstance(r, dict) and r.get("id")]
        if not ids:
            raise PayloadError(
                [FieldError("associations.contacts", "the meeting has no contact (the customer)")]
            )
        contact = self._get(
            f"/crm/v3/objects/contacts/{quote(str(ids[0]))}",
            {"properties": ",".join(_CONTACT_PROPERTIES)},
        )
        if contact is None:
            raise PayloadError(
                [FieldError("associations.contacts", f"contact {ids[0]} does not exist")]
            )
        return s.json_object(contact.get("properties"), "contact.properties")


def _events(body: bytes) -> list[dict[str, Any]]:
    events = s.parse_json(body)
    if not isinstance(events, list):
        raise PayloadError("the body is not a JSON array of events")
    return [s.json_object(event, f"[{i}]") for i, event in enumerate(events)]


def _event_key(event: Mapping[str, Any], i: int) -> str:
    subscription = s.text(event, "subscriptionId", f"[{i}].subscriptionId")
    return f"{subscription}-{s.text(event, 'eventId', f'[{i}].eventId')}"


def _address(props: Mapping[str, Any], contact: Mapping[str, Any]) -> str:
    location = s.text(props, "hs_meeting_location", _NAMES["address"], required=False)
    if location:
        return location
    parts = [
        s.text(contact, key, f"contact.properties.{key}", required=False)
        for key in ("address", "city", "state", "zip")
    ]
    return ", ".join(p for p in parts if p)


def _plain(rich: str) -> str:
    """HubSpot keeps meeting notes as HTML; a technician's calendar wants the words."""
    lines = re.sub(r"<\s*(?:br|/p|/div|/li)\s*/?\s*>", "\n", rich, flags=re.IGNORECASE)
    words = html.unescape(re.sub(r"<[^>]+>", "", lines))
    return "\n".join(line.strip() for line in words.splitlines() if line.strip())


def _booking(
    meeting_id: str, props: Mapping[str, Any], contact: Mapping[str, Any], technician: str
) -> AppointmentInput:
    start = s.aware_time(s.text(props, "hs_meeting_start_time", _NAMES["start"]), _NAMES["start"])
    end = s.aware_time(s.text(props, "hs_meeting_end_time", _NAMES["end"]), _NAMES["end"])
    s.check_order(start, end, _NAMES["end"])
    first = s.text(contact, "firstname", "contact.properties.firstname", required=False)
    last = s.text(contact, "lastname", "contact.properties.lastname", required=False)
    notes = [
        _plain(s.text(props, key, f"properties.{key}", required=False))
        for key in ("hs_meeting_body", "hs_internal_meeting_notes")
    ]
    data = {
        "source": "hubspot",
        "source_id": meeting_id,
        "technician_id": technician,
        "job_type": s.text(props, "hs_meeting_title", _NAMES["job_type"]),
        "start": start,
        "end": end,
        "customer_name": f"{first} {last}".strip(),
        "customer_email": s.text(contact, "email", _NAMES["customer_email"], required=False),
        "customer_phone": s.text(contact, "phone", _NAMES["customer_phone"], required=False),
        "address": _address(props, contact),
        "notes": "\n".join(n for n in notes if n),
    }
    return s.booking(data, _NAMES)
