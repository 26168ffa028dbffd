"""Google Calendar (API v3) connector: the public names of the `connectors.gcal` package.

The code lives in connectors/gcal/ (its package docstring maps the modules); this module keeps
`from connectors.google_calendar import ...` working for blocks, tasks, tests and benchmarks.
"""

from __future__ import annotations

from connectors.gcal.auth import OAuthUserAuth, ServiceAccountAuth
from connectors.gcal.connector import GoogleCalendarConnector, GoogleWorkspaceConnector
from connectors.gcal.endpoints import (
    DEFAULT_API_BASE_URL,
    DEFAULT_SCOPES,
    DEFAULT_TOKEN_URI,
    PLATFORM,
    WORKSPACE_PLATFORM,
)
from connectors.gcal.mapping import (
    STAMP_KEY,
    EventEncodingError,
    decode_event,
    event_body,
    event_id_for,
    stamp_of,
)
from connectors.gcal.policy import GOOGLE_POLICY, RATE_LIMIT_REASONS
from connectors.gcal.quotas import (
    MAX_BATCH,
    PROJECT_QUOTA,
    SHARED_BUCKETS,
    USER_QUOTA,
    GoogleQuotas,
    Quota,
    QuotaBuckets,
)

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_SCOPES",
    "DEFAULT_TOKEN_URI",
    "GOOGLE_POLICY",
    "MAX_BATCH",
    "PLATFORM",
    "PROJECT_QUOTA",
    "RATE_LIMIT_REASONS",
    "SHARED_BUCKETS",
    "STAMP_KEY",
    "USER_QUOTA",
    "WORKSPACE_PLATFORM",
    "EventEncodingError",
    "GoogleCalendarConnector",
    "GoogleQuotas",
    "GoogleWorkspaceConnector",
    "OAuthUserAuth",
    "Quota",
    "QuotaBuckets",
    "ServiceAccountAuth",
    "decode_event",
    "event_body",
    "event_id_for",
    "stamp_of",
]
