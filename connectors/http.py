"""One HTTP policy for every HTTP-based connector.

What a response status means is data (`STATUS_ACTIONS`, then `CLASS_ACTIONS` by the status's
hundreds digit), read by `PolicyClient.request`:

    status          action         when it cannot be handled
    2xx, 3xx        OK             returned as-is
    401             REFRESH_AUTH   auth.refresh() once, then AuthError
    404, 410        NOT_FOUND      NotFoundError
    409, 412        PRECONDITION   PreconditionFailedError
    429             THROTTLE       backoff; RateLimitedError(retry_after) once retries run out
    408, other 5xx  RETRY          backoff; TransientError once retries run out
    other 4xx       FAIL           PermanentError carrying the platform's own message
    transport error (retry)        backoff; TransientError chained from the httpx error

A connector states only what differs on its platform: `StatusPolicy(overrides={...})` for whole
statuses, and `classify(response)`, consulted first, for decisions that need the body (Google
sends quota exhaustion as 403 with reason rateLimitExceeded).

Backoff is full-jitter exponential, `uniform(0, min(cap, base * 2**retry))`; a Retry-After header
(delta-seconds or HTTP-date) is a floor, itself capped so one reply cannot park a worker for
hours. Every status and transport error retries, whatever the method: the connector contract
makes each write idempotent (a create carries its key), so repeating a write is safe.

Error messages pass through `scrub()` with the auth provider's secrets and the auth header
values actually sent; headers are never logged.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Protocol

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

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_ACTIONS",
    "STATUS_ACTIONS",
    "Action",
    "AuthProvider",
    "Classifier",
    "ConcurrencyLimit",
    "PolicyClient",
    "RateLimiter",
    "StatusPolicy",
    "error_message",
    "json_body",
    "retry_after_seconds",
]


class Action(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    THROTTLE = "throttle"
    REFRESH_AUTH = "refresh_auth"
    NOT_FOUND = "not_found"
    PRECONDITION = "precondition"
    FAIL = "fail"


STATUS_ACTIONS: Mapping[int, Action] = MappingProxyType(
    {
        401: Action.REFRESH_AUTH,
        404: Action.NOT_FOUND,
        410: Action.NOT_FOUND,
        409: Action.PRECONDITION,
        412: Action.PRECONDITION,
        # The server gave up waiting for our request, so nothing was done: safe to repeat.
        408: Action.RETRY,
        429: Action.THROTTLE,
    }
)

# Keyed by status // 100; a status in neither table is a failure.
CLASS_ACTIONS: Mapping[int, Action] = MappingProxyType(
    {1: Action.OK, 2: Action.OK, 3: Action.OK, 4: Action.FAIL, 5: Action.RETRY}
)

Classifier = Callable[[httpx.Response], Action | None]


@dataclass(frozen=True)
class StatusPolicy:
    """The default tables plus one platform's differences."""

    overrides: Mapping[int, Action] = field(default_factory=dict)
    classify: Classifier | None = None

    def action_for(self, response: httpx.Response) -> Action:
        if self.classify is not None:
            action = self.classify(response)
            if action is not None:
                return action
        status = response.status_code
        if status in self.overrides:
            return self.overrides[status]
        if status in STATUS_ACTIONS:
            return STATUS_ACTIONS[status]
        return CLASS_ACTIONS.get(status // 100, Action.FAIL)


class AuthProvider(Protocol):
    """Supplies auth headers. May also define `secrets() -> tuple[str, ...]`: values to scrub.

    `refresh()` raises AuthError when it cannot get new credentials.
    """

    def headers(self) -> dict[str, str]: ...

    def refresh(self) -> None: ...


class RateLimiter:
    """Token bucket: `rate_per_second` sustained, up to `burst` at once. Thread-safe.

    Each caller reserves its slot under the lock and sleeps outside it, so waiting threads are
    served in arrival order and never wake to find the token taken.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second > 0:
            raise ValueError("rate_per_second must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class ConcurrencyLimit:
    """At most `limit` holders per key at once (Graph: 4 concurrent requests per mailbox)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = threading.BoundedSemaphore(self.limit)
        with slot:
            yield


def retry_after_seconds(
    response: httpx.Response, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait, from either Retry-After form; None when absent."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None; for classifiers that must not raise on odd bodies."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


_MESSAGE_LIMIT = 300


def _first_str(obj: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _join(code: str | None, message: str | None) -> str | None:
    if code and message:
        return f"{code}: {message}"
    return message or code


def _from_json(body: Any) -> str | None:
    if isinstance(body, list):
        # Salesforce: [{"message": ..., "errorCode": ...}]; GraphQL (Jobber): "errors": [...]
        first = body[0] if body else None
        return _from_json(first) if isinstance(first, dict) else None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        # Google {"error": {"code": 400, "message", "status"}}; Graph {"code": "...", "message"}
        return _join(_first_str(error, "code", "status"), _first_str(error, "message"))
    if isinstance(error, str):
        # OAuth: {"error": "invalid_grant", "error_description": "..."}
        return _join(error.strip() or None, _first_str(body, "error_description", "message"))
    if isinstance(body.get("errors"), list):
        return _from_json(body["errors"])
    return _join(_first_str(body, "errorCode"), _first_str(body, "message", "detail", "title"))


def error_message(response: httpx.Response) -> str:
    """The platform's own error message from the body, else its text, truncated. Not scrubbed."""
    message = _from_json(json_body(response))
    if not message:
        message = " ".join(response.text.split())
    if not message:
        message = response.reason_phrase or "no error message"
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 3] + "..."
    return message


# Failures where the request may never have reached the server, or the reply was lost: worth
# repeating. Other httpx errors (bad URL, unsupported scheme, local protocol misuse) are our bugs.
_TRANSIENT_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def backoff_scale() -> float:
    """FIELDSYNC_HTTP_BACKOFF_SCALE shrinks every wait (tests and fault drills against local
    fakes set it near 0); production leaves it at 1."""
    return float(os.environ.get("FIELDSYNC_HTTP_BACKOFF_SCALE", "1"))


class PolicyClient:
    """An httpx.Client with the status policy, retries, auth refresh and rate limit applied."""

    def __init__(
        self,
        platform: str,
        client: httpx.Client,
        auth: AuthProvider,
        *,
        policy: StatusPolicy | None = None,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        now: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.platform = platform
        self.client = client
        self.auth = auth
        self.policy = policy if policy is not None else StatusPolicy()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.limiter = limiter
        self._sleep = sleep
        self._rng = rng
        self._now = now

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Delay before retry number `retry` (0-based): full jitter, Retry-After as a floor."""
        delay = self._rng() * min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry, 60))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """Send with the policy applied; returns only responses whose action is OK."""
        caller_headers = kwargs.pop("headers", None)
        refreshed = False
        retry = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            auth_headers = self.auth.headers()
            headers = httpx.Headers(caller_headers)
            headers.update(auth_headers)
            try:
                response = self.client.request(method, url, headers=headers, **kwargs)
            except _TRANSIENT_TRANSPORT as exc:
                # Scrubbed before logging too: transport errors can quote what was sent.
                what = self._clean(
                    f"{method} {_path(url)}: {type(exc).__name__}: {exc}", auth_headers
                )
                if retry >= self.max_retries:
                    raise TransientError(
                        f"{what} (gave up after {retry + 1} attempts)",
                        platform=self.platform,
                    ) from exc
                self._wait(retry, None, what)
                retry += 1
                continue
            except httpx.HTTPError as exc:
                raise PermanentError(
                    self._clean(
                        f"{method} {_path(url)}: {type(exc).__name__}: {exc}", auth_headers
                    ),
                    platform=self.platform,
                ) from exc

            action = self.policy.action_for(response)
            if action is Action.OK:
                return response
            status = response.status_code
            if action is Action.REFRESH_AUTH and not refreshed:
                log.info(
                    "%s: %s %s -> %s, refreshing credentials",
                    self.platform,
                    method,
                    _path(url),
                    status,
                )
                self.auth.refresh()
                refreshed = True
                continue
            if action in (Action.RETRY, Action.THROTTLE) and retry < self.max_retries:
                retry_after = retry_after_seconds(response, self._now)
                self._wait(retry, retry_after, f"{method} {_path(url)} -> {status}")
                retry += 1
                continue
            raise self._error(action, method, url, response, auth_headers, retry + 1)

    def _wait(self, retry: int, retry_after: float | None, what: str) -> None:
        delay = self.backoff(retry, retry_after) * backoff_scale()
        log.info(
            "%s: %s, retry %d/%d in %.2fs", self.platform, what, retry + 1, self.max_retries, delay
        )
        self._sleep(delay)

    def _error(
        self,
        action: Action,
        method: str,
        url: str | httpx.URL,
        response: httpx.Response,
        auth_headers: Mapping[str, str],
        attempts: int,
    ) -> ConnectorError:
        status = response.status_code
        text = f"{method} {_path(url)}: {error_message(response)}"
        if action in (Action.RETRY, Action.THROTTLE):
            text += f" (gave up after {attempts} attempts)"
        message = self._clean(text, auth_headers)
        where: dict[str, Any] = {"platform": self.platform, "status": status}
        if action is Action.THROTTLE:
            return RateLimitedError(
                message, retry_after=retry_after_seconds(response, self._now), **where
            )
        if action is Action.RETRY:
            return TransientError(message, **where)
        if action is Action.REFRESH_AUTH:
            return AuthError(f"{message} (still refused after refreshing credentials)", **where)
        if action is Action.NOT_FOUND:
            return NotFoundError(message, **where)
        if action is Action.PRECONDITION:
            return PreconditionFailedError(message, **where)
        return PermanentError(message, **where)

    def _clean(self, text: str, auth_headers: Mapping[str, str]) -> str:
        secrets: list[str] = []
        provided = getattr(self.auth, "secrets", None)
        if callable(provided):
            secrets.extend(s for s in provided() if isinstance(s, str))
        for value in auth_headers.values():
            # A platform may echo the bare token without its "Bearer " scheme.
            secrets.extend((value, value.rsplit(" ", 1)[-1]))
        # Longest first, so a token is not half-replaced by a shorter secret inside it.
        return scrub(text, tuple(sorted(set(secrets), key=len, reverse=True)))


def _path(url: str | httpx.URL) -> str:
    # Only the path: query strings can carry API keys and signatures.
    try:
        return httpx.URL(url).path or "/"
    except httpx.InvalidURL:
        return "<invalid url>"
