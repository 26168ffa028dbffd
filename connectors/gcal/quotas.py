"""Google Calendar API limits, as data: request quotas and the batch size.

`GoogleQuotas`: 600 requests/minute per user (the impersonated technician, or the OAuth account)
and 10,000/minute per project, as token buckets shared within the process; a batch of n requests
counts n, as Google counts it. A batch holds at most `MAX_BATCH` (50) requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from connectors.http import RateLimiter

__all__ = [
    "MAX_BATCH",
    "PROJECT_QUOTA",
    "SHARED_BUCKETS",
    "USER_QUOTA",
    "GoogleQuotas",
    "Quota",
    "QuotaBuckets",
    "UserAndProjectLimiter",
]

MAX_BATCH = 50


@dataclass(frozen=True)
class Quota:
    per_minute: float
    burst: int

    def limiter(self, sleep: Callable[[float], None]) -> RateLimiter:
        return RateLimiter(self.per_minute / 60.0, self.burst, sleep=sleep)


USER_QUOTA = Quota(per_minute=600, burst=MAX_BATCH)
PROJECT_QUOTA = Quota(per_minute=10_000, burst=500)


@dataclass(frozen=True)
class GoogleQuotas:
    """Calendar API usage limits: per user (per impersonated technician) and per project."""

    per_user: Quota = USER_QUOTA
    per_project: Quota = PROJECT_QUOTA


class QuotaBuckets:
    """Token buckets by (project) and (project, user), shared by every connector using it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], RateLimiter] = {}

    def bucket(
        self, key: tuple[str, ...], quota: Quota, sleep: Callable[[float], None]
    ) -> RateLimiter:
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = quota.limiter(sleep)
            return found


SHARED_BUCKETS = QuotaBuckets()


class UserAndProjectLimiter(RateLimiter):
    """Each request takes a token from its user's bucket and from the project's."""

    def __init__(self, user: RateLimiter, project: RateLimiter) -> None:
        super().__init__(user.rate, user.burst)
        self.user = user
        self.project = project

    def acquire(self) -> None:
        self.project.acquire()
        self.user.acquire()
