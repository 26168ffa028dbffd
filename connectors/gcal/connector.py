"""The Google Calendar (API v3) connector: the connector contract over sessions, requests and
batches.

Idempotent create. The event id comes from the idempotency key (mapping.event_id_for). Google
guarantees an insert whose id exists fails with 409 duplicate - deleted-but-not-purged events
included - so a retried create never makes a second event: on 409 we fetch the event and, if it
is ours and differs, patch it. `lookup()` is a GET of that id.

Ownership. Our events carry our job stamp (mapping.STAMP_KEY). An update or delete holding the
etag we recorded goes straight out with If-Match: a matching etag proves the event is still the
version we wrote, stamp included, so no read is spent. Without an etag, or after a 412, the
event is read first and touched only if it carries the stamp (else NotOwnedError); so
`_update_reconciling` is overridden to refuse a re-read foreign event. Deleting marks an event
cancelled; deleting it again is 410 -> NotFoundError.

Bulk. push() sends creates, and updates/deletes holding an etag, through batch.run_batches; a
409 on create, a 412 on patch or delete is then settled outside the batch with the
single-event code above; a 404/410 on delete is done. Ops that need a read first (no ref, or
no etag) go through apply_one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import httpx
from googleapiclient.errors import Error as SdkError
from googleapiclient.errors import HttpError

from connectors.base import BusyBlock, CalendarConnector, Op, OpResult, RemoteEvent, RemoteRef
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
    TransientError,
)
from connectors.gcal.auth import OAuthUserAuth, ServiceAccountAuth, block_label, token_uri_of
from connectors.gcal.batch import run_batches
from connectors.gcal.busy import busy_from_events, busy_from_freebusy
from connectors.gcal.endpoints import DEFAULT_API_BASE_URL, PLATFORM, WORKSPACE_PLATFORM
from connectors.gcal.mapping import (
    EventEncodingError,
    decode_event,
    event_body,
    event_id_for,
    ref_of,
    stamp_of,
)
from connectors.gcal.policy import GOOGLE_POLICY, as_httpx, error_for, uri_path
from connectors.gcal.quotas import MAX_BATCH, SHARED_BUCKETS, GoogleQuotas, QuotaBuckets
from connectors.gcal.sessions import Session, SessionPool
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent

__all__ = ["GoogleCalendarConnector", "GoogleWorkspaceConnector"]

_CONFLICT_ATTEMPTS = 3


class GoogleCalendarConnector(CalendarConnector):
    """Google Calendar through one Google account's OAuth refresh token (platform "google")."""

    platform: ClassVar[str] = PLATFORM
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(
        self,
        auth: OAuthUserAuth | ServiceAccountAuth,
        *,
        api_base_url: str = DEFAULT_API_BASE_URL,
        credentials_name: str = "",
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        quotas: GoogleQuotas | None = None,
        buckets: QuotaBuckets | None = None,
        batch_size: int = MAX_BATCH,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.auth = auth
        self.credentials_name = credentials_name
        base = api_base_url.rstrip("/")
        self.api_endpoint = f"{base}/calendar/v3/"
        # The SDK's new_batch_http_request() takes the batch URL from the discovery document's
        # rootUrl and ignores client_options.api_endpoint, so the batch is built with it here.
        self.batch_uri = f"{base}/batch/calendar/v3"
        self.max_retries = max_retries
        self.batch_size = batch_size
        policy_args: dict[str, Any] = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
            "max_retry_after": max_retry_after,
            "sleep": sleep,
            "rng": rng,
        }
        self._sleep = sleep
        self._counts_lock = threading.Lock()
        self.api_requests = 0  # HTTP requests sent to the Calendar API, retries included
        self.token_requests = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            event_hooks={"request": [self._count]},
        )
        self._sessions = SessionPool(
            auth,
            platform=self.platform,
            block=block_label(credentials_name),
            client=self._client,
            api_endpoint=self.api_endpoint,
            quotas=quotas or GoogleQuotas(),
            buckets=buckets or SHARED_BUCKETS,
            policy_args=policy_args,
        )

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def http_requests(self) -> int:
        return self.api_requests + self.token_requests

    def _count(self, request: httpx.Request) -> None:
        token_uri = httpx.URL(token_uri_of(self.auth))
        token = request.url.host == token_uri.host and request.url.path == token_uri.path
        with self._counts_lock:
            if token:
                self.token_requests += 1
            else:
                self.api_requests += 1

    def close(self) -> None:
        self._client.close()

    def _session(self, calendar_id: str) -> Session:
        return self._sessions.for_calendar(calendar_id)

    def _body(self, event: CalendarEvent, *, for_patch: bool = False) -> dict[str, Any]:
        try:
            return event_body(event, for_patch=for_patch)
        except EventEncodingError as exc:
            raise PermanentError(f"job {event.job_id}: {exc}", platform=self.platform) from exc

    def _call(self, session: Session, request: Any) -> Any:
        """Execute one SDK request; non-2xx answers arrive as ConnectorErrors from PolicyClient."""
        try:
            return request.execute()
        except HttpError as exc:
            # Only a 3xx gets here (PolicyClient returns those as they are).
            response = as_httpx(exc.resp, exc.content)
            action = GOOGLE_POLICY.action_for(response)
            raise error_for(
                action, request, response, 1, platform=self.platform, secrets=session.auth.secrets()
            ) from exc
        except SdkError as exc:
            raise TransientError(
                f"{request.method} {uri_path(request.uri)}: unreadable reply from Google "
                f"({type(exc).__name__})",
                platform=self.platform,
            ) from exc

    # --- requests ----------------------------------------------------------------------------

    def _insert(self, session: Session, calendar_id: str, event_id: str, ev: CalendarEvent) -> Any:
        body = {"id": event_id, **self._body(ev)}
        return session.service.events().insert(
            calendarId=calendar_id, body=body, sendUpdates="none"
        )

    def _patch(
        self, session: Session, calendar_id: str, remote_id: str, etag: str, ev: CalendarEvent
    ) -> Any:
        request = session.service.events().patch(
            calendarId=calendar_id,
            eventId=remote_id,
            body=self._body(ev, for_patch=True),
            sendUpdates="none",
        )
        request.headers["If-Match"] = etag
        return request

    def _delete(self, session: Session, calendar_id: str, remote_id: str, etag: str) -> Any:
        request = session.service.events().delete(
            calendarId=calendar_id, eventId=remote_id, sendUpdates="none"
        )
        request.headers["If-Match"] = etag
        return request

    def _get(self, session: Session, calendar_id: str, remote_id: str) -> dict[str, Any] | None:
        request = session.service.events().get(calendarId=calendar_id, eventId=remote_id)
        try:
            item: dict[str, Any] = self._call(session, request)
        except NotFoundError:
            return None
        return item

    def _owned(self, session: Session, calendar_id: str, remote_id: str) -> dict[str, Any]:
        item = self._get(session, calendar_id, remote_id)
        if item is None:
            raise NotFoundError(f"event {remote_id} not found", platform=self.platform, status=404)
        if stamp_of(item) is None:
            raise NotOwnedError(
                f"event {remote_id} does not carry our job stamp", platform=self.platform
            )
        return item

    # --- contract ----------------------------------------------------------------------------

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        session = self._session(calendar_id)
        event_id = event_id_for(key)
        try:
            item = self._call(session, self._insert(session, calendar_id, event_id, event))
        except PreconditionFailedError as exc:
            if exc.status != 409:
                raise
            return self._adopt(session, calendar_id, event_id, event)
        return ref_of(item)

    def _adopt(
        self, session: Session, calendar_id: str, event_id: str, event: CalendarEvent
    ) -> RemoteRef:
        """The id of a create is taken: our own earlier attempt whose reply was lost."""
        for _ in range(_CONFLICT_ATTEMPTS):
            item = self._get(session, calendar_id, event_id)
            if item is None:
                # Purged since the 409: the id is free again.
                try:
                    return ref_of(
                        self._call(session, self._insert(session, calendar_id, event_id, event))
                    )
                except PreconditionFailedError as exc:
                    if exc.status != 409:
                        raise
                    continue
            job_id, current = decode_event(item)
            if job_id is None:
                raise NotOwnedError(
                    f"event id {event_id} is taken by an event without our job stamp",
                    platform=self.platform,
                )
            if current is not None and current.canonical() == event.canonical():
                return ref_of(item)
            try:
                request = self._patch(session, calendar_id, event_id, str(item["etag"]), event)
                return ref_of(self._call(session, request))
            except PreconditionFailedError:
                continue  # changed again since our read: read it once more
        raise PreconditionFailedError(
            f"event {event_id} kept changing while we reconciled a repeated create",
            platform=self.platform,
        )

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        session = self._session(calendar_id)
        etag = ref.etag
        if etag is None:
            # Nothing proves the event is ours: read it before writing.
            etag = str(self._owned(session, calendar_id, ref.remote_id)["etag"])
        return ref_of(
            self._call(session, self._patch(session, calendar_id, ref.remote_id, etag, event))
        )

    def _update_reconciling(self, calendar_id: str, op: Op) -> RemoteRef:
        assert op.ref is not None and op.event is not None
        try:
            return self.update(calendar_id, op.ref, op.event)
        except PreconditionFailedError:
            return self._update_fresh(calendar_id, op.ref.remote_id, op.event)

    def _update_fresh(self, calendar_id: str, remote_id: str, event: CalendarEvent) -> RemoteRef:
        """After a 412: our content wins, but only while the event still carries our stamp."""
        session = self._session(calendar_id)
        try:
            item = self._owned(session, calendar_id, remote_id)
        except NotFoundError:
            raise NotFoundError(
                f"event {remote_id} vanished during update", platform=self.platform
            ) from None
        request = self._patch(session, calendar_id, remote_id, str(item["etag"]), event)
        return ref_of(self._call(session, request))

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        session = self._session(calendar_id)
        if ref.etag is not None:
            try:
                self._call(session, self._delete(session, calendar_id, ref.remote_id, ref.etag))
                return
            except PreconditionFailedError:
                pass  # edited since our write: delete it still, if it still carries our stamp
        self._delete_fresh(session, calendar_id, ref.remote_id)

    def _delete_fresh(self, session: Session, calendar_id: str, remote_id: str) -> None:
        item = self._owned(session, calendar_id, remote_id)
        if item.get("status") == "cancelled":
            raise NotFoundError(
                f"event {remote_id} is deleted already", platform=self.platform, status=410
            )
        self._call(session, self._delete(session, calendar_id, remote_id, str(item["etag"])))

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        session = self._session(calendar_id)
        item = self._get(session, calendar_id, remote_id)
        if item is None:
            return None
        job_id, event = decode_event(item)
        return RemoteEvent(ref_of(item), job_id, event)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        found = self.read(calendar_id, event_id_for(key))
        return None if found is None else found.ref

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        session = self._session(calendar_id)
        call = partial(self._call, session)
        try:
            blocks = busy_from_events(call, session.service, calendar_id, start, end)
        except NotFoundError:
            blocks = busy_from_freebusy(
                call, session.service, calendar_id, start, end, platform=self.platform
            )
        except PermanentError as exc:
            if exc.status != 403:
                raise
            blocks = busy_from_freebusy(
                call, session.service, calendar_id, start, end, platform=self.platform
            )
        return sorted(blocks, key=lambda b: (b.start, b.end))

    # --- bulk --------------------------------------------------------------------------------

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            session = self._session(calendar_id)
        except ConnectorError as exc:
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]
        results: dict[int, OpResult] = {}
        planned: list[tuple[int, Any]] = []
        one_by_one: list[int] = []
        for position, op in enumerate(ops):
            try:
                request = self._batched(session, calendar_id, op)
            except ConnectorError as exc:
                results[position] = OpResult(op.item, op.kind, op.ref, error=exc)
                continue
            if request is None:
                one_by_one.append(position)
            else:
                planned.append((position, request))
        outcomes = run_batches(
            session,
            planned,
            batch_uri=self.batch_uri,
            batch_size=self.batch_size,
            max_retries=self.max_retries,
            platform=self.platform,
            sleep=self._sleep,
        )
        for position, _ in planned:
            results[position] = self._settle(
                session, calendar_id, ops[position], outcomes[position]
            )
        for position in one_by_one:
            results[position] = self.apply_one(calendar_id, ops[position])
        return [results[position] for position in range(len(ops))]

    def _batched(self, session: Session, calendar_id: str, op: Op) -> Any:
        """The request an op sends in a batch; None when it must read first (apply_one)."""
        if op.kind is OpKind.CREATE:
            assert op.event is not None
            return self._insert(session, calendar_id, event_id_for(op.key), op.event)
        if op.ref is None or op.ref.etag is None:
            return None
        if op.kind is OpKind.UPDATE:
            assert op.event is not None
            return self._patch(session, calendar_id, op.ref.remote_id, op.ref.etag, op.event)
        return self._delete(session, calendar_id, op.ref.remote_id, op.ref.etag)

    def _settle(self, session: Session, calendar_id: str, op: Op, outcome: Any) -> OpResult:
        """An op's result from its part's outcome, by the rules the single calls follow."""
        if not isinstance(outcome, ConnectorError):
            if op.kind is OpKind.DELETE:
                return OpResult(op.item, op.kind, op.ref)
            return OpResult(op.item, op.kind, ref_of(outcome))
        try:
            if isinstance(outcome, PreconditionFailedError):
                if op.kind is OpKind.CREATE and outcome.status == 409:
                    assert op.event is not None
                    ref = self._adopt(session, calendar_id, event_id_for(op.key), op.event)
                    return OpResult(op.item, op.kind, ref)
                if op.kind is OpKind.UPDATE:
                    assert op.ref is not None and op.event is not None
                    ref = self._update_fresh(calendar_id, op.ref.remote_id, op.event)
                    return OpResult(op.item, op.kind, ref)
                if op.kind is OpKind.DELETE:
                    assert op.ref is not None
                    with suppress(NotFoundError):  # gone meanwhile: the delete is done
                        self._delete_fresh(session, calendar_id, op.ref.remote_id)
                    return OpResult(op.item, op.kind, op.ref)
            if isinstance(outcome, NotFoundError) and op.kind is OpKind.DELETE:
                return OpResult(op.item, op.kind, op.ref)  # already gone: done
            return OpResult(op.item, op.kind, op.ref, error=outcome)
        except ConnectorError as exc:
            return OpResult(op.item, op.kind, op.ref, error=exc)


class GoogleWorkspaceConnector(GoogleCalendarConnector):
    """The same connector, for a Workspace service account impersonating each technician."""

    platform: ClassVar[str] = WORKSPACE_PLATFORM
