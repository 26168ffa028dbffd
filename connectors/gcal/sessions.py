"""Acting as one Google user: a `Session` per technician (or per OAuth account), opened once.

- OAuth user credentials (platform "google"): one Google account, authorized once for a refresh
  token, writes the technicians' calendars (its own, or ones shared with it): one session.
- A service account with domain-wide delegation (platform "google_workspace"): each technician
  is impersonated (subject = the calendar id, their email, unless the block names one delegated
  subject for every calendar), so each writes their own calendar under their own user quota:
  one session per subject.

A session bundles that user's credentials (`GoogleAuth`), a `PolicyClient` drawing on the
user's and the project's quota buckets, and the SDK service object sending through it.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import google.auth.credentials
import httpx
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build

from connectors.errors import AuthError
from connectors.gcal.auth import (
    GoogleAuth,
    OAuthUserAuth,
    SdkCredentials,
    ServiceAccountAuth,
    TokenTransport,
    refused_message,
    token_uri_of,
)
from connectors.gcal.policy import GOOGLE_POLICY
from connectors.gcal.quotas import GoogleQuotas, QuotaBuckets, UserAndProjectLimiter
from connectors.gcal.transport import PolicyHttp
from connectors.http import PolicyClient, RateLimiter

__all__ = ["Session", "SessionPool"]


@dataclass
class Session:
    """Everything that acts as one Google user: a technician, or the OAuth account."""

    subject: str
    auth: GoogleAuth
    policy: PolicyClient
    service: Any
    limiter: RateLimiter


class SessionPool:
    """The sessions of one connector, by subject, each opened on first use and then kept."""

    def __init__(
        self,
        auth: OAuthUserAuth | ServiceAccountAuth,
        *,
        platform: str,
        block: str,
        client: httpx.Client,
        api_endpoint: str,
        quotas: GoogleQuotas,
        buckets: QuotaBuckets,
        policy_args: dict[str, Any],
    ) -> None:
        self.auth = auth
        self.platform = platform
        self.block = block  # how error messages name the block, see auth.block_label
        self.api_endpoint = api_endpoint
        self._client = client
        self._quotas = quotas
        self._buckets = buckets
        self._policy_args = policy_args
        self._token_transport = TokenTransport(client)
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._service_account: service_account.Credentials | None = None

    def for_calendar(self, calendar_id: str) -> Session:
        """The session that writes this calendar, opened now if it is the first use."""
        subject = self._subject_for(calendar_id)
        with self._lock:
            session = self._sessions.get(subject)
            if session is None:
                session = self._sessions[subject] = self._open(subject)
            return session

    def _subject_for(self, calendar_id: str) -> str:
        if isinstance(self.auth, OAuthUserAuth):
            return ""  # one account writes every calendar
        subject = self.auth.subject or calendar_id
        if "@" not in subject:
            raise AuthError(
                f"calendar {calendar_id!r}: a Workspace service account writes a calendar by "
                "impersonating its owner, so the calendar id must be the technician's email "
                f"address, or {self.block} must name a delegated subject",
                platform=self.platform,
            )
        return subject

    def _open(self, subject: str) -> Session:
        credentials, secrets, user_key, project_key = self._credentials(subject)
        auth = GoogleAuth(
            credentials,
            self._token_transport,
            platform=self.platform,
            refused=lambda code, text: refused_message(self.auth, self.block, subject, code, text),
            secrets=secrets,
        )
        sleep = self._policy_args["sleep"]
        limiter = UserAndProjectLimiter(
            self._buckets.bucket(("user", project_key, user_key), self._quotas.per_user, sleep),
            self._buckets.bucket(("project", project_key), self._quotas.per_project, sleep),
        )
        policy = PolicyClient(
            self.platform,
            self._client,
            auth,
            policy=GOOGLE_POLICY,
            limiter=limiter,
            **self._policy_args,
        )
        http = PolicyHttp(policy, SdkCredentials(auth))
        service = build(
            "calendar",
            "v3",
            http=http,
            static_discovery=True,
            cache_discovery=False,  # the bundled document needs no cache
            client_options={"api_endpoint": self.api_endpoint},
        )
        return Session(subject, auth, policy, service, limiter)

    def _credentials(
        self, subject: str
    ) -> tuple[google.auth.credentials.Credentials, tuple[str, ...], str, str]:
        """(credentials, secret values to scrub, quota user key, quota project key)."""
        if isinstance(self.auth, OAuthUserAuth):
            a = self.auth
            credentials = oauth_credentials.Credentials(  # type: ignore[no-untyped-call]
                token=None,
                refresh_token=a.refresh_token,
                token_uri=a.token_uri,
                client_id=a.client_id,
                client_secret=a.client_secret,
            )
            user = hashlib.sha256(f"{a.client_id}\0{a.refresh_token}".encode()).hexdigest()[:16]
            return credentials, (a.refresh_token, a.client_secret), user, a.client_id
        if self._service_account is None:
            info = dict(self.auth.info)
            info["token_uri"] = token_uri_of(self.auth)
            try:
                loaded = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=list(self.auth.scopes)
                )
                self._service_account = loaded
            except (ValueError, KeyError, TypeError) as exc:
                raise AuthError(
                    f"{self.block}: service_account_info is not a usable service account "
                    f"JSON key ({type(exc).__name__}); download a new key for the service "
                    "account and save it in the block",
                    platform=self.platform,
                ) from None
        key = str(self.auth.info.get("private_key") or "")
        project = str(self.auth.info.get("project_id") or self.auth.info.get("client_email"))
        return self._service_account.with_subject(subject), (key,), subject, project
