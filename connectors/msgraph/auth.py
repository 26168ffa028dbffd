"""App-only access tokens for Graph: msal's client-credentials flow over our httpx.Client.

Tokens
    msal's ConfidentialClientApplication, client credentials with a client secret or a
    certificate (PEM private key + SHA-1 thumbprint). msal caches the token and fetches a new one
    when less than five minutes remain. A 401 from Graph drops the cached token and fetches a
    fresh one once (PolicyClient's REFRESH_AUTH); refused again -> AuthError. msal's HTTP goes
    through the same httpx.Client as Graph calls, so one TLS/proxy setting covers both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msal
from msal.exceptions import MsalServiceError

from connectors.errors import AuthError, ConnectorError, TransientError, scrub
from connectors.msgraph.endpoints import DEFAULT_AUTHORITY_HOST, GRAPH_SCOPE, PLATFORM


@dataclass(frozen=True)
class GraphCredentials:
    """An Entra ID app registration's client credentials. `name` (the block's name) is what
    error messages point ops at; the secret and key never leave this object in text."""

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_private_key: str | None = field(default=None, repr=False)
    certificate_thumbprint: str | None = None
    authority_host: str = DEFAULT_AUTHORITY_HOST
    name: str = "Microsoft Graph credentials"

    def __post_init__(self) -> None:
        if bool(self.client_secret) == bool(self.certificate_private_key):
            raise ValueError(
                f"{self.name}: give exactly one of a client secret or a certificate private key"
            )
        if self.certificate_private_key and not self.certificate_thumbprint:
            raise ValueError(f"{self.name}: a certificate credential needs its thumbprint")

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.client_secret, self.certificate_private_key) if s)


class _MsalTransport:
    """msal's minimal HttpClient interface over our httpx.Client."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @staticmethod
    def _headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
        return {k: str(v) for k, v in (headers or {}).items() if v is not None}

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if isinstance(data, str | bytes):
            return self._client.post(
                url, params=params, content=data, headers=self._headers(headers)
            )
        # msal passes the client assertion as bytes; httpx would form-encode their repr.
        form = {k: v.decode() if isinstance(v, bytes) else v for k, v in (data or {}).items()}
        return self._client.post(url, params=params, data=form, headers=self._headers(headers))

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self._client.get(url, params=params, headers=self._headers(headers))

    def close(self) -> None:
        """The connector owns the httpx.Client."""


class GraphTokenProvider:
    """connectors.http.AuthProvider backed by msal's client-credentials flow and token cache."""

    def __init__(
        self,
        credentials: GraphCredentials,
        http: httpx.Client,
        *,
        scope: str = GRAPH_SCOPE,
        platform: str = PLATFORM,
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self.platform = platform
        self._http = http
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._issued: str | None = None  # the token most recently handed out
        self._local = threading.local()  # the token this thread last sent
        self.fetches = 0  # tokens obtained from the token endpoint (not the cache)

    def headers(self) -> dict[str, str]:
        with self._lock:
            token = self._acquire()
        self._local.token = token
        return {"Authorization": f"Bearer {token}"}

    def refresh(self) -> None:
        with self._lock:
            failed = getattr(self._local, "token", None)
            if failed is not None and self._issued is not None and failed != self._issued:
                return  # another thread already replaced the token this one was refused with
            app = self._application()
            cache = app.token_cache
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
            self._acquire()

    def secrets(self) -> tuple[str, ...]:
        found = self.credentials.secrets()
        return found + ((self._issued,) if self._issued else ())

    # --- internals ---

    def _where(self) -> str:
        c = self.credentials
        return f"credentials block {c.name!r} (tenant {c.tenant_id}, client {c.client_id})"

    def _clean(self, text: str) -> str:
        return scrub(text, tuple(sorted(self.secrets(), key=len, reverse=True)))

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is not None:
            return self._app
        c = self.credentials
        credential: str | dict[str, str]
        if c.client_secret:
            credential = c.client_secret
        else:
            assert c.certificate_private_key and c.certificate_thumbprint
            credential = {
                "private_key": c.certificate_private_key,
                "thumbprint": c.certificate_thumbprint.replace(":", "").strip(),
            }
        host = c.authority_host.rstrip("/")
        try:
            # msal reads the authority's OpenID configuration here, over our transport.
            self._app = msal.ConfidentialClientApplication(
                c.client_id,
                client_credential=credential,
                authority=f"{host}/{c.tenant_id}",
                validate_authority=host == DEFAULT_AUTHORITY_HOST,
                instance_discovery=False,
                http_client=_MsalTransport(self._http),
                token_cache=msal.TokenCache(),
            )
        except Exception as exc:
            raise self._failure(exc, "cannot read the authority's OpenID configuration") from exc
        return self._app

    def _acquire(self) -> str:
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except Exception as exc:
            raise self._failure(exc, "cannot obtain an access token") from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            if result.get("token_source") != "cache":
                self.fetches += 1
            self._issued = token
            return token
        raise self._refused(result if isinstance(result, dict) else {})

    def _failure(self, exc: Exception, what: str) -> ConnectorError:
        if isinstance(exc, httpx.TransportError | MsalServiceError | json.JSONDecodeError):
            return TransientError(
                self._clean(f"{self._where()}: {what}: {type(exc).__name__}: {exc}"),
                platform=self.platform,
            )
        if isinstance(exc, ConnectorError):
            return exc
        # ValueError and friends: an unknown tenant, a bad authority URL or an unreadable key.
        return AuthError(self._clean(f"{self._where()}: {what}: {exc}"), platform=self.platform)

    def _refused(self, result: Mapping[str, Any]) -> ConnectorError:
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "")
        first = description.splitlines()[0].strip() if description else ""  # no trace ids
        codes = result.get("error_codes") or []
        text = f"{self._where()} was refused by Microsoft Entra ID: {error}"
        if first:
            text += f": {first}"
        if error == "invalid_client" and 7000215 in codes:
            text += " Put the secret's Value (not its ID) into the block, or rotate it."
        elif error == "invalid_client" and 7000222 in codes:
            text += " The client secret has expired: create a new one and update the block."
        message = self._clean(text)
        if error in ("temporarily_unavailable", "server_error"):
            return TransientError(message, platform=self.platform)
        return AuthError(message, platform=self.platform)
