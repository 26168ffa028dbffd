"""Google's answers on our shared HTTP status policy and exception tree.

Google's one difference from the shared table in connectors/http.py is data in
`GOOGLE_POLICY`: 403 with reason rateLimitExceeded or userRateLimitExceeded is throttling like
429; any other 403 is a PermanentError carrying Google's message.

Most answers never reach this module as statuses: PolicyClient maps them on the way back. What
it cannot see - the parts inside a batch reply, and 3xx answers it returns as they are - arrives
as httplib2 responses; `as_httpx` turns them back into httpx responses and `error_for` applies
the mapping PolicyClient would have applied.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    PreconditionFailedError,
    RateLimitedError,
    TransientError,
    scrub,
)
from connectors.http import (
    Action,
    StatusPolicy,
    error_message,
    json_body,
    retry_after_seconds,
)

__all__ = ["GOOGLE_POLICY", "RATE_LIMIT_REASONS", "as_httpx", "error_for", "uri_path"]

RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def _error_reasons(body: Any) -> set[str]:
    error = body.get("error") if isinstance(body, dict) else None
    errors = error.get("errors") if isinstance(error, dict) else None
    if not isinstance(errors, list):
        return set()
    return {str(e.get("reason")) for e in errors if isinstance(e, dict)}


def _classify(response: httpx.Response) -> Action | None:
    # Google reports its per-user and per-project rate limits as 403, not 429.
    if response.status_code == 403 and _error_reasons(json_body(response)) & RATE_LIMIT_REASONS:
        return Action.THROTTLE
    return None


GOOGLE_POLICY = StatusPolicy(classify=_classify)


def error_for(
    action: Action,
    request: Any,
    response: httpx.Response,
    attempts: int,
    *,
    platform: str,
    secrets: tuple[str, ...],
) -> ConnectorError:
    """The same mapping PolicyClient applies, for statuses seen inside a batch."""
    text = f"{request.method} {uri_path(request.uri)}: {error_message(response)}"
    if action in (Action.RETRY, Action.THROTTLE):
        text += f" (gave up after {attempts} attempts)"
    longest_first = sorted(set(secrets), key=len, reverse=True)
    message = scrub(text, tuple(longest_first))
    status = response.status_code
    if action is Action.THROTTLE:
        return RateLimitedError(
            message,
            platform=platform,
            status=status,
            retry_after=retry_after_seconds(response),
        )
    if action is Action.RETRY:
        return TransientError(message, platform=platform, status=status)
    if action is Action.REFRESH_AUTH:
        return AuthError(
            f"{message} (still refused after refreshing credentials)",
            platform=platform,
            status=status,
        )
    if action is Action.NOT_FOUND:
        return NotFoundError(message, platform=platform, status=status)
    if action is Action.PRECONDITION:
        return PreconditionFailedError(message, platform=platform, status=status)
    return PermanentError(message, platform=platform, status=status)


def as_httpx(resp: Any, content: Any) -> httpx.Response:
    """An httplib2 response (status and headers) and its body, as an httpx.Response."""
    headers = [
        (str(k), str(v))
        for k, v in dict(resp).items()
        if str(k).lower() not in ("status", "content-encoding", "content-length")
    ]
    raw = content if isinstance(content, bytes) else str(content or "").encode()
    return httpx.Response(int(resp.status), headers=headers, content=raw)


def uri_path(uri: str) -> str:
    # Only the path: query strings may carry anything a caller put there.
    try:
        return httpx.URL(uri).path or "/"
    except httpx.InvalidURL:
        return "<invalid url>"
