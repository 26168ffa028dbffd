"""One exception tree for every platform.

    ConnectorError
    ├── TransientError            retry later (timeouts, 5xx, dropped connections)
    │   └── RateLimitedError      429 / quota; carries retry_after seconds when the platform said
    ├── PermanentError            the platform refused; retrying the same request cannot help
    │   ├── NotOwnedError         the remote event lacks our job stamp: we never touch it
    │   └── UnsupportedError      the connector lacks an optional capability
    ├── AuthError                 credentials missing, expired or revoked: ops must act
    ├── PreconditionFailedError   etag / If-Match / If-None-Match mismatch, 409 already exists
    └── NotFoundError             404 / 410: the remote event is gone

Vendor errors are mapped to these once, at the connector boundary, with the cause chained.
Messages never include credentials: build them with `scrub()` when vendor text may echo them.
"""

from __future__ import annotations

import re


class ConnectorError(Exception):
    """Base of every error a connector raises."""

    retryable = False

    def __init__(self, message: str, *, platform: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.platform = platform
        self.status = status

    def __str__(self) -> str:
        where = f"{self.platform}: " if self.platform else ""
        code = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{code}"


class TransientError(ConnectorError):
    retryable = True


class RateLimitedError(TransientError):
    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, platform=platform, status=status)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    pass


class NotOwnedError(PermanentError):
    pass


class UnsupportedError(PermanentError):
    pass


class AuthError(ConnectorError):
    pass


class PreconditionFailedError(ConnectorError):
    pass


class NotFoundError(ConnectorError):
    pass


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|password|api_key|apikey|token)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
]


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove known secret values and token-looking fragments from text meant for humans."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text
