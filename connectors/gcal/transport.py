"""The httplib2-compatible `http` object google-api-python-client sends through.

google-api-python-client builds every request from its bundled discovery document, and
`PolicyHttp` - an httplib2-compatible object over httpx and the shared `PolicyClient` - sends
them (option (a) of the design): one retry/backoff/Retry-After table, one rate limiter, one
401-refresh rule and one scrubber for every connector; the SDK's own retries stay off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httplib2

from connectors.gcal.auth import SdkCredentials
from connectors.http import PolicyClient

__all__ = ["PolicyHttp"]


class PolicyHttp:
    """The `http` object the SDK sends through: httplib2's request() over PolicyClient."""

    def __init__(self, policy: PolicyClient, credentials: SdkCredentials) -> None:
        self.policy = policy
        self.credentials = credentials

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        redirections: int = 5,
        connection_type: object = None,
    ) -> tuple[Any, bytes]:
        # The SDK computes content-length from str length; httpx counts the encoded bytes.
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}
        response = self.policy.request(method, uri, content=body, headers=sent)
        info = {k.lower(): v for k, v in response.headers.items()}
        info.pop("content-encoding", None)  # httpx has decoded the body already
        info["status"] = str(response.status_code)
        return httplib2.Response(info), response.content

    def close(self) -> None:
        """The connector owns the httpx client and closes it."""
