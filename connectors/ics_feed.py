"""ICS feed connector: one RFC 5545 file per calendar, for calendar apps to subscribe to.

`<root>/<calendar_id>.ics` holds a technician's whole calendar. The remote id of an event is its
UID, derived from the idempotency key, so a retried create finds the event it already made. The
etag is the event's SEQUENCE. Deleting keeps the event as STATUS:CANCELLED with a higher
SEQUENCE: a subscribed device that saw it must learn that it is gone.

Every write is load -> change in memory -> write once: `push()` applies a whole batch to one
parse of the file and replaces the file atomically at most once, under an flock on a sidecar
lock file so concurrent pushes (threads or processes) to one calendar serialize instead of
losing each other's changes. Readers never lock: they see the old file or the new one.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from connectors.base import (
    BusyBlock,
    CalendarConnector,
    Op,
    OpResult,
    RemoteEvent,
    RemoteRef,
)
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
    TransientError,
)
from fieldsync.events import CalendarEvent
from fieldsync.ics import Feed, FeedEvent, IcsFormatError, build_feed, busy_intervals, parse_feed

PLATFORM = "ics"
UID_DOMAIN = "fieldsync"
# Letters, digits and . _ @ + -, starting with a letter or digit: no path separators, no
# hidden files, nothing a shell or web server treats specially.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")


def uid_for(key: str) -> str:
    return f"{key}@{UID_DOMAIN}"


class _FeedCache:
    """Parsed feeds by path, valid while the file's (device, inode, mtime_ns, size) hold.

    Every write replaces the file (new inode), so a change by another process, or by hand, is
    seen on the next load; our own writes store what they wrote, so they never need a re-parse.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[tuple[int, int, int, int], Feed]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def get(self, path: str, st: os.stat_result) -> Feed | None:
        with self._lock:
            found = self._items.get(path)
            if found is None or found[0] != self._signature(st):
                return None
            self._items.move_to_end(path)
            return found[1]

    def put(self, path: str, st: os.stat_result, feed: Feed) -> None:
        with self._lock:
            self._items[path] = (self._signature(st), feed)
            self._items.move_to_end(path)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _FeedCache()


def clear_cache() -> None:
    _cache.clear()


class _FeedSession(CalendarConnector):
    """One calendar's events held in memory, changed by the connector contract's operations.

    Being a CalendarConnector itself, it reuses `apply_one` and `_update_reconciling`, so a
    batch follows exactly the outcome rules of single calls.
    """

    platform: ClassVar[str] = PLATFORM
    keeps_history: ClassVar[bool] = True
    supports_read: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(self, feed: Feed, now: datetime) -> None:
        self.feed = feed
        self.now = now
        self.events = list(feed.events)
        self._position = {id(e): i for i, e in enumerate(self.events)}
        self._index = feed.index()
        self.dirty = False

    def _find(self, remote_id: str) -> FeedEvent:
        found = self._index.get(remote_id)
        if found is None:
            raise NotFoundError(f"event {remote_id} not found", platform=self.platform)
        return found

    def _owned(self, ref: RemoteRef) -> FeedEvent:
        found = self._find(ref.remote_id)
        if not found.owned:
            raise NotOwnedError(
                f"event {ref.remote_id} does not carry our job stamp", platform=self.platform
            )
        return found

    def _check_etag(self, found: FeedEvent, ref: RemoteRef) -> None:
        if ref.etag is not None and ref.etag != found.etag:
            raise PreconditionFailedError(
                f"event {ref.remote_id}: etag {ref.etag} is stale (SEQUENCE is {found.etag})",
                platform=self.platform,
            )

    def _render(
        self,
        event: CalendarEvent,
        *,
        uid: str,
        sequence: int,
        dtstamp: datetime,
        created: datetime | None,
        last_modified: datetime | None,
    ) -> FeedEvent:
        try:
            return FeedEvent.ours(
                event,
                uid=uid,
                sequence=sequence,
                dtstamp=dtstamp,
                created=created,
                last_modified=last_modified,
            )
        except IcsFormatError as exc:
            raise PermanentError(f"job {event.job_id}: {exc}", platform=self.platform) from exc

    def _put(self, old: FeedEvent | None, new: FeedEvent) -> RemoteRef:
        if old is None:
            self._position[id(new)] = len(self.events)
            self.events.append(new)
        else:
            position = self._position.pop(id(old))
            self.events[position] = new
            self._position[id(new)] = position
        assert new.uid is not None
        self._index[new.uid] = new
        self.dirty = True
        return RemoteRef(new.uid, new.etag)

    def _rewrite(self, current: FeedEvent, event: CalendarEvent) -> RemoteRef:
        """Give `current` new content; a no-op (same text, same SEQUENCE) when nothing changed."""
        assert current.uid is not None
        if current.dtstamp is not None:
            same = self._render(
                event,
                uid=current.uid,
                sequence=current.sequence,
                dtstamp=current.dtstamp,
                created=current.created,
                last_modified=current.last_modified,
            )
            if same.text == current.text:
                return RemoteRef(current.uid, current.etag)
        new = self._render(
            event,
            uid=current.uid,
            sequence=current.sequence + 1,
            dtstamp=self.now,
            created=current.created or self.now,
            last_modified=self.now,
        )
        return self._put(current, new)

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        uid = uid_for(key)
        current = self._index.get(uid)
        if current is None:
            new = self._render(
                event,
                uid=uid,
                sequence=0,
                dtstamp=self.now,
                created=self.now,
                last_modified=self.now,
            )
            return self._put(None, new)
        if not current.owned:
            raise NotOwnedError(
                f"event {uid} exists but does not carry our job stamp", platform=self.platform
            )
        return self._rewrite(current, event)  # a retried create: upsert, never a second event

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        current = self._owned(ref)
        self._check_etag(current, ref)
        return self._rewrite(current, event)

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        current = self._owned(ref)
        if current.cancelled:
            raise NotFoundError(
                f"event {ref.remote_id} is cancelled already", platform=self.platform
            )
        self._check_etag(current, ref)
        try:
            content = current.decode()
        except IcsFormatError as exc:
            raise PermanentError(
                f"event {ref.remote_id} carries our stamp but cannot be read: {exc}",
                platform=self.platform,
            ) from exc
        assert current.uid is not None
        self._put(
            current,
            self._render(
                replace(content, status="cancelled"),
                uid=current.uid,
                sequence=current.sequence + 1,
                dtstamp=self.now,
                created=current.created or self.now,
                last_modified=self.now,
            ),
        )

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        found = self._index.get(remote_id)
        if found is None:
            return None
        return RemoteEvent(RemoteRef(remote_id, found.etag), found.job_id, found.event)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        found = self.read(calendar_id, uid_for(key))
        return None if found is None else found.ref


class IcsFeedConnector(CalendarConnector):
    platform: ClassVar[str] = PLATFORM
    keeps_history: ClassVar[bool] = True
    supports_read: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True

    def __init__(
        self,
        root: Path,
        calendar_names: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.root = Path(root).absolute()  # cache keys must not depend on the cwd
        self.calendar_names = dict(calendar_names or {})
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- files ------------------------------------------------------------------------------

    def path_for(self, calendar_id: str) -> Path:
        """The feed file of a calendar; PermanentError naming the id if it is not a safe name."""
        if not isinstance(calendar_id, str) or not _SAFE_ID.fullmatch(calendar_id):
            raise PermanentError(
                f"calendar id {calendar_id!r} is not a safe file name: use letters, digits "
                "and . _ @ + - (starting with a letter or digit, at most 200 characters)",
                platform=self.platform,
            )
        return self.root / f"{calendar_id}.ics"

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _load(self, path: Path) -> Feed:
        key = str(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Feed()
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc}", platform=self.platform) from exc
        cached = _cache.get(key, st)
        if cached is not None:
            return cached
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())  # the signature of exactly the bytes we read
                data = handle.read()
        except FileNotFoundError:
            return Feed()
        except OSError as exc:
            raise TransientError(f"cannot read {path}: {exc}", platform=self.platform) from exc
        try:
            feed = parse_feed(data)
        except IcsFormatError as exc:
            # Never overwrite what we cannot read: it may be someone's hand-kept calendar.
            raise PermanentError(
                f"{path} is not a valid iCalendar file: {exc}", platform=self.platform
            ) from exc
        _cache.put(key, st, feed)
        return feed

    def _store(self, path: Path, calendar_id: str, session: _FeedSession) -> None:
        data, feed = build_feed(
            session.events,
            name=self.calendar_names.get(calendar_id, calendar_id),
            timezones=session.feed.timezones,
            others=session.feed.others,
            calendar_timezone=session.feed.calendar_timezone,
        )
        try:
            st = _atomic_write(path, data)
        except OSError as exc:
            raise TransientError(f"cannot write {path}: {exc}", platform=self.platform) from exc
        _cache.put(str(path), st, feed)

    @contextmanager
    def _writing(self, calendar_id: str) -> Iterator[_FeedSession]:
        """The calendar loaded under its lock; saved once on a clean exit if anything changed."""
        path = self.path_for(calendar_id)
        lock_path = path.with_name(f".{path.name}.lock")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TransientError(f"cannot lock {lock_path}: {exc}", platform=self.platform) from exc
        try:
            # Each call opens its own descriptor, so the flock also serializes threads.
            fcntl.flock(lock, fcntl.LOCK_EX)
            session = _FeedSession(self._load(path), self._now())
            yield session
            if session.dirty:
                self._store(path, calendar_id, session)
        finally:
            os.close(lock)  # releases the flock

    # --- contract ---------------------------------------------------------------------------

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        with self._writing(calendar_id) as session:
            return session.create(calendar_id, key, event)

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        with self._writing(calendar_id) as session:
            return session.update(calendar_id, ref, event)

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        with self._writing(calendar_id) as session:
            session.delete(calendar_id, ref)

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        if not ops:
            return []
        try:
            with self._writing(calendar_id) as session:
                return [session.apply_one(calendar_id, op) for op in ops]
        except ConnectorError as exc:
            # The file could not be locked, read or written: none of the batch landed.
            return [OpResult(op.item, op.kind, op.ref, error=exc) for op in ops]

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        feed = self._load(self.path_for(calendar_id))
        found = feed.find(remote_id)
        if found is None:
            return None
        return RemoteEvent(RemoteRef(remote_id, found.etag), found.job_id, found.event)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        # The UID is derived from the key, so what an unrecorded create made is found by it.
        found = self.read(calendar_id, uid_for(key))
        return None if found is None else found.ref

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        feed = self._load(self.path_for(calendar_id))
        return [BusyBlock(s, e, job) for s, e, job in busy_intervals(feed, start, end)]


def _atomic_write(path: Path, data: bytes) -> os.stat_result:
    """Replace `path` with `data` so readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # keep permissions someone set for the web server
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk, or a crash could bring the old file back.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return st
