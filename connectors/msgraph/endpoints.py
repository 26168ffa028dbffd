"""Which service this is: the platform name fieldsync files Outlook results under, and
Microsoft's endpoints (Graph v1.0, Entra ID's login host, the app-only scope)."""

from __future__ import annotations

PLATFORM = "outlook"
DEFAULT_API_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
