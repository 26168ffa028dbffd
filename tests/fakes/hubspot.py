"""A stateful fake of the parts of HubSpot's CRM v3 API a meeting webhook needs.

    GET /crm/v3/objects/meetings/{id}?properties=a,b&associations=contacts
    GET /crm/v3/objects/contacts/{id}?properties=a,b
    GET /crm/v3/owners/{id}

Like HubSpot, only the requested properties come back (plus hs_object_id, hs_createdate and
hs_lastmodifieddate), a property without a value is null, associations appear only when asked
for, and errors carry HubSpot's body ({"status": "error", "message", "correlationId",
"category"}). Authentication is a private-app bearer token.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from tests.fakes.loopback_api import LoopbackApi, Reply, Seen

_OBJECT = re.compile(r"^/crm/v3/objects/(meetings|contacts)/(\d+)$")
_OWNER = re.compile(r"^/crm/v3/owners/(\d+)$")
_ALWAYS = ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")
STAMP = "2026-05-04T07:10:00.000Z"


class FakeHubSpot(LoopbackApi):
    def __init__(self, access_token: str) -> None:
        super().__init__()
        self._token = access_token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"meetings": {}, "contacts": {}}
        self.meeting_contacts: dict[str, list[str]] = {}
        self.owners: dict[str, dict[str, Any]] = {}

    def add_owner(self, owner_id: str, email: str, first: str, last: str) -> None:
        self.owners[owner_id] = {
            "id": owner_id,
            "email": email,
            "firstName": first,
            "lastName": last,
            "userId": int(owner_id) // 7,
            "createdAt": STAMP,
            "updatedAt": STAMP,
            "archived": False,
        }

    def add_contact(self, contact_id: str, properties: dict[str, Any]) -> None:
        self.objects["contacts"][contact_id] = dict(properties)

    def add_meeting(self, meeting_id: str, properties: dict[str, Any], contacts: list[str]) -> None:
        self.objects["meetings"][meeting_id] = dict(properties)
        self.meeting_contacts[meeting_id] = list(contacts)

    def update_meeting(self, meeting_id: str, **properties: Any) -> None:
        self.objects["meetings"][meeting_id].update(properties)

    def delete_meeting(self, meeting_id: str) -> None:
        del self.objects["meetings"][meeting_id]

    def route(self, seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {self._token}":
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        if seen.method != "GET":
            return _error(405, "VALIDATION_ERROR", "Method not allowed.")
        owner = _OWNER.match(seen.path)
        if owner:
            found = self.owners.get(owner[1])
            return Reply(200, found) if found else _error(404, "OBJECT_NOT_FOUND", "Not found")
        obj = _OBJECT.match(seen.path)
        if not obj:
            return _error(404, "OBJECT_NOT_FOUND", "Unknown path.")
        kind, object_id = obj[1], obj[2]
        stored = self.objects[kind].get(object_id)
        if stored is None:
            return _error(404, "OBJECT_NOT_FOUND", f"Object not found. objectId={object_id}")
        wanted = ",".join(seen.query.get("properties", [])).split(",")
        properties = {name: stored.get(name) for name in wanted if name}
        properties.update(hs_object_id=object_id, hs_createdate=STAMP, hs_lastmodifieddate=STAMP)
        body: dict[str, Any] = {
            "id": object_id,
            "properties": copy.deepcopy(properties),
            "createdAt": STAMP,
            "updatedAt": STAMP,
            "archived": False,
        }
        if kind == "meetings" and "contacts" in ",".join(seen.query.get("associations", [])):
            results = [
                {"id": c, "type": "meeting_event_to_contact"}
                for c in self.meeting_contacts.get(object_id, [])
            ]
            if results:
                body["associations"] = {"contacts": {"results": results}}
        return Reply(200, body)


def _error(status: int, category: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )
