"""The `siar` command. Exit status: 0 success, 1 the work found problems or failed, 2 bad usage.

Every command is a process start, so each imports what it uses inside its own function: SQLAlchemy
and SQLModel, pydantic (settings), requests, APScheduler and the content team's tools cost about a
second together, and `siar --help` needs none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from importlib import import_module
from typing import TYPE_CHECKING, Any

from publisher import output
from publisher.durations import parse_duration
from publisher.redact import redact

if TYPE_CHECKING:
    from publisher import operator
    from publisher.db import Database
    from publisher.settings import Settings

OK, PROBLEMS, USAGE = 0, 1, 2


class Failure(Exception):
    """A command could not do its work; the message is for the operator."""


class Usage(Exception):
    """A value the parser could not judge was malformed (exit 2, like argparse's own errors)."""


# --- plumbing ------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    from publisher.settings import find_config_dir, load_settings

    return load_settings(find_config_dir(args.config))


def _database(settings: Settings) -> Database:
    from publisher.db import Database

    db = Database(settings.database)
    db.migrate()
    return db


def _print(text: str = "") -> None:
    print(redact(text))


def _parse_since(value: str, settings: Settings) -> datetime:
    try:
        return datetime.now(timezone.utc) - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Usage(f"--since: expected an ISO time (2026-11-25T08:00) or a duration (24h), got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=settings.timezone)
    return when.astimezone(timezone.utc)


# --- commands ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from publisher import logs
    from publisher.daemon import NEEDS_ATTENTION, Daemon

    settings = _settings(args)
    logs.configure(settings.log_level)
    daemon = Daemon(settings, dry_run=args.dry_run, metrics_address=args.metrics)
    if not args.once:
        return daemon.run_forever()
    report, outcomes = daemon.run_once()
    bad = [o for o in outcomes if o.state in NEEDS_ATTENTION]
    invalid = [p for p in report.problems if p.severity == "error"]
    return PROBLEMS if bad or invalid or report.error else OK


def cmd_check(args: argparse.Namespace) -> int:
    from publisher.check import check_all, github_annotation
    from publisher.settings import find_config_dir

    _settings_or_none, problems = check_all(find_config_dir(args.config), settings_only=args.settings_only,
                                            online=args.online)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        _print(output.to_json([{"path": str(p.path), "line": p.line, "field": p.field, "severity": p.severity,
                                "message": p.message} for p in problems]))
    else:
        for problem in problems:
            _print(github_annotation(problem) if fmt == "github" else str(problem))
        if not problems and fmt == "text":
            _print("no problems found")
    failing = [p for p in problems if p.severity == "error" or args.strict]
    return PROBLEMS if failing else OK


def cmd_status(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from publisher.models import Daemon as DaemonRow
    from publisher.models import utcnow
    from publisher.states import NEEDS_PERSON, State
    from publisher.store import A, D

    settings = _settings(args)
    db = _database(settings)
    tz = settings.timezone
    with db.read() as conn:
        counts = dict(conn.execute(select(D.c.state, func.count()).group_by(D.c.state)).all())
        columns = [D.c.id, D.c.post_id, D.c.account, D.c.state, D.c.hold_reason, D.c.due_at, D.c.ready_at,
                   D.c.attempts, D.c.last_error, D.c.lease_owner, D.c.lease_expires]
        upcoming = conn.execute(select(*columns).where(D.c.state.in_(["pending", "retrying", "claimed", "sending"]))
                                .order_by(D.c.ready_at).limit(10)).mappings().all()
        attention = conn.execute(select(*columns).where(D.c.state.in_([s.value for s in NEEDS_PERSON]))
                                 .order_by(D.c.state, D.c.due_at).limit(50)).mappings().all()
        paused = conn.execute(select(A.c.name, A.c.paused_reason).where(A.c.paused.is_(True))).mappings().all()
        last_sync = conn.execute(select(func.max(DaemonRow.__table__.c.last_sync_at))).scalar()
        daemons = conn.execute(select(DaemonRow.__table__).where(DaemonRow.__table__.c.stopped_at.is_(None))
                               .order_by(DaemonRow.__table__.c.started_at)).mappings().all()
    data = {
        "counts": {state.value: int(counts.get(state.value, 0)) for state in State},
        "next": [dict(r) for r in upcoming],
        "needs_attention": [dict(r) for r in attention],
        "paused_accounts": [dict(r) for r in paused],
        "daemons": [dict(r) for r in daemons],
        "last_sync": last_sync,
    }
    if args.json:
        _print(output.to_json(data))
    else:
        _print("Deliveries by state")
        _print(output.table([{"state": k, "count": v} for k, v in data["counts"].items()], ["state", "count"]))
        _print("\nNext due")
        _print(output.table([{**r, "due": output.local(r["ready_at"], tz)} for r in upcoming],
                            ["id", "post_id", "account", "state", "due", "attempts", "lease_owner"]))
        _print("\nNeeds a person (failed, unknown, paused, held)")
        _print(output.table([{**r, "due": output.local(r["due_at"], tz)} for r in attention],
                            ["id", "post_id", "account", "state", "hold_reason", "due", "attempts", "last_error"]))
        if paused:
            _print("\nPaused accounts")
            _print(output.table(list(paused), ["name", "paused_reason"]))
        _print("\nDaemons")
        _print(output.table([{**r, "seen": output.local(r["seen_at"], tz), "synced": output.local(r["last_sync_at"], tz)}
                             for r in daemons], ["owner", "seen", "synced"]))
    # No sync for three intervals: no daemon is running, or it is stuck. Someone should look.
    window = max(3 * settings.sync_every, timedelta(minutes=1))  # a slow start is not an outage
    stale = last_sync is None or utcnow() - last_sync > window
    if stale and not args.json:
        when = output.local(last_sync, tz) if last_sync else "never"
        _print(f"\nNo daemon has synced the posts folder for over {window} (last: {when})")
    return PROBLEMS if attention or paused or stale else OK


def cmd_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from publisher import audit
    from publisher.store import D, P

    settings = _settings(args)
    db = _database(settings)
    tz = settings.timezone
    with db.read() as conn:
        post = conn.execute(select(P.c.id, P.c.path, P.c.removed, P.c.created_at, P.c.updated_at)
                            .where(P.c.id == args.post)).mappings().first()
        if post is None:
            raise Failure(f"no post {args.post!r}")
        rows = conn.execute(select(D).where(D.c.post_id == args.post).order_by(D.c.due_at, D.c.id)).mappings().all()
        trail = audit.events(conn, post_id=args.post)
    deliveries = [{k: v for k, v in r.items() if k not in ("message", "checkpoint")} for r in rows]
    if args.json:
        _print(output.to_json({"post": dict(post), "deliveries": deliveries, "audit": trail}))
        return OK
    _print(f"Post {post['id']}  ({post['path']}{', file removed' if post['removed'] else ''})")
    _print("\nDeliveries")
    _print(output.table([{**r, "due": output.local(r["due_at"], tz),
                          "published": output.local(r["published_at"], tz)} for r in deliveries],
                        ["id", "account", "platform", "state", "hold_reason", "due", "attempts", "platform_id",
                         "url", "last_error"]))
    _print("\nAudit trail")
    _print(_audit_table(trail, settings))
    return OK


def _audit_table(rows: Sequence[dict[str, Any]], settings: Settings) -> str:
    return output.table([{**r, "at": output.local(r["at"], settings.timezone)} for r in rows],
                        ["seq", "at", "event", "delivery_id", "account", "attempt", "http_status", "actor", "error",
                         "detail"])


def _print_changes(changes: Sequence[operator.Change]) -> int:
    for c in changes:
        if c.after is None:
            _print(f"delivery {c.delivery_id} ({c.account}): left {c.before}: {c.note}")
        else:
            _print(f"delivery {c.delivery_id} ({c.account}): {c.before} -> {c.after}")
    # A post's deliveries with nothing to do (already published, say) are no failure; a refusal is.
    done = [c for c in changes if c.after]
    refused = [c for c in changes if not c.after and not c.moot]
    return OK if done and not refused else PROBLEMS


def cmd_retry(args: argparse.Namespace) -> int:
    from publisher import operator

    settings = _settings(args)
    with _database(settings).write() as conn:
        changes = operator.retry(conn, settings, args.id, post=args.post)
    return _print_changes(changes)


def cmd_cancel(args: argparse.Namespace) -> int:
    from publisher import operator

    settings = _settings(args)
    with _database(settings).write() as conn:
        changes = operator.cancel(conn, args.id, post=args.post)
    return _print_changes(changes)


def cmd_approve(args: argparse.Namespace) -> int:
    from publisher import operator

    settings = _settings(args)
    with _database(settings).write() as conn:
        changes = operator.approve(conn, settings, args.post, by=args.by)
    _print(f"post {args.post} approved by {args.by}")
    _print_changes(changes)
    return OK


def cmd_resolve(args: argparse.Namespace) -> int:
    if args.published is not None and not args.published.strip():
        raise Usage("--published needs the URL where the post appeared")
    from publisher import operator

    settings = _settings(args)
    with _database(settings).write() as conn:
        change = operator.resolve(conn, settings, args.id, published_url=args.published)
    return _print_changes([change])


AUDIT_COLUMNS = ["seq", "at", "event", "post_id", "delivery_id", "account", "platform", "attempt", "http_status",
                 "platform_id", "error", "actor", "detail", "prev_hash", "hash"]


def cmd_audit(args: argparse.Namespace) -> int:
    from publisher import audit

    settings = _settings(args)
    db = _database(settings)
    with db.read() as conn:
        if args.action == "verify":
            count, broken = audit.verify(conn)
            if broken is not None:
                _print(f"audit chain BROKEN at {broken} ({count} events read)")
                return PROBLEMS
            _print(f"audit chain intact: {count} events verified")
            return OK
        since = _parse_since(args.since, settings) if args.since else None
        rows = audit.events(conn, post_id=args.post, since=since)
    if args.format == "json":
        _print(output.to_json(rows))
    elif args.format == "csv":
        sys.stdout.write(redact(output.to_csv(rows, AUDIT_COLUMNS)) or "")
    else:
        _print(_audit_table(rows, settings))
    return OK


def cmd_accounts(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from publisher.dispatch import Dispatcher
    from publisher.store import A

    settings = _settings(args)
    db = _database(settings)
    with db.read() as conn:
        paused = {r.name: r.paused_reason for r in conn.execute(select(A.c.name, A.c.paused_reason)
                                                                .where(A.c.paused.is_(True)))}
    rows: list[dict[str, Any]] = []
    failed = False
    dispatcher = Dispatcher(db, settings) if args.verify else None
    for account in settings.accounts.values():
        row: dict[str, Any] = {"name": account.name, "platform": account.platform,
                               "paused": account.name in paused, "settings": account.public()}
        if dispatcher is not None:
            try:
                row["verified"] = redact(dispatcher.adapter_for(account.name).whoami())
            except Exception as exc:
                failed = True
                row["verified"] = None
                row["error"] = redact(f"{type(exc).__name__}: {exc}")
        rows.append(row)
    if dispatcher is not None:
        dispatcher.executor.shutdown(wait=False)
    if args.json:
        _print(output.to_json(rows))
    else:
        for row in rows:
            row["paused"] = "paused: " + (paused.get(row["name"]) or "") if row["paused"] else ""
        columns = ["name", "platform", "paused"] + (["verified", "error"] if args.verify else [])
        _print(output.table(rows, columns))
    return PROBLEMS if failed else OK


def cmd_init(args: argparse.Namespace) -> int:
    import shutil
    from importlib import resources
    from pathlib import Path

    target = Path(args.dir)
    if (target / "siar.toml").exists() and not args.force:
        raise Failure(f"{target / 'siar.toml'} exists already (use --force to overwrite)")
    skeleton = resources.files("publisher") / "skeleton"
    with resources.as_file(skeleton) as source:
        # The skeleton is the repository's own example configuration (a link to config/).
        shutil.copytree(source, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("state", ".env", "*.db", "__pycache__"))
    env_example = target / ".env.example"
    if env_example.exists() and not (target / ".env").exists():
        shutil.copy(env_example, target / ".env")
        (target / ".env").chmod(0o600)  # it is where the secrets go
    _print(f"wrote a working configuration to {target}: try `siar check --config {target}` "
           f"then `siar run --config {target}`")
    return OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from publisher.migrate import current

    settings = _settings(args)
    db = _database(settings)
    _print(f"database schema at revision {current(db.engine)}")
    return OK


# --- the parser ----------------------------------------------------------------------------------


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `argv`, only the tools named in it are imported (see TOOLS)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="DIR", default=argparse.SUPPRESS,
                        help="configuration folder (default: $SIAR_CONFIG, ./config, /etc/siar)")
    parser = argparse.ArgumentParser(prog="siar", description="Scheduled multi-platform publishing.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("run", cmd_run, "run the daemon in the foreground")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics (e.g. 127.0.0.1:9464)")
    p.add_argument("--once", action="store_true", help="sync, send what is due now, then exit")
    p.add_argument("--dry-run", action="store_true", help="every account behaves as an outbox; real state untouched")
    p = add("check", cmd_check, "validate siar.toml and every post file offline")
    p.add_argument("--format", choices=["text", "json", "github"], default="text",
                   help="github: workflow annotations for pull requests")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too")
    p.add_argument("--online", action="store_true", help="also ask every link whether it answers")
    p.add_argument("--settings-only", action="store_true", help="check siar.toml alone (for ExecStartPre)")
    p = add("status", cmd_status, "counts per state; what is next and what needs a person")
    p.add_argument("--json", action="store_true")
    p = add("show", cmd_show, "one post: deliveries, receipts and audit trail")
    p.add_argument("post", metavar="POST")
    p.add_argument("--json", action="store_true")
    for name, handler, text in (("retry", cmd_retry, "send a failed, held or paused delivery again"),
                                ("cancel", cmd_cancel, "cancel a delivery that has not gone out")):
        p = add(name, handler, text)
        p.add_argument("id", metavar="ID", help="a delivery number, or a post id for all its deliveries")
        p.add_argument("--post", action="store_true", help="treat ID as a post id even if it is a number")
    p = add("approve", cmd_approve, "approve a post's current content (when approval is required)")
    p.add_argument("post", metavar="POST")
    p.add_argument("--by", required=True, metavar="NAME", help="who approves (recorded in the audit log)")
    p = add("resolve", cmd_resolve, "answer for an unknown delivery")
    p.add_argument("id", metavar="ID")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--published", metavar="URL", help="it went out; this is where")
    group.add_argument("--not-published", action="store_true", help="it did not go out; send it")
    p = add("audit", cmd_audit, "read the audit log, or `audit verify` its hash chain")
    p.add_argument("action", nargs="?", choices=["verify"], help="verify the hash chain")
    p.add_argument("--post", metavar="ID")
    p.add_argument("--since", metavar="T", help="an ISO time (operator's zone if no offset) or a duration ago")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p = add("accounts", cmd_accounts, "the configured accounts")
    p.add_argument("--verify", action="store_true", help="ask each platform who the credentials belong to")
    p.add_argument("--json", action="store_true")
    p = add("init", cmd_init, "write a working configuration to start from")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true")
    add("migrate", cmd_migrate, "apply database migrations")
    for name, (module_name, help_text) in TOOLS.items():
        if argv is None or name in argv:
            import_module(module_name).register(sub, common)
        else:  # listed in `siar --help`; never chosen, as its name is not among the words given
            sub.add_parser(name, help=help_text)
    return parser


# The content team's tools, each in its own module with its own `register`. A module is imported
# only when its name is among the command-line words (an exact match is the only way argparse
# chooses a command): each pulls in post files, pydantic and APScheduler. The help texts are the
# modules' HELP (tests/unit/test_cli_parser.py keeps them equal).
TOOLS = {
    "import": ("publisher.importer", "turn a content calendar (CSV or XLSX) into post files"),
    "calendar": ("publisher.calendar",
                 "the coming deliveries per account; --ics writes an iCalendar file to subscribe to"),
    "report": ("publisher.report",
               "a month's report: published where, failed and why, on-time rate, per account and platform"),
}


def _raised(exc: BaseException, module: str, name: str) -> bool:
    """isinstance(exc, module.name) without importing the module: if no command imported it, it
    raised nothing."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(exc, getattr(loaded, name))


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    if not hasattr(args, "config"):
        args.config = None
    from publisher import logs  # after parsing: `--help` and usage errors need no structlog

    logs.configure("warning" if args.command != "run" else "info")
    try:
        return int(args.handler(args))
    except Usage as exc:
        print(f"siar {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return PROBLEMS
    except Exception as exc:  # a database down, a disk full: say what, without a raw traceback
        if _raised(exc, "publisher.problems", "ConfigInvalid"):
            for problem in exc.problems:  # type: ignore[attr-defined]
                print(redact(str(problem)), file=sys.stderr)
            return PROBLEMS
        if isinstance(exc, Failure) or _raised(exc, "publisher.operator", "NotFound"):
            print(f"siar: {redact(str(exc))}", file=sys.stderr)
            return PROBLEMS
        if os.environ.get("SIAR_DEBUG") == "1":
            raise
        print(f"siar: {args.command} failed: {type(exc).__name__}: {redact(str(exc))} "
              "(set SIAR_DEBUG=1 for the traceback)", file=sys.stderr)
        return PROBLEMS
