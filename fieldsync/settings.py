"""Where things live, from the environment, with embedded defaults that need no accounts."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path(os.environ.get("FIELDSYNC_HOME", "var"))


def home() -> Path:
    return Path(os.environ.get("FIELDSYNC_HOME", str(DEFAULT_HOME)))


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        # Accept the common "postgres://" / "postgresql://" spellings; we drive psycopg 3.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    return f"sqlite:///{home() / 'fieldsync.db'}"


def safe_database_url() -> str:
    """The store URL for humans: a PostgreSQL password never reaches a log or a terminal."""
    url = database_url()
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def feed_dir() -> Path:
    return Path(os.environ.get("FIELDSYNC_FEED_DIR", str(home() / "feeds")))


def mass_delete_min() -> int:
    """Deleting fewer events than this is never treated as a mass deletion."""
    return int(os.environ.get("FIELDSYNC_MASS_DELETE_MIN", "3"))


def conflict_policy() -> str:
    """What happens to a job in a critical conflict: tentative (default), hold or push."""
    value = os.environ.get("FIELDSYNC_CONFLICT_POLICY", "tentative")
    if value not in ("tentative", "hold", "push"):
        raise ValueError(f"FIELDSYNC_CONFLICT_POLICY is {value!r}; use tentative, hold or push")
    return value


def alert_blocks() -> list[str]:
    """Alert channel blocks ("slug/name", comma separated) every conflict alert goes to."""
    raw = os.environ.get("FIELDSYNC_ALERT_BLOCKS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def ops_alert_blocks() -> list[str]:
    """Where ops alerts (failed runs, conflicts seen by automations) go; default: the same
    channels as conflict alerts."""
    raw = os.environ.get("FIELDSYNC_OPS_ALERT_BLOCKS")
    if raw is None:
        return alert_blocks()
    return [name.strip() for name in raw.split(",") if name.strip()]


def push_retry_delays() -> list[float]:
    raw = os.environ.get("FIELDSYNC_PUSH_RETRY_DELAYS", "2,10,30")
    return [float(x) for x in raw.split(",") if x.strip()]
