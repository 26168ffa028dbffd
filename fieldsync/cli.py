"""`fieldsync` command line: database, import, sync, options, intake, tokens, stack, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from fieldsync import settings
from fieldsync.store.db import migrate, session_scope

IMPORT_KINDS = ("technicians", "appointments", "materials", "job_types")


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    migrate()
    print(f"database ready: {settings.safe_database_url()}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from fieldsync.importer import ImportFileError, import_file

    migrate()
    status = 0
    for path in args.files:
        try:
            with session_scope() as session:
                report = import_file(session, args.kind, Path(path))
        except ImportFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(report.format())
        if report.rejected:
            status = max(status, 1)
    return status


def _cmd_sync_shift(args: argparse.Namespace) -> int:
    from flows.shift_start import shift_start_sync

    migrate()
    day = date.fromisoformat(args.date) if args.date else None
    result = shift_start_sync(day, args.region, args.technician, args.force)
    print(result.summary)
    return 0


def _cmd_options(args: argparse.Namespace) -> int:
    from datetime import datetime

    from flows.options import apply_rescheduling_option, rescheduling_options

    migrate()
    moments = {}
    for name in ("eta", "as_of"):
        raw = getattr(args, name)
        moments[name] = datetime.fromisoformat(raw) if raw else None
        if moments[name] is not None and moments[name].tzinfo is None:  # type: ignore[union-attr]
            print(f"error: --{name.replace('_', '-')} needs a UTC offset, "
                  "e.g. 2026-12-01T10:30:00-06:00", file=sys.stderr)  # fmt: skip
            return 2
    eta, as_of = moments["eta"], moments["as_of"]
    if args.apply:
        result = apply_rescheduling_option(args.appointment, args.apply, args.situation, eta, as_of)
        print(result.summary)
        return 0
    rows = rescheduling_options(args.appointment, args.situation, eta, args.limit, as_of)
    if not rows:
        print("No feasible option.")
    for row in rows:
        print(f"{row['rank']}. {row['technician']} at {row['start']}, {row['travel']} drive; "
              f"also moves: {row['also moves']}. {row['why']}")  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from fieldsync.demo import run_demo

    return run_demo()


def _cmd_intake_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fieldsync.intake.server import build_app

    migrate()
    if args.workers > 1:
        if settings.database_url().startswith("sqlite"):
            print(
                "error: --workers > 1 needs the PostgreSQL store: SQLite has one writer, and "
                "processes would queue on its lock (set DATABASE_URL=postgresql+psycopg://...)",
                file=sys.stderr,
            )
            return 2
        # Each worker process builds its own app and relay; relays share the outbox safely
        # (FOR UPDATE SKIP LOCKED), like replicas behind a load balancer.
        uvicorn.run(
            "fieldsync.intake.server:build_app", factory=True, host=args.host, port=args.port,
            log_level=args.log_level, workers=args.workers,
        )  # fmt: skip
        return 0
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_intake_replay(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from fieldsync.intake.server import replay
    from fieldsync.store.tables import DeadLetter

    ids: list[int] = list(args.ids)
    if args.all:
        with session_scope() as session:
            ids = list(
                session.scalars(
                    select(DeadLetter.id)
                    .where(DeadLetter.source.startswith("intake:"))
                    .where(DeadLetter.replayed_at.is_(None))
                    .order_by(DeadLetter.id)
                )
            )
    if not ids:
        print("nothing to replay: give dead letter ids, or --all")
        return 0
    failed = 0
    try:
        results = replay(ids)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for letter_id, receipt in results:
        if receipt.state == "dead":
            failed += 1
            print(f"{letter_id}: still refused: {receipt.error}")
        else:
            print(f"{letter_id}: {receipt.state} {', '.join(receipt.appointment_ids)}")
    return 1 if failed else 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    from fieldsync.intake import tokens

    try:
        with session_scope() as session:
            if args.tokens_command == "issue":
                token = tokens.issue(session, args.purpose, args.subject)
                print(token)
                if args.purpose == "feed":
                    print(f"feed URL: <intake base URL>/feeds/{token}.ics", file=sys.stderr)
            else:
                n = tokens.revoke(session, args.purpose, args.subject)
                print(f"revoked {n} {args.purpose} token(s) of {args.subject}")
    except tokens.TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from fieldsync.stack import run_stack

    return run_stack(
        prefect_port=args.prefect_port, intake_port=args.intake_port, deploy=not args.no_deploy
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldsync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=_cmd_db_upgrade)

    imp = sub.add_parser("import", help="import CSV or JSON files")
    imp.add_argument("kind", choices=IMPORT_KINDS)
    imp.add_argument("files", nargs="+", help="CSV or JSON files")
    imp.set_defaults(func=_cmd_import)

    sync = sub.add_parser("sync", help="run a sync flow now")
    sync_sub = sync.add_subparsers(dest="sync_command", required=True)
    shift = sync_sub.add_parser("shift-start", help="reconcile every job of a shift")
    shift.add_argument("--date", help="shift date YYYY-MM-DD (default: each technician's today)")
    shift.add_argument("--region")
    shift.add_argument("--technician")
    shift.add_argument("--force", action="store_true", help="allow a mass deletion")
    shift.set_defaults(func=_cmd_sync_shift)

    opts = sub.add_parser("options", help="rescheduling options for an appointment")
    opts.add_argument("appointment")
    opts.add_argument(
        "--situation", choices=["emergency", "cancellation", "delay", "conflict"],
        default="emergency",
    )  # fmt: skip
    opts.add_argument("--eta", help="new ETA for a delay, ISO 8601 with offset")
    opts.add_argument("--limit", type=int, default=5)
    opts.add_argument("--as-of", help="plan from this moment instead of now (ISO 8601)")
    opts.add_argument("--apply", type=int, metavar="RANK", help="apply the option of this rank")
    opts.set_defaults(func=_cmd_options)

    intake = sub.add_parser("intake", help="the webhook and API intake service")
    intake_sub = intake.add_subparsers(dest="intake_command", required=True)
    serve = intake_sub.add_parser("serve", help="serve the intake (and relay events to Prefect)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8400)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--workers", type=int, default=1,
        help="processes serving the intake (PostgreSQL store only); each runs a relay",
    )  # fmt: skip
    serve.set_defaults(func=_cmd_intake_serve)

    rep = intake_sub.add_parser("replay", help="apply dead-lettered requests again after a fix")
    rep.add_argument("ids", nargs="*", type=int, help="dead letter ids")
    rep.add_argument("--all", action="store_true", help="every intake dead letter not replayed")
    rep.set_defaults(func=_cmd_intake_replay)

    toks = sub.add_parser("tokens", help="API keys, technician status and feed tokens")
    toks_sub = toks.add_subparsers(dest="tokens_command", required=True)
    for name, text in (("issue", "issue a token (printed once)"), ("revoke", "revoke tokens")):
        cmd = toks_sub.add_parser(name, help=text)
        cmd.add_argument("purpose", choices=["api", "status", "feed"])
        cmd.add_argument("subject", help="API client name, or technician id")
        cmd.set_defaults(func=_cmd_tokens)

    up = sub.add_parser("up", help="start the local stack: Prefect server, worker and intake")
    up.add_argument("--prefect-port", type=int, default=4200)
    up.add_argument("--intake-port", type=int, default=8400)
    up.add_argument("--no-deploy", action="store_true", help="skip 'prefect deploy --all'")
    up.set_defaults(func=_cmd_up)

    sub.add_parser("demo", help="load the sample day and sync it into ICS feeds").set_defaults(
        func=_cmd_demo
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
