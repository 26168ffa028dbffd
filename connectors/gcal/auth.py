"""Google credentials: what a block holds, and how google-auth refreshes it through our client.

Two kinds, one per platform (blocks/google.py builds either):

- `OAuthUserAuth` (platform "google"): one Google account's OAuth client and refresh token.
- `ServiceAccountAuth` (platform "google_workspace"): a service account key with domain-wide
  delegation, impersonating each technician (see sessions.py).

Token requests go through the connector's own httpx client (`TokenTransport`), so they share its
timeouts and request count. `GoogleAuth` is what PolicyClient asks for headers and refreshes on
a 401; an `invalid_grant` becomes an AuthError telling ops to re-authorize, naming the block
(`refused_message`). `SdkCredentials` hands the SDK's own refreshes to that same `GoogleAuth`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import httpx

from connectors.errors import AuthError, TransientError, scrub
from connectors.gcal.endpoints import DEFAULT_SCOPES, DEFAULT_TOKEN_URI

__all__ = [
    "GoogleAuth",
    "OAuthUserAuth",
    "SdkCredentials",
    "ServiceAccountAuth",
    "TokenTransport",
    "block_label",
    "refused_message",
    "token_uri_of",
]


@dataclass(frozen=True)
class OAuthUserAuth:
    """A Google account's OAuth client and refresh token (installed-app or web flow)."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_uri: str = DEFAULT_TOKEN_URI


@dataclass(frozen=True)
class ServiceAccountAuth:
    """A service account key with domain-wide delegation in a Google Workspace domain."""

    info: Mapping[str, Any] = field(repr=False)  # the JSON key file, parsed
    subject: str | None = None  # impersonate this user for every calendar; else the calendar id
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    token_uri: str | None = None  # overrides the key file's token_uri


def token_uri_of(auth: OAuthUserAuth | ServiceAccountAuth) -> str:
    """Where these credentials are exchanged for access tokens."""
    if isinstance(auth, OAuthUserAuth):
        return auth.token_uri
    return auth.token_uri or str(auth.info.get("token_uri") or DEFAULT_TOKEN_URI)


def block_label(credentials_name: str) -> str:
    """How error messages name the block the credentials came from."""
    return f"block {credentials_name!r}" if credentials_name else "the block"


def refused_message(
    auth: OAuthUserAuth | ServiceAccountAuth,
    block: str,
    subject: str,
    code: str,
    description: str,
) -> str:
    """What ops must do when Google refuses the grant: which block, and how to re-authorize."""
    what = f"{code}: {description}" if code else description
    if isinstance(auth, OAuthUserAuth):
        if code == "invalid_client":
            return (
                f"Google refused the OAuth client in {block} ({what}): check its "
                "client id and secret, then re-authorize fieldsync and save a new refresh "
                "token in the block"
            )
        return (
            f"Google refused the refresh token in {block} ({what}): it has expired "
            "or been revoked. Re-authorize fieldsync with that Google account and save the "
            "new refresh token in the block"
        )
    return (
        f"Google refused the service account in {block} when impersonating "
        f"{subject} ({what}). Check that its key is still active, that the Workspace admin "
        "console grants its client id domain-wide delegation for the scopes "
        f"{', '.join(auth.scopes)}, and that {subject} is a user of the domain; if "
        "the key was revoked or rotated, re-authorize by saving a new key in the block"
    )


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return dict(self._response.headers)

    @property
    def data(self) -> bytes:
        return self._response.content


class TokenTransport(google.auth.transport.Request):
    """google-auth's token requests, over our httpx client (its timeouts, its request count)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        try:
            response = self._client.request(
                method,
                url,
                content=body,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            # No str(exc): it can quote the request, and the request carries the grant.
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from exc
        return _TokenResponse(response)


class GoogleAuth:
    """PolicyClient's AuthProvider: google-auth credentials refreshed through our transport.

    A refused grant is remembered: it cannot heal by itself, and asking again for every event of
    a push would only hammer the token endpoint.
    """

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        transport: TokenTransport,
        *,
        platform: str,
        refused: Callable[[str, str], str],
        secrets: tuple[str, ...],
    ) -> None:
        self._credentials = credentials
        self._transport = transport
        self._platform = platform
        self._refused = refused
        self._secrets = secrets
        self._lock = threading.RLock()
        self._failure: str | None = None

    @property
    def valid(self) -> bool:
        with self._lock:
            return self._failure is None and bool(self._credentials.valid)

    def headers(self) -> dict[str, str]:
        with self._lock:
            if not self._credentials.valid:
                self._refresh_locked()
            headers: dict[str, str] = {}
            self._credentials.apply(headers)  # type: ignore[no-untyped-call]
            return headers

    def refresh(self) -> None:
        with self._lock:
            self._refresh_locked()

    def secrets(self) -> tuple[str, ...]:
        token = self._credentials.token
        return (*self._secrets, token) if isinstance(token, str) else self._secrets

    def _refresh_locked(self) -> None:
        if self._failure is not None:
            raise AuthError(self._failure, platform=self._platform)
        try:
            self._credentials.refresh(self._transport)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Mapping) else {}
            code = str(data.get("error") or "")
            description = str(data.get("error_description") or (exc.args[0] if exc.args else ""))
            if getattr(exc, "retryable", False):
                raise TransientError(
                    scrub(f"token endpoint: {code}: {description}", self.secrets()),
                    platform=self._platform,
                ) from exc
            self._failure = scrub(self._refused(code, description), self.secrets())
            raise AuthError(self._failure, platform=self._platform) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(scrub(str(exc), self.secrets()), platform=self._platform) from exc
        except (ValueError, TypeError) as exc:
            # google-auth could not build the grant from what the block holds.
            message = self._refused("unusable_credentials", type(exc).__name__)
            raise AuthError(scrub(message, self.secrets()), platform=self._platform) from exc


class SdkCredentials(google.auth.credentials.Credentials):
    """The credentials the SDK finds on our http object. BatchHttpRequest refreshes them when a
    part comes back 401 and applies them to re-sent parts; both go to `GoogleAuth`, so every
    token request still uses our transport, lock and error mapping."""

    def __init__(self, auth: GoogleAuth) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._auth = auth

    @property
    def valid(self) -> bool:
        return self._auth.valid

    def refresh(self, request: google.auth.transport.Request) -> None:
        self._auth.refresh()

    def apply(self, headers: MutableMapping[str, str], token: str | None = None) -> None:
        headers.update(self._auth.headers())
