"""Sending SDK requests as multipart batches to /batch/calendar/v3.

A batch carries at most 50 requests (0.02 HTTP requests per created event). Each part's status
is judged by the same StatusPolicy as a single request: retryable parts go again in a new batch
after the policy's backoff; every other failure comes back as the part's ConnectorError, for
the connector to settle (connector.py decides what a 409 or 412 on a part means).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from googleapiclient.errors import Error as SdkError
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from connectors.errors import ConnectorError, TransientError
from connectors.gcal.policy import GOOGLE_POLICY, as_httpx, error_for, uri_path
from connectors.gcal.sessions import Session
from connectors.http import Action, backoff_scale, retry_after_seconds

__all__ = ["run_batches", "send_batch"]


def run_batches(
    session: Session,
    calls: list[tuple[int, Any]],
    *,
    batch_uri: str,
    batch_size: int,
    max_retries: int,
    platform: str,
    sleep: Callable[[float], None],
) -> dict[int, Any]:
    """Send (position, request) pairs in batches; each position's parsed body, or its
    ConnectorError. Retryable parts are sent again, in fresh batches, after a backoff."""
    outcomes: dict[int, Any] = {}
    pending = calls
    retry = 0
    while pending:
        again: list[tuple[int, Any]] = []
        floor: float | None = None
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            for position, request, action, response in send_batch(
                session, chunk, batch_uri=batch_uri, platform=platform
            ):
                if action is None:
                    outcomes[position] = response
                elif action in (Action.RETRY, Action.THROTTLE) and retry < max_retries:
                    again.append((position, request))
                    wait = (
                        retry_after_seconds(response)
                        if isinstance(response, httpx.Response)
                        else None
                    )
                    if wait is not None:
                        floor = wait if floor is None else max(floor, wait)
                elif isinstance(response, ConnectorError):
                    outcomes[position] = response
                else:
                    outcomes[position] = error_for(
                        action,
                        request,
                        response,
                        retry + 1,
                        platform=platform,
                        secrets=session.auth.secrets(),
                    )
        if again:
            # The same wait PolicyClient takes between attempts, scale knob included.
            sleep(session.policy.backoff(retry, floor) * backoff_scale())
            retry += 1
        pending = again
    return outcomes


def send_batch(
    session: Session, chunk: list[tuple[int, Any]], *, batch_uri: str, platform: str
) -> list[tuple[int, Any, Action | None, Any]]:
    """One batch request: per part (position, request, action, body or response). A None
    action is success; for a failed batch the action is FAIL and the 'response' the error."""
    # Google counts each request in a batch against the quota; PolicyClient takes the
    # token for the HTTP request itself.
    for _ in range(len(chunk) - 1):
        session.limiter.acquire()
    replies: dict[str, tuple[Any, Any]] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        replies[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=collect, batch_uri=batch_uri)
    for position, request in chunk:
        batch.add(request, request_id=str(position))
    try:
        batch.execute()
    except ConnectorError as exc:
        return [(position, request, Action.FAIL, exc) for position, request in chunk]
    except SdkError as exc:
        error = TransientError(
            f"POST {uri_path(batch_uri)}: unreadable batch reply ({type(exc).__name__})",
            platform=platform,
        )
        error.__cause__ = exc
        return [(position, request, Action.FAIL, error) for position, request in chunk]
    out: list[tuple[int, Any, Action | None, Any]] = []
    for position, request in chunk:
        reply = replies.get(str(position))
        if reply is None:
            missing = TransientError(
                f"{request.method} {uri_path(request.uri)}: no reply in the batch response",
                platform=platform,
            )
            out.append((position, request, Action.RETRY, missing))
            continue
        response, exception = reply
        if exception is None:
            out.append((position, request, None, response))
        elif isinstance(exception, HttpError):
            part = as_httpx(exception.resp, exception.content)
            out.append((position, request, GOOGLE_POLICY.action_for(part), part))
        else:
            error = TransientError(
                f"{request.method} {uri_path(request.uri)}: {type(exception).__name__}",
                platform=platform,
            )
            out.append((position, request, Action.FAIL, error))
    return out
