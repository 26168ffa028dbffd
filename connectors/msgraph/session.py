"""Requests to Graph for one connector, under the status policy and the mailbox's limits.

A PolicyClient per mailbox brings retries with backoff, the token refresh on 401/403 and the
mailbox's rate limiter; every request also holds the mailbox's concurrency slots. Errors that
reach the connector are mapped here, once, to connectors.errors types.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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
    PolicyClient,
    RateLimiter,
    error_message,
    json_body,
    retry_after_seconds,
)
from connectors.msgraph.auth import GraphTokenProvider
from connectors.msgraph.endpoints import PLATFORM
from connectors.msgraph.limits import MAILBOX_CONCURRENCY, MailboxSlots
from connectors.msgraph.mapping import PREFER_UTC_TEXT
from connectors.msgraph.status_policy import GRAPH_POLICY
from connectors.msgraph.urls import Target


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    body = json_body(response)
    if not isinstance(body, dict):
        raise PermanentError(f"{what}: Graph answered without a JSON object", platform=PLATFORM)
    return body


class GraphSession:
    """The HTTP side of a MicrosoftGraphConnector: per-mailbox clients, slots and rate limits."""

    def __init__(
        self,
        api_base_url: str,
        http: httpx.Client,
        auth: GraphTokenProvider,
        *,
        platform: str,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        sleep: Callable[[float], None],
        slots: MailboxSlots,
        rate: Callable[[str], RateLimiter],
    ) -> None:
        self.api_base_url = api_base_url
        self.auth = auth
        self.platform = platform
        self.max_retries = max_retries
        self.sleep = sleep
        self._http = http
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._slots = slots
        self._rate = rate
        self._clients: dict[str, PolicyClient] = {}
        self._lock = threading.Lock()

    def client(self, target: Target) -> PolicyClient:
        with self._lock:
            client = self._clients.get(target.key)
            if client is None:
                client = self._clients[target.key] = PolicyClient(
                    self.platform,
                    self._http,
                    self.auth,
                    policy=GRAPH_POLICY,
                    max_retries=self.max_retries,
                    backoff_base=self._backoff_base,
                    backoff_cap=self._backoff_cap,
                    sleep=self.sleep,
                    limiter=self._rate(target.key),
                )
            return client

    def call(
        self, target: Target, method: str, url: str, *, cost: int = 1, **kwargs: Any
    ) -> httpx.Response:
        """One HTTP request for `cost` mailbox operations (a $batch costs one per sub-request)."""
        client = self.client(target)
        if not url.startswith(("https://", "http://")):
            url = self.api_base_url + url
        with self._slots.hold(target.key, min(cost, MAILBOX_CONCURRENCY)):
            if client.limiter is not None:
                for _ in range(cost - 1):  # PolicyClient itself takes one per attempt
                    client.limiter.acquire()
            return client.request(method, url, **kwargs)

    def pages(self, target: Target, url: str) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink."""
        while True:
            resp = self.call(target, "GET", url, headers={"Prefer": PREFER_UTC_TEXT})
            body = json_object(resp, url)
            for item in body.get("value") or []:
                if isinstance(item, dict):
                    yield item
            next_link = body.get("@odata.nextLink")
            if not isinstance(next_link, str):
                return
            if not next_link.startswith(self.api_base_url + "/"):
                # Our token must never be sent to a host we were not configured for.
                raise PermanentError(
                    "Graph's next page link points outside the API base URL", platform=PLATFORM
                )
            url = next_link

    def failure(
        self, action: Action, method: str, url: str, resp: httpx.Response
    ) -> ConnectorError:
        """The error for a response PolicyClient did not handle (a $batch sub-response)."""
        path = url.split("?", 1)[0]  # queries can quote keys and job ids; paths are enough
        text = scrub(f"{method} {path}: {error_message(resp)}", self.auth.secrets())
        status = resp.status_code
        if action is Action.THROTTLE:
            return RateLimitedError(
                text, platform=PLATFORM, status=status, retry_after=retry_after_seconds(resp)
            )
        if action is Action.RETRY:
            return TransientError(text, platform=PLATFORM, status=status)
        if action is Action.REFRESH_AUTH:
            return AuthError(text, platform=PLATFORM, status=status)
        if action is Action.NOT_FOUND:
            return NotFoundError(text, platform=PLATFORM, status=status)
        if action is Action.PRECONDITION:
            return PreconditionFailedError(text, platform=PLATFORM, status=status)
        return PermanentError(text, platform=PLATFORM, status=status)
