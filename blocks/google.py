"""Credentials blocks for Google Calendar: an OAuth user account, or a Workspace service account
with domain-wide delegation that impersonates each technician."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.errors import AuthError
from connectors.google_calendar import (
    DEFAULT_API_BASE_URL,
    DEFAULT_SCOPES,
    DEFAULT_TOKEN_URI,
    PLATFORM,
    WORKSPACE_PLATFORM,
    GoogleCalendarConnector,
    GoogleWorkspaceConnector,
    OAuthUserAuth,
    ServiceAccountAuth,
)


def _name(block: CalendarBlock) -> str:
    # Messages name the block document ops must fix; never any of its values.
    return block._block_document_name or block.get_block_type_slug()


class GoogleCalendarCredentials(CalendarBlock):
    """A Google account authorized for fieldsync with OAuth (client id, secret and refresh
    token). It writes every technician calendar it owns or that is shared with it for changes."""

    _block_type_name = "fieldsync Google Calendar"
    _block_type_slug = "fieldsync-google-calendar"
    _code_example = """
```python
from blocks.google import GoogleCalendarCredentials

google_calendar_credentials = GoogleCalendarCredentials.load("BLOCK_NAME")
connector = google_calendar_credentials.connector()
```
"""
    platform: ClassVar[str] = PLATFORM

    client_id: str = Field(
        description="OAuth client id of the Google Cloud project fieldsync was authorized with.",
    )
    client_secret: SecretStr = Field(description="OAuth client secret of that client id.")
    refresh_token: SecretStr = Field(
        description="Refresh token from authorizing the Google account for the calendar scopes.",
    )
    token_uri: str = Field(
        default=DEFAULT_TOKEN_URI,
        description="Google's OAuth token endpoint; override only for a test server.",
    )
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        description="Root URL of the Google APIs (Calendar and batch paths are added to it).",
    )

    def connector(self) -> CalendarConnector:
        auth = OAuthUserAuth(
            client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value(),
            refresh_token=self.refresh_token.get_secret_value(),
            token_uri=self.token_uri,
        )
        return GoogleCalendarConnector(
            auth, api_base_url=self.api_base_url, credentials_name=_name(self)
        )


class GoogleWorkspaceCredentials(CalendarBlock):
    """A Google Workspace service account with domain-wide delegation: fieldsync impersonates
    each technician (the calendar id is their email) to write their own calendar."""

    _block_type_name = "fieldsync Google Workspace"
    _block_type_slug = "fieldsync-google-workspace"
    _code_example = """
```python
from blocks.google import GoogleWorkspaceCredentials

google_workspace_credentials = GoogleWorkspaceCredentials.load("BLOCK_NAME")
connector = google_workspace_credentials.connector()
```
"""
    platform: ClassVar[str] = WORKSPACE_PLATFORM

    service_account_info: SecretStr = Field(
        description="The service account's JSON key file, as downloaded from Google Cloud.",
    )
    delegated_subject: str | None = Field(
        default=None,
        description=(
            "User to impersonate for every calendar; empty to impersonate each calendar's "
            "owner (the calendar id, a technician's email)."
        ),
    )
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        description="OAuth scopes granted to the service account's client id for delegation.",
    )
    token_uri: str | None = Field(
        default=None,
        description="Token endpoint; empty to use the key file's token_uri.",
    )
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        description="Root URL of the Google APIs (Calendar and batch paths are added to it).",
    )

    def connector(self) -> CalendarConnector:
        name = _name(self)
        try:
            info: Any = json.loads(self.service_account_info.get_secret_value())
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            # Never quote the value: it is a private key.
            raise AuthError(
                f"block {name!r}: service_account_info is not a service account JSON key file; "
                "paste the whole key file downloaded from Google Cloud",
                platform=self.platform,
            )
        auth = ServiceAccountAuth(
            info=info,
            subject=self.delegated_subject or None,
            scopes=tuple(self.scopes),
            token_uri=self.token_uri or None,
        )
        return GoogleWorkspaceConnector(auth, api_base_url=self.api_base_url, credentials_name=name)
