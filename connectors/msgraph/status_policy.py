"""What Graph's error responses mean, where connectors.http's shared status table is not enough.

Graph puts the decisive detail in the error body's `code`: a malformed id is a missing event, a
missing mailbox is not, access denied may only need a fresh token, a full mailbox cannot be
retried. Everything else follows the shared table.
"""

from __future__ import annotations

import httpx

from connectors.http import Action, StatusPolicy, json_body

_NOT_FOUND_CODES = frozenset({"ErrorItemNotFound", "ItemNotFound"})
_ACCESS_DENIED_CODES = frozenset(
    {"ErrorAccessDenied", "Authorization_RequestDenied", "AccessDenied"}
)


def _graph_code(response: httpx.Response) -> str | None:
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _classify(response: httpx.Response) -> Action | None:
    status = response.status_code
    if status < 400:
        return None
    code = _graph_code(response)
    if status == 400 and code == "ErrorInvalidIdMalformed":
        return Action.NOT_FOUND  # no event can have that id in this mailbox
    if status == 404 and code is not None and code not in _NOT_FOUND_CODES:
        # A missing mailbox (ErrorInvalidUser, MailboxNotEnabledForRESTAPI) is not a missing
        # event: a delete there must fail loudly, not count as done.
        return Action.FAIL
    if status == 403 and code in _ACCESS_DENIED_CODES:
        # Newly granted application permissions only appear in a new token.
        return Action.REFRESH_AUTH
    if status == 507 or code == "ErrorQuotaExceeded":
        return Action.FAIL  # the mailbox is full: retrying cannot help until someone acts
    return None


GRAPH_POLICY = StatusPolicy(classify=_classify)
