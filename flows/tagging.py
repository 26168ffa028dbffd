"""Tag the running flow run with what it touched (platform:…, region:…), so ops can filter
runs in the Prefect UI by platform and region. Static deployment tags cannot know these."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from prefect import get_client
from prefect.logging import get_run_logger
from prefect.runtime import flow_run


def tag_run(*, platforms: Iterable[str] = (), regions: Iterable[str] = ()) -> list[str]:
    """Adds the tags to the current flow run; outside a run (plain function tests) does
    nothing. Tagging is cosmetic, so a failure is logged and never fails the sync."""
    wanted = sorted(
        {f"platform:{p}" for p in platforms if p} | {f"region:{r}" for r in regions if r}
    )
    run = flow_run.get_id()
    if not wanted or run is None:
        return wanted
    run_id = UUID(run)
    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(run_id)
            tags = sorted(set(current.tags) | set(wanted))
            if tags != sorted(current.tags):
                client.update_flow_run(run_id, tags=tags)
    except Exception as exc:  # cosmetic: never fail a sync over a tag
        get_run_logger().warning("Could not tag the run with %s: %s", wanted, exc)
    return wanted
