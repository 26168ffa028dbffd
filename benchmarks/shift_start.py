"""Shift-start benchmark: 10,000 appointments across 500 technicians into ICS + in-memory.

    python -m benchmarks.shift_start [--technicians 500] [--jobs 20] [--naive-sample 50]

Each phase runs in its own process so peak RSS is that phase's own. Phases:
  full      first sync of the whole shift (every event created)
  rerun     the same shift again, nothing changed (must write nothing)
  naive     the baseline: one Prefect task per event, on a sample of technicians, measured
            in this same run; its per-event cost is scaled to the full size for the ratio
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PLATFORMS = ("ics", "memory")


def warm_up() -> None:
    from prefect import flow

    @flow(name="warm-up")
    def nothing() -> None:
        return None

    nothing()


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    os.environ["DATABASE_URL"] = args.db
    os.environ["FIELDSYNC_FEED_DIR"] = args.feeds
    from benchmarks.naive import naive_shift_sync
    from connectors.memory import backend
    from flows.shift_start import shift_start_sync

    # The heartbeat thread adds up to a second at the end of any flow run, whatever its size;
    # it measures Prefect's idle wait, not the sync, so the benchmark turns it off.
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        from benchmarks.dataset import DAY

        # Warm the freshly started server's connection first: a real server is already warm.
        warm_up()
        profiler = None
        if os.environ.get("FIELDSYNC_BENCH_PROFILE"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0 = time.perf_counter()
        if args.phase == "naive":
            writes = naive_shift_sync(DAY.date())
        else:
            result = shift_start_sync(DAY.date(), force=False)
            writes = result.writes
        wall = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.environ["FIELDSYNC_BENCH_PROFILE"] + f".{args.phase}")
    return {
        "phase": args.phase,
        "wall_s": round(wall, 2),
        "writes": writes,
        "memory_events": len(backend("default").all_events()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _run(phase: str, db: str, feeds: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.shift_start",
            "--phase",
            phase,
            "--db",
            db,
            "--feeds",
            str(feeds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    parsed: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--technicians", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--naive-sample", type=int, default=50, help="technicians in the naive baseline's sample"
    )
    parser.add_argument("--phase", choices=["full", "rerun", "naive"])
    parser.add_argument("--db")
    parser.add_argument("--feeds")
    args = parser.parse_args()
    if args.phase:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        print(json.dumps(_phase(args)))
        return

    from benchmarks.dataset import build

    work = Path(tempfile.mkdtemp(prefix="fieldsync-bench-"))
    try:
        db = f"sqlite:///{work / 'bench.db'}"
        n = build(db, args.technicians, args.jobs, PLATFORMS)
        events = n * len(PLATFORMS)
        print(
            f"dataset: {n} appointments, {args.technicians} technicians, "
            f"{events} events ({' + '.join(PLATFORMS)})"
        )
        full = _run("full", db, work / "feeds")
        rerun = _run("rerun", db, work / "feeds")

        sample_db = f"sqlite:///{work / 'naive.db'}"
        sample_n = build(sample_db, args.naive_sample, args.jobs, PLATFORMS)
        naive = _run("naive", sample_db, work / "naive-feeds")
        per_event = naive["wall_s"] / max(1, naive["writes"])
        naive_full = per_event * events

        def line(name: str, r: dict[str, Any]) -> str:
            return (
                f"{name:<28} {r['wall_s']:>8.2f} s  {r['writes']:>7} writes  "
                f"peak RSS {r['peak_rss_mb']:>6.1f} MB"
            )

        print(line("full sync (batched)", full))
        print(line("unchanged re-run", rerun))
        print(line(f"naive, {sample_n} appts sample", naive))
        print(
            f"naive per event: {per_event * 1000:.2f} ms -> {naive_full:.1f} s for {events} events"
        )
        print(f"speed-up vs naive: {naive_full / full['wall_s']:.1f}x")
        ok = full["writes"] == events and rerun["writes"] == 0 and full["memory_events"] == n
        print("consistency:", "ok" if ok else f"MISMATCH {full} {rerun}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
