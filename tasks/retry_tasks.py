"""Tasks of the analysts' retry flow: find the failed items, and judge them afterwards."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from fieldsync.store.db import session_scope
from fieldsync.sync.failed import FailedFilter, FailedItem, RetryOutcome, outcomes, select_failed


@task(name="select-failed", cache_policy=NO_CACHE)
def select_failed_items(flt: FailedFilter) -> list[FailedItem]:
    with session_scope() as session:
        return select_failed(session, flt)


@task(name="retry-outcomes", cache_policy=NO_CACHE)
def retry_outcomes(
    items: Sequence[FailedItem], held: Collection[str], broken: Mapping[str, str]
) -> list[RetryOutcome]:
    with session_scope() as session:
        return outcomes(session, items, held, broken)
