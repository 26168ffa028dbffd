"""Run one shift-start sync in a process of its own, so a test can SIGKILL it mid-push.

    python -m tests.sync_worker 2026-12-01

DATABASE_URL and PREFECT_API_URL come from the environment the test sets.
"""

from __future__ import annotations

import sys
from datetime import date

from flows.shift_start import shift_start_sync

if __name__ == "__main__":
    shift_start_sync(date.fromisoformat(sys.argv[1]))
