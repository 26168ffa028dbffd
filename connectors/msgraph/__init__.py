"""The Microsoft Graph calendar connector, one module per concern.

Import it from `connectors.graph`, the stable public path; these modules are its parts:

    endpoints      the platform name and Microsoft's default endpoints
    auth           GraphCredentials, and msal token acquisition over our httpx.Client
    urls           calendar ids ("tech@contoso.com[/<calendarId>]") and the Graph URLs they lead to
    mapping        CalendarEvent <-> Graph event JSON: extended properties, time zones
    status_policy  what Graph's error bodies mean beyond the shared status table
    limits         per-mailbox concurrency slots and rate limits, shared process-wide
    session        requests for one connector under the policy and the mailbox limits
    batch          JSON $batch of at most 20 sub-requests, with retries of throttled ones
    events         single-event requests: read, ownership check, PATCH, DELETE
    busy           busy time from getSchedule and calendarView
    push           push()'s batched verify / write / 412-reconcile path
    connector      MicrosoftGraphConnector, the CalendarConnector itself

Imports point down this list (connector uses everything above it); none imports Prefect.
"""
