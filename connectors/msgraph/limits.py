"""Per-mailbox limits, as data, shared by every Graph connector in the process.

Limits, as data
    Outlook serves at most 4 concurrent requests per mailbox, and Graph hands up to 4
    sub-requests of one batch to Outlook at once: a batch holds min(4, size) of the mailbox's 4
    slots. Each mailbox also has a token bucket sized so no 10-minute window exceeds 10,000
    requests (burst 1,000 + 15/s x 600 s); a batch spends one token per sub-request. Both are
    shared by every connector in the process. 429 Retry-After is honoured by PolicyClient.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from connectors.http import ConcurrencyLimit, RateLimiter

MAILBOX_CONCURRENCY = 4
# burst + rate * 600 s = 10,000: no 10-minute window can exceed the mailbox quota.
MAILBOX_BURST = 1_000
MAILBOX_RATE = 15.0


class MailboxSlots:
    """A ConcurrencyLimit whose holders may need several slots at once (a $batch).

    Multi-slot holders take their slots one by one under a per-key gate, so two of them never
    each hold half of what both need; single-slot holders skip the gate.
    """

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}

    def _gate(self, key: str) -> threading.Lock:
        with self._lock:
            return self._gates.setdefault(key, threading.Lock())

    @contextmanager
    def hold(self, key: str, weight: int = 1) -> Iterator[None]:
        weight = max(1, min(weight, self.limit.limit))
        if weight == 1:
            with self.limit.hold(key):
                yield
            return
        with ExitStack() as stack:
            with self._gate(key):
                for _ in range(weight):
                    stack.enter_context(self.limit.hold(key))
            yield


SHARED_MAILBOX_LIMIT = ConcurrencyLimit(MAILBOX_CONCURRENCY)
_slots_by_limit: weakref.WeakKeyDictionary[ConcurrencyLimit, MailboxSlots] = (
    weakref.WeakKeyDictionary()
)
_limiters: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def slots_for(limit: ConcurrencyLimit) -> MailboxSlots:
    """The one MailboxSlots over this limit, so every connector sharing it shares the gates."""
    with _registry_lock:
        slots = _slots_by_limit.get(limit)
        if slots is None:
            slots = _slots_by_limit[limit] = MailboxSlots(limit)
        return slots


def shared_limiter(key: str) -> RateLimiter:
    """The process-wide token bucket for one mailbox (key: API base URL and mailbox)."""
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = RateLimiter(MAILBOX_RATE, MAILBOX_BURST)
        return limiter
