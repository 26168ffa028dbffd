"""Microsoft 365 / Outlook calendars over Microsoft Graph (v1.0), with app-only credentials.

The public import path of the Graph connector (blocks, tests and benchmarks import from here).
The code lives in the `connectors.msgraph` package, one module per concern; each module's
docstring explains its part:

    calendar ids and URLs           connectors.msgraph.urls
    tokens (msal)                   connectors.msgraph.auth
    idempotency and ownership       connectors.msgraph.connector, .mapping, .events
    content (fields, time zones)    connectors.msgraph.mapping
    bulk ($batch of 20)             connectors.msgraph.batch, .push
    limits, as data                 connectors.msgraph.limits
    busy time                       connectors.msgraph.busy
"""

from __future__ import annotations

# `__all__` is as before the split; the `X as X` imports keep the module's other public names
# (limits, batch size, policy) importable from here too.
from connectors.msgraph.auth import GraphCredentials, GraphTokenProvider
from connectors.msgraph.batch import MAX_BATCH as MAX_BATCH
from connectors.msgraph.busy import SCHEDULE_WINDOW as SCHEDULE_WINDOW
from connectors.msgraph.busy import VIEW_PAGE_SIZE as VIEW_PAGE_SIZE
from connectors.msgraph.connector import MicrosoftGraphConnector
from connectors.msgraph.endpoints import DEFAULT_API_BASE_URL, DEFAULT_AUTHORITY_HOST
from connectors.msgraph.endpoints import GRAPH_SCOPE as GRAPH_SCOPE
from connectors.msgraph.endpoints import PLATFORM as PLATFORM
from connectors.msgraph.limits import MAILBOX_BURST as MAILBOX_BURST
from connectors.msgraph.limits import MAILBOX_CONCURRENCY as MAILBOX_CONCURRENCY
from connectors.msgraph.limits import MAILBOX_RATE as MAILBOX_RATE
from connectors.msgraph.mapping import (
    DATA_PROPERTY,
    JOB_PROPERTY,
    KEY_PROPERTY,
    decode_event,
    transaction_id,
)
from connectors.msgraph.mapping import PROPERTY_SET as PROPERTY_SET
from connectors.msgraph.status_policy import GRAPH_POLICY as GRAPH_POLICY
from connectors.msgraph.urls import parse_calendar_id

__all__ = [
    "DATA_PROPERTY",
    "DEFAULT_API_BASE_URL",
    "DEFAULT_AUTHORITY_HOST",
    "JOB_PROPERTY",
    "KEY_PROPERTY",
    "GraphCredentials",
    "GraphTokenProvider",
    "MicrosoftGraphConnector",
    "decode_event",
    "parse_calendar_id",
    "transaction_id",
]
