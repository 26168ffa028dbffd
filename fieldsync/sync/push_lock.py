"""One pusher per calendar at a time, refereed by the store, not by timing.

Two workers handling overlapping triggers for the same jobs would otherwise both read the
ledger, both decide "create", and both call the platform. Each push therefore holds a lock
on every calendar binding it writes to, for the whole plan → reserve → call → record cycle,
and plans again once it holds them, so it sees what the other worker recorded.

- PostgreSQL: row locks on the bindings (`SELECT … FOR NO KEY UPDATE`), held by a
  transaction on a connection of their own. NO KEY UPDATE, because the ledger's inserts check
  their foreign key with KEY SHARE, which it does not block. A worker that dies releases its
  locks with its connection.
- SQLite (one machine by nature): an exclusive `flock` per binding in a directory beside the
  database file, released by the kernel when the process dies.

Locks are taken in ascending id order, so two pushers can never wait on each other in a cycle.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import select, text

from connectors.errors import TransientError
from fieldsync import settings
from fieldsync.store.db import get_engine
from fieldsync.store.tables import CalendarBinding

DEFAULT_WAIT_SECONDS = 600.0
_memory_locks: dict[int, threading.Lock] = {}
_memory_guard = threading.Lock()


class CalendarBusy(TransientError):
    """Another run is still pushing to the same calendar; retried like any transient error."""


def wait_seconds() -> float:
    return float(os.environ.get("FIELDSYNC_PUSH_LOCK_WAIT", DEFAULT_WAIT_SECONDS))


@contextmanager
def binding_locks(binding_ids: Iterable[int], db_url: str | None = None) -> Iterator[None]:
    ids = sorted(set(binding_ids))
    if not ids:
        yield
        return
    url = db_url or settings.database_url()
    if url.startswith("postgresql"):
        with _row_locks(ids, url):
            yield
    elif url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:":
            with _thread_locks(ids):
                yield
        else:
            with _file_locks(ids, Path(path)):
                yield
    else:
        raise ValueError(f"no push lock for database {settings.safe_database_url()}")


@contextmanager
def _row_locks(ids: list[int], url: str) -> Iterator[None]:
    engine = get_engine(url)
    with engine.connect() as conn, conn.begin() as trans:
        conn.execute(text(f"SET LOCAL lock_timeout = '{int(wait_seconds() * 1000)}ms'"))
        try:
            conn.execute(
                select(CalendarBinding.id)
                .where(CalendarBinding.id.in_(ids))
                .order_by(CalendarBinding.id)
                .with_for_update(key_share=True)
            ).all()
        except Exception as exc:
            if (
                "lock timeout" in str(exc).lower()
                or "LockNotAvailable" in type(getattr(exc, "orig", exc)).__name__
            ):
                raise CalendarBusy(
                    f"calendars {ids} are still being pushed by another run", platform=""
                ) from exc
            raise
        try:
            yield
        finally:
            trans.rollback()


@contextmanager
def _file_locks(ids: list[int], database: Path) -> Iterator[None]:
    folder = database.with_name(database.name + ".push-locks")
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds()
    with ExitStack() as stack:
        for binding_id in ids:
            handle = stack.enter_context(open(folder / f"binding-{binding_id}.lock", "a+b"))
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    if time.monotonic() > deadline:
                        raise CalendarBusy(
                            f"calendar binding {binding_id} is still being pushed by another run",
                            platform="",
                        ) from exc
                    time.sleep(0.02)
            stack.callback(fcntl.flock, handle.fileno(), fcntl.LOCK_UN)
        yield


@contextmanager
def _thread_locks(ids: list[int]) -> Iterator[None]:
    with ExitStack() as stack:
        for binding_id in ids:
            with _memory_guard:
                lock = _memory_locks.setdefault(binding_id, threading.Lock())
            stack.enter_context(lock)
        yield
