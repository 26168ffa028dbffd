"""Jobber webhooks for visits, details read from Jobber's GraphQL API.

Documented contract followed here:

- Webhooks: https://developer.getjobber.com/docs/using_jobbers_api/setting_up_webhooks
  The body is `{"data": {"webHookEvent": {"topic", "appId", "accountId", "itemId",
  "occurredAt"}}}` (apps created before Dec. 8, 2023 get `occuredAt`; both are read; apps
  created before Apr. 11, 2022 get a form-encoded body, which is not supported).
  `X-Jobber-Hmac-SHA256` is base64(HMAC-SHA256(app's OAuth client secret, raw body)). No
  timestamp is signed, so there is no replay window; `occurredAt` is inside the signed body
  and makes the event id, so a replay is a duplicate the intake ignores.
  Delivery is at-least-once; the event id (topic, itemId, occurredAt) is the same on every
  redelivery, as Jobber advises.
- Details: POST https://api.getjobber.com/api/graphql with `Authorization: Bearer <access
  token>` and the required `X-JOBBER-GRAPHQL-VERSION` header
  (https://developer.getjobber.com/docs/using_jobbers_api/api_versioning). The Visit fields
  used (startAt, endAt, title, instructions, assignedUsers, client, property, job) are those
  of Jobber's documented `Visit` type (https://developer.getjobber.com/docs). Throttling is
  HTTP 200 with a GraphQL error of code THROTTLED, or HTTP 429
  (https://developer.getjobber.com/docs/using_jobbers_api/api_rate_limits); both are
  retried, then UpstreamUnavailable.

Choices:

- VISIT_CREATE / VISIT_UPDATE become a Book of the visit's current state (an upsert);
  VISIT_DESTROY becomes Cancel; a visit that is no longer scheduled (startAt null) becomes
  Cancel. Other topics (JOB_*, CLIENT_*, APP_*) are Ignored.
- Technician: the first assigned user whose e-mail is one of ours; an unassigned visit is
  booked unassigned; assigned users none of whom we know are a PayloadError.
- Access tokens expire after 60 minutes. Pass a callable for `access_token` that returns a
  current one (it is called for every request); a plain token is for tests and scripts.

Jobber wants an answer within 1 second: the intake should answer after verify() and
event_id() and call commands() afterwards, since it makes an API call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from connectors.errors import AuthError
from connectors.http import Action, PolicyClient, StatusPolicy, json_body
from fieldsync.inputs import AppointmentInput, FieldError
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Command, Ignore
from fieldsync.intake.sources import _support as s
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    UpstreamUnavailable,
    WebhookRequest,
    WebhookSource,
)

SIGNATURE_HEADER = "X-Jobber-Hmac-SHA256"
DEFAULT_API_URL = "https://api.getjobber.com/api/graphql"
DEFAULT_API_VERSION = "2025-04-16"
_SIGNATURE_LENGTH = 44
_EVENT = "data.webHookEvent"
_UPSERTS = frozenset({"VISIT_CREATE", "VISIT_UPDATE"})

VISIT_QUERY = """
query FieldsyncVisit($id: EncodedId!) {
  visit(id: $id) {
    id
    title
    instructions
    startAt
    endAt
    assignedUsers(first: 10) { nodes { email { raw } } }
    client {
      name
      emails { address primary }
      phones { number primary }
    }
    property { address { street1 street2 city province postalCode country } }
    job { jobNumber title instructions }
  }
}
""".strip()

_NAMES: Mapping[str, str] = {
    "job_type": "visit.title",
    "start": "visit.startAt",
    "end": "visit.endAt",
    "customer_name": "visit.client.name",
    "customer_email": "visit.client.emails",
    "customer_phone": "visit.client.phones",
    "address": "visit.property.address",
    "notes": "visit.instructions",
}


def _throttled(response: httpx.Response) -> Action | None:
    """Jobber reports query-cost throttling as HTTP 200 with a THROTTLED GraphQL error."""
    body = json_body(response)
    if response.status_code == 200 and isinstance(body, dict):
        for error in body.get("errors") or []:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            if isinstance(extensions, dict) and extensions.get("code") == "THROTTLED":
                return Action.THROTTLE
    return None


class _TokenAuth:
    def __init__(self, token: SecretStr | Callable[[], str]) -> None:
        self._token = token

    def _value(self) -> str:
        return (
            self._token.get_secret_value() if isinstance(self._token, SecretStr) else self._token()
        )

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._value()}"}

    def refresh(self) -> None:
        raise AuthError(
            "Jobber refused the access token (they expire after 60 minutes: give the source a "
            "callable that returns a current one)",
            platform="jobber",
            status=401,
        )

    def secrets(self) -> tuple[str, ...]:
        return (self._value(),)

    def __repr__(self) -> str:
        return "_TokenAuth(***)"


class JobberSource(WebhookSource):
    name: ClassVar[str] = "jobber"
    resolves_later: ClassVar[bool] = True

    def __init__(
        self,
        client_secret: str | SecretStr,
        access_token: str | SecretStr | Callable[[], str],
        *,
        api_url: str = DEFAULT_API_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 10.0,
        max_retries: int = 2,
        http: httpx.Client | None = None,
    ) -> None:
        self._key = s.secret_bytes(client_secret)
        token = SecretStr(access_token) if isinstance(access_token, str) else access_token
        self._url = api_url
        self.api_version = api_version
        self._api = PolicyClient(
            "jobber",
            http or httpx.Client(timeout=timeout),
            _TokenAuth(token),
            policy=StatusPolicy(classify=_throttled),
            max_retries=max_retries,
        )

    def __repr__(self) -> str:
        return f"JobberSource(api_url={self._url!r}, api_version={self.api_version!r})"

    def close(self) -> None:
        self._api.close()

    # --- verify -----------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        s.verify_body_hmac_b64(request, SIGNATURE_HEADER, self._key, "OAuth client secret")

    # --- identify ---------------------------------------------------------------------------

    def event_id(self, request: WebhookRequest) -> str:
        event = _event(request.body)
        return s.bounded_id(event["topic"], event["itemId"], event["occurredAt"])

    # --- translate --------------------------------------------------------------------------

    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]:
        event = _event(request.body)
        topic, item = event["topic"], event["itemId"]
        ref = AppointmentRef(source="jobber", source_id=item)
        if topic == "VISIT_DESTROY":
            return [Cancel(ref, reason="visit deleted in Jobber")]
        if topic not in _UPSERTS:
            return [Ignore(f"Jobber topic {topic} does not book, move or cancel a visit")]
        visit = self._visit(item)
        if not visit.get("startAt"):
            return [Cancel(ref, reason="visit unscheduled in Jobber")]
        return [Book(_booking(item, visit, directory))]

    def _visit(self, item: str) -> dict[str, Any]:
        answer = s.fetch_json(
            self._api,
            "POST",
            self._url,
            missing=FieldError(f"{_EVENT}.itemId", f"visit {item} does not exist in Jobber"),
            json={"query": VISIT_QUERY, "variables": {"id": item}},
            headers={"X-JOBBER-GRAPHQL-VERSION": self.api_version},
        )
        answer = s.json_object(answer, "response")
        data = answer.get("data")
        visit = data.get("visit") if isinstance(data, dict) else None
        if isinstance(visit, dict):
            return visit
        errors = answer.get("errors")
        reason = _first_message(errors)
        if isinstance(data, dict) and "visit" in data:
            detail = f" ({reason})" if reason else ""
            raise PayloadError(
                [FieldError(f"{_EVENT}.itemId", f"visit {item} does not exist in Jobber{detail}")]
            )
        raise UpstreamUnavailable(f"jobber: the visit query failed: {reason or 'no data'}")


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or "")
    return ""


def _event(body: bytes) -> dict[str, str]:
    root = s.json_object(s.parse_json(body), None)
    data = s.json_object(root.get("data"), "data")
    event = s.json_object(data.get("webHookEvent"), _EVENT)
    occurred = "occurredAt" if "occurredAt" in event else "occuredAt"
    return {
        "topic": s.text(event, "topic", f"{_EVENT}.topic").upper(),
        "itemId": s.text(event, "itemId", f"{_EVENT}.itemId"),
        "occurredAt": s.text(event, occurred, f"{_EVENT}.occurredAt"),
    }


def _primary(items: Any, key: str) -> str:
    """The primary entry of Jobber's emails/phones lists, else the first one."""
    entries = (
        [e for e in items if isinstance(e, dict) and e.get(key)] if isinstance(items, list) else []
    )
    primary = [e for e in entries if e.get("primary")]
    chosen = (primary or entries or [{}])[0]
    return str(chosen.get(key) or "").strip()


def _technician(visit: Mapping[str, Any], directory: Directory) -> str | None:
    users = visit.get("assignedUsers")
    nodes = users.get("nodes") if isinstance(users, dict) else None
    emails: list[str] = []
    for node in nodes if isinstance(nodes, list) else []:
        email = node.get("email") if isinstance(node, dict) else None
        if isinstance(email, dict) and isinstance(email.get("raw"), str):
            emails.append(email["raw"])
    if not emails:
        return None  # nobody assigned yet: booked unassigned, as Jobber shows it
    return s.technician(directory, emails, "visit.assignedUsers")


def _member(visit: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = visit.get(key)
    return value if isinstance(value, dict) else {}


def _address(visit: Mapping[str, Any]) -> str:
    prop = visit.get("property")
    address = prop.get("address") if isinstance(prop, dict) else None
    if not isinstance(address, dict):
        return ""
    keys = ("street1", "street2", "city", "province", "postalCode", "country")
    return ", ".join(str(address[k]).strip() for k in keys if address.get(k))


def _booking(item: str, visit: Mapping[str, Any], directory: Directory) -> AppointmentInput:
    start = s.aware_time(s.text(visit, "startAt", _NAMES["start"]), _NAMES["start"])
    end = s.aware_time(s.text(visit, "endAt", _NAMES["end"]), _NAMES["end"])
    s.check_order(start, end, _NAMES["end"])
    client = _member(visit, "client")
    job = _member(visit, "job")
    title = s.text(visit, "title", _NAMES["job_type"], required=False)
    notes = [
        s.text(visit, "instructions", _NAMES["notes"], required=False),
        s.text(job, "instructions", "visit.job.instructions", required=False),
    ]
    data = {
        "source": "jobber",
        "source_id": item,
        "technician_id": _technician(visit, directory),
        "job_type": title or s.text(job, "title", _NAMES["job_type"]),
        "start": start,
        "end": end,
        "customer_name": s.text(client, "name", _NAMES["customer_name"]),
        "customer_email": _primary(client.get("emails"), "address"),
        "customer_phone": _primary(client.get("phones"), "number"),
        "address": _address(visit),
        "notes": "\n".join(dict.fromkeys(n for n in notes if n)),
    }
    return s.booking(data, _NAMES)
