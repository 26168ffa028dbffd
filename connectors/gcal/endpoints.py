"""Which Google a connector talks to by default: platform names, API and token URLs, scopes."""

from __future__ import annotations

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_SCOPES",
    "DEFAULT_TOKEN_URI",
    "PLATFORM",
    "WORKSPACE_PLATFORM",
]

PLATFORM = "google"
WORKSPACE_PLATFORM = "google_workspace"
DEFAULT_API_BASE_URL = "https://www.googleapis.com/"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# Events read and write, plus free/busy for calendars shared with us only that far.
DEFAULT_SCOPES = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
)
