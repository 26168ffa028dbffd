"""Google Calendar (API v3) connector, for Google accounts and Google Workspace domains.

Two ways in (blocks/google.py builds either): OAuth user credentials (platform "google"), one
Google account writing the technicians' calendars; or a service account with domain-wide
delegation (platform "google_workspace") impersonating each technician.

Modules, from the bottom up (each imports only the ones above it):

    endpoints   platform names, default API and token URLs, OAuth scopes
    mapping     CalendarEvent <-> Events resource: event ids, content, our job stamp
    busy        busy time from events.list, or freebusy.query where we may not list
    quotas      per-user and per-project request quotas, the batch size
    policy      Google's 403 rate limits on the shared status policy; batch-part errors
    auth        credentials a block holds; google-auth token refresh over our httpx client
    transport   the httplib2-compatible object the SDK sends through PolicyClient
    sessions    one Session (credentials, PolicyClient, SDK service) per Google user
    batch       multipart batches to /batch/calendar/v3, retrying retryable parts
    connector   GoogleCalendarConnector / GoogleWorkspaceConnector: the connector contract

Other code imports from `connectors.google_calendar`, which re-exports the public names.
"""
