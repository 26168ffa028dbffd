"""MicrosoftGraphConnector: the CalendarConnector contract over Microsoft Graph (v1.0).

Idempotency and ownership
    A create sends `transactionId` (derived from the idempotency key) and stamps the key on the
    event. `lookup()` finds an earlier create by its key ($filter on the key property),
    `create()` looks there before POSTing, and a bulk `push()` looks up the creates the ledger
    marks as retries (an earlier attempt may have landed), so a first create costs no lookup and
    a repeated one is never made twice.
    Events without our job stamp are never changed: update/delete without an etag first read the
    event's stamp (NotOwnedError when absent); with an etag (from our own last write) If-Match
    proves the event is exactly as we left it, and a 412 leads to a re-read that checks the stamp
    again before our content wins.

Bulk
    `push()` sends JSON `$batch` requests of at most 20 sub-requests and applies `apply_one`'s
    outcome rules to each (see connectors.msgraph.push and .batch). 200 first creates cost 10
    batches.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar

import httpx

from connectors.base import BusyBlock, CalendarConnector, Op, OpResult, RemoteEvent, RemoteRef
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
)
from connectors.http import ConcurrencyLimit, RateLimiter
from connectors.msgraph.auth import GraphCredentials, GraphTokenProvider
from connectors.msgraph.busy import busy_blocks
from connectors.msgraph.endpoints import DEFAULT_API_BASE_URL, PLATFORM
from connectors.msgraph.events import delete_exact, owned_ref, patch_event, read_event
from connectors.msgraph.limits import SHARED_MAILBOX_LIMIT, shared_limiter, slots_for
from connectors.msgraph.mapping import (
    KEY_PROPERTY,
    PREFER_UTC_TEXT,
    create_body,
    extended_properties,
    remote_ref,
)
from connectors.msgraph.push import verify_ownership, write_batched
from connectors.msgraph.session import GraphSession, json_object
from connectors.msgraph.urls import expand_properties, odata_literal, parse_target, with_query
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent


class MicrosoftGraphConnector(CalendarConnector):
    platform: ClassVar[str] = PLATFORM
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(
        self,
        credentials: GraphCredentials,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        http_client: httpx.Client | None = None,
        timeout: float = 30.0,
        reminder_minutes: int | None = 15,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        mailbox_limit: ConcurrencyLimit | None = None,
        mailbox_rate: Callable[[str], RateLimiter] | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_base_url = api_base_url.rstrip("/")
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        # Requests actually sent (retries included), for the benchmark's requests per event.
        self.requests: Counter[str] = Counter()
        self._http.event_hooks.setdefault("request", []).append(self._count)
        self.auth = GraphTokenProvider(credentials, self._http, platform=self.platform)
        self.reminder_minutes = reminder_minutes
        self._session = GraphSession(
            self.api_base_url,
            self._http,
            self.auth,
            platform=self.platform,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
            slots=slots_for(mailbox_limit or SHARED_MAILBOX_LIMIT),
            rate=mailbox_rate or (lambda mailbox: shared_limiter(f"{self.api_base_url}|{mailbox}")),
        )

    def __repr__(self) -> str:
        return f"MicrosoftGraphConnector({self.credentials.name!r}, {self.api_base_url!r})"

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    @property
    def graph_requests(self) -> int:
        return self.requests["graph"]

    def _count(self, request: httpx.Request) -> None:
        kind = "graph" if str(request.url).startswith(self.api_base_url) else "login"
        self.requests[kind] += 1

    # --- contract ---

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        target = parse_target(calendar_id)
        existing = self.lookup(calendar_id, key)
        if existing is not None:
            # An earlier create with this key landed but its outcome was lost: bring that
            # event up to date rather than making a second one.
            return self._update_reconciling(calendar_id, Op(0, OpKind.UPDATE, key, event, existing))
        resp = self._session.call(
            target,
            "POST",
            target.events,
            json=create_body(key, event, self.reminder_minutes),
            headers={"Prefer": PREFER_UTC_TEXT},
        )
        return remote_ref(json_object(resp, "POST event"), "POST event")

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        target = parse_target(calendar_id)
        if ref.etag is None:
            ref = owned_ref(self._session, target, ref.remote_id)
        return patch_event(self._session, target, ref, event, self.reminder_minutes)

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        target = parse_target(calendar_id)
        if ref.etag is None:
            ref = owned_ref(self._session, target, ref.remote_id)
        try:
            delete_exact(self._session, target, ref)
        except PreconditionFailedError:
            # Changed since our last write (by hand, in Outlook): delete it if it is still ours.
            delete_exact(self._session, target, owned_ref(self._session, target, ref.remote_id))

    def _update_reconciling(self, calendar_id: str, op: Op) -> RemoteRef:
        assert op.ref is not None and op.event is not None
        try:
            return self.update(calendar_id, op.ref, op.event)
        except PreconditionFailedError:
            current = self.read(calendar_id, op.ref.remote_id)
            if current is None:
                raise NotFoundError(
                    f"event {op.ref.remote_id} vanished during update", platform=PLATFORM
                ) from None
            if current.job_id is None:
                raise NotOwnedError(
                    f"event {op.ref.remote_id} no longer carries our job stamp", platform=PLATFORM
                ) from None
            return self.update(calendar_id, current.ref, op.event)

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        return read_event(self._session, parse_target(calendar_id), remote_id)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        target = parse_target(calendar_id)
        url = with_query(
            target.events,
            {
                "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{odata_literal(KEY_PROPERTY)} and ep/value eq {odata_literal(key)})",
                "$select": "id",
                "$expand": expand_properties(KEY_PROPERTY),
            },
        )
        for item in self._session.pages(target, url):
            # Graph compares property values case-insensitively; keys are exact.
            if extended_properties(item).get(KEY_PROPERTY) == key:
                return remote_ref(item, "GET events")
        return None

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        return busy_blocks(self._session, parse_target(calendar_id), start, end)

    # --- bulk ---

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            target = parse_target(calendar_id)
        except ConnectorError as exc:
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]
        results: dict[int, OpResult] = {}
        refs: dict[int, RemoteRef] = {}
        verify: list[int] = []
        write: list[int] = []
        creates: list[int] = []
        for pos, op in enumerate(ops):
            if op.kind is not OpKind.DELETE and op.event is None:
                results[pos] = OpResult(
                    op.item,
                    op.kind,
                    op.ref,
                    error=PermanentError(f"{op.kind.value} without an event", platform=PLATFORM),
                )
            elif op.kind is OpKind.CREATE:
                creates.append(pos)
            elif op.ref is None:
                # The create's outcome was never recorded: the shared rules look it up first.
                results[pos] = self.apply_one(calendar_id, op)
            elif op.ref.etag is None:
                verify.append(pos)
            else:
                refs[pos] = op.ref
                write.append(pos)
        for p in creates:
            if ops[p].retry:
                # An earlier attempt may have landed and Graph may have forgotten its
                # transactionId: find it by our key property before creating again.
                try:
                    found = self.lookup(calendar_id, ops[p].key)
                except ConnectorError as exc:
                    results[p] = OpResult(ops[p].item, ops[p].kind, error=exc)
                    continue
                if found is not None:
                    refs[p] = found
            write.append(p)
        if verify:
            verify_ownership(self._session, target, ops, verify, refs, results, write)
        if write:
            write_batched(
                self._session, target, ops, sorted(write), refs, results, self.reminder_minutes
            )
        return [results[p] for p in range(len(ops))]
