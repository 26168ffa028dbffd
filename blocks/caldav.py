"""Credentials blocks for CalDAV calendars: Apple iCloud, and any standard CalDAV server.

Calendar ids on bindings that use these blocks are either the calendar collection's name under
the account's calendar home (or its display name, when unique), an absolute path on the
server, or the collection's full URL; see connectors/caldav_calendar.py.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.caldav_calendar import ICLOUD_SERVER, CalDavConnector, ICloudConnector


class ICloudCalendarCredentials(CalendarBlock):
    """An Apple ID and an app-specific password for iCloud Calendar (CalDAV). Create the
    password at appleid.apple.com under Sign-In and Security; the account password itself is
    refused by iCloud."""

    _block_type_name = "fieldsync iCloud calendar credentials"
    _block_type_slug = "fieldsync-icloud-calendar"
    _code_example = """
```python
from blocks.caldav import ICloudCalendarCredentials

icloud_calendar_credentials = ICloudCalendarCredentials.load("BLOCK_NAME")
connector = icloud_calendar_credentials.connector()
```
"""
    platform: ClassVar[str] = "icloud"

    apple_id: str = Field(
        default=...,
        description="Apple ID (email address) that owns the calendars.",
    )
    app_specific_password: SecretStr = Field(
        default=...,
        description="App-specific password generated for fieldsync at appleid.apple.com.",
    )
    server_url: str = Field(
        default=ICLOUD_SERVER,
        description="CalDAV server URL; override only to point at a test server.",
    )

    def connector(self) -> CalendarConnector:
        return ICloudConnector(
            self.apple_id,
            self.app_specific_password.get_secret_value(),
            server_url=self.server_url,
        )


class CalDavCredentials(CalendarBlock):
    """Credentials for any standard CalDAV server (Nextcloud, Fastmail, Radicale, Xandikos,
    SOGo, ...): its URL, a user name and a password."""

    _block_type_name = "fieldsync CalDAV credentials"
    _block_type_slug = "fieldsync-caldav-calendar"
    _code_example = """
```python
from blocks.caldav import CalDavCredentials

caldav_credentials = CalDavCredentials.load("BLOCK_NAME")
connector = caldav_credentials.connector()
```
"""
    platform: ClassVar[str] = "caldav"

    server_url: str = Field(
        default=...,
        description=(
            "CalDAV server URL, its principal URL or one of its calendar URLs; the account's "
            "calendars are discovered from it."
        ),
    )
    username: str = Field(default=..., description="User name on the CalDAV server.")
    password: SecretStr = Field(
        default=..., description="Password (or app password) for that user."
    )
    auth_scheme: Literal["basic", "digest"] = Field(
        default="basic",
        description="HTTP authentication scheme the server expects: basic or digest.",
    )

    def connector(self) -> CalendarConnector:
        return CalDavConnector(
            self.server_url,
            self.username,
            self.password.get_secret_value(),
            auth_scheme=self.auth_scheme,
        )
