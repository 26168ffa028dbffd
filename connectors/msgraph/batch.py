"""JSON `$batch`: many Graph requests in one HTTP request, at most 20 at a time.

Sub-responses are matched by id (Graph does not keep their order). Throttled (429) and 5xx
sub-responses are sent again in later batches after backing off, with the largest Retry-After
as a floor; a batch request that fails as a whole fails each of its sub-requests. A batch costs
the mailbox one rate-limit token per sub-request and min(4, size) concurrency slots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.errors import ConnectorError, PermanentError, TransientError
from connectors.http import Action, backoff_scale, json_body, retry_after_seconds
from connectors.msgraph.endpoints import PLATFORM
from connectors.msgraph.session import GraphSession, json_object
from connectors.msgraph.status_policy import GRAPH_POLICY
from connectors.msgraph.urls import Target

# Records keep the logger name they had before the package split, so log filters still match.
log = logging.getLogger("connectors.graph")

MAX_BATCH = 20


@dataclass
class SubRequest:
    pos: int
    method: str
    url: str  # relative to the API base, with its query
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.pos), "method": self.method, "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            out["body"] = self.body
        if headers:
            out["headers"] = headers
        return out


@dataclass
class SubReply:
    response: httpx.Response | None = None
    error: ConnectorError | None = None


def _send(
    session: GraphSession, target: Target, chunk: Sequence[SubRequest]
) -> dict[int, httpx.Response]:
    payload = {"requests": [sub.as_json() for sub in chunk]}
    body = json_object(
        session.call(target, "POST", "/$batch", cost=len(chunk), json=payload), "POST /$batch"
    )
    replies = body.get("responses")
    if not isinstance(replies, list):
        raise PermanentError("POST /$batch: answer has no responses", platform=PLATFORM)
    out: dict[int, httpx.Response] = {}
    for reply in replies:
        if not isinstance(reply, dict):
            continue
        try:
            pos, status = int(reply["id"]), int(reply["status"])
        except (KeyError, TypeError, ValueError):
            continue
        headers = {
            str(k): str(v)
            for k, v in (reply.get("headers") or {}).items()
            if str(k).lower() not in ("content-type", "content-length")
        }
        if reply.get("body") is None:
            out[pos] = httpx.Response(status, headers=headers)
        else:
            out[pos] = httpx.Response(status, headers=headers, json=reply["body"])
    return out


def run_batch(
    session: GraphSession, target: Target, subs: Sequence[SubRequest]
) -> dict[int, SubReply]:
    """Every sub-request's final reply: throttled and 5xx ones are sent again, after a
    backoff, in later batches; a failed batch request fails its sub-requests."""
    replies: dict[int, SubReply] = {}
    pending = list(subs)
    retry = 0
    client = session.client(target)
    while pending:
        again: list[SubRequest] = []
        floor: float | None = None
        for i in range(0, len(pending), MAX_BATCH):
            chunk = pending[i : i + MAX_BATCH]
            try:
                answers = _send(session, target, chunk)
            except ConnectorError as exc:
                for sub in chunk:
                    replies[sub.pos] = SubReply(error=exc)
                continue
            for sub in chunk:
                resp = answers.get(sub.pos)
                if resp is None:
                    replies[sub.pos] = SubReply(
                        error=TransientError(
                            f"{sub.method} {sub.url.split('?')[0]}: no answer in the batch",
                            platform=PLATFORM,
                        )
                    )
                    continue
                action = GRAPH_POLICY.action_for(resp)
                if action in (Action.RETRY, Action.THROTTLE) and retry < session.max_retries:
                    again.append(sub)
                    wait = retry_after_seconds(resp)
                    if wait is not None:
                        floor = wait if floor is None else max(floor, wait)
                    continue
                replies[sub.pos] = SubReply(response=resp)
        if again:
            delay = client.backoff(retry, floor) * backoff_scale()
            log.info(
                "%s: %d batched requests throttled or failed, retry %d/%d in %.2fs",
                PLATFORM,
                len(again),
                retry + 1,
                session.max_retries,
                delay,
            )
            session.sleep(delay)
            retry += 1
        pending = again
    return replies


def outcome(
    session: GraphSession, sub: SubRequest, reply: SubReply
) -> dict[str, Any] | ConnectorError:
    """The sub-response's JSON body on success (empty for 204), else its mapped error."""
    if reply.error is not None:
        return reply.error
    resp = reply.response
    assert resp is not None
    action = GRAPH_POLICY.action_for(resp)
    if action is not Action.OK:
        return session.failure(action, sub.method, sub.url, resp)
    body = json_body(resp) if resp.content else {}
    return body if isinstance(body, dict) else {}
