"""A stateful fake of Jobber's GraphQL endpoint, for the `visit(id:)` query.

    POST /api/graphql   {"query": "...visit(id: $id)...", "variables": {"id": "<EncodedId>"}}

Like Jobber it needs `Authorization: Bearer <token>` (401 otherwise) and the
X-JOBBER-GRAPHQL-VERSION header (400 otherwise), answers an unknown visit with
`{"data": {"visit": null}}`, and reports query-cost throttling as HTTP 200 with a THROTTLED
error (`throttle(n)` makes the next n queries throttled). Every answer carries Jobber's
`extensions.cost` block. `webhook()` builds the notification body Jobber would send.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from tests.fakes.loopback_api import LoopbackApi, Reply, Seen

GRAPHQL_PATH = "/api/graphql"


def encoded_id(kind: str, number: int) -> str:
    """Jobber's EncodedId: base64 of a global id such as gid://Jobber/Visit/123."""
    return base64.b64encode(f"gid://Jobber/{kind}/{number}".encode()).decode()


class FakeJobber(LoopbackApi):
    def __init__(self, access_token: str) -> None:
        super().__init__()
        self._token = access_token
        self.visits: dict[str, dict[str, Any]] = {}
        self._throttled = 0

    def add_visit(self, visit_id: str, visit: dict[str, Any]) -> None:
        self.visits[visit_id] = {**copy.deepcopy(visit), "id": visit_id}

    def throttle(self, times: int) -> None:
        self._throttled = times

    @staticmethod
    def webhook(topic: str, item_id: str, occurred_at: str) -> bytes:
        event = {
            "topic": topic,
            "appId": "3ef22a50-072d-430c-a78f-b7646657560b",
            "accountId": encoded_id("Account", 1187),
            "itemId": item_id,
            "occurredAt": occurred_at,
        }
        return json.dumps({"data": {"webHookEvent": event}}).encode()

    def route(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != GRAPHQL_PATH:
            return Reply(404, {"error": "Not Found"})
        if seen.headers.get("authorization") != f"Bearer {self._token}":
            return Reply(401, {"message": "Unauthorized", "error": "invalid_token"})
        if not seen.headers.get("x-jobber-graphql-version"):
            return Reply(400, {"errors": [{"message": "X-JOBBER-GRAPHQL-VERSION is required"}]})
        request = json.loads(seen.body)
        if self._throttled > 0:
            self._throttled -= 1
            throttled = {"code": "THROTTLED", "documentation": "https://developer.getjobber.com"}
            return Reply(200, {"errors": [{"message": "Throttled", "extensions": throttled}]})
        if "visit(id: $id)" not in request.get("query", ""):
            return Reply(200, {"errors": [{"message": "Only the visit query is faked"}]})
        visit = self.visits.get(request.get("variables", {}).get("id", ""))
        return Reply(200, {"data": {"visit": copy.deepcopy(visit)}, "extensions": _cost()})


def _cost() -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": 32,
            "actualQueryCost": 21,
            "throttleStatus": {
                "maximumAvailable": 10000,
                "currentlyAvailable": 9979,
                "restoreRate": 500,
            },
        },
        "versioning": {"version": "2025-04-16"},
    }
