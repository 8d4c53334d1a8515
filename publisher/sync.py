"""Sync: the post files are the desired state; the database converges to them (DESIGN.md §2).

Unchanged files (same size and mtime as last pass, same settings) are not parsed again, and a
pass in which no file changed, appeared or went after one that converged does not touch the
database (but for repeats), so a pass over thousands of unchanged files costs one `stat` each.
What is kept of a file between passes is that size and mtime, its post's id and content hash, not
the parsed post: a daemon keeps it for every file as long as it runs (see `_File`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, false, select, update

from publisher import audit, logs, store
from publisher.db import SYNC_LOCK, Database
from publisher.fastsql import Fast
from publisher.models import utcnow
from publisher.occurrences import ONCE, next_occurrence, occurrence_time
from publisher.posts import AdapterCache, PostSpec, duplicate_id, load_post, post_entries
from publisher.problems import FileProblem
from publisher.settings import Settings
from publisher.states import EDITABLE, IN_FLIGHT, READY, HoldReason, State

log = logs.get("siar.sync")

D, P = store.D, store.P
DUPLICATE_WINDOW = timedelta(days=30)
# A repeat's next occurrence is made once the current one has left these states.
OPEN_OCCURRENCE = (State.PENDING, State.CLAIMED, State.SENDING, State.RETRYING, State.PAUSED)
# Removing a file or an account from `to` cancels what has not been attempted to completion.
CANCELLABLE = (State.PENDING, State.RETRYING, State.HELD, State.PAUSED)
CHUNK = 500  # posts per write transaction, so dispatch is never locked out for long
# A pass that parsed at least this many files hands the C heap's free pages back (`_trim_heap`).
TRIM_AFTER_PARSED = 1000
# A pass that created or cancelled at least this many deliveries has the database refresh its
# planner statistics (`Database.refresh_statistics`).
RESTAT_AFTER_ROWS = 500


@dataclass
class Report:
    files: int = 0
    parsed: int = 0
    created: int = 0
    deliveries: int = 0  # the deliveries of the posts created
    updated: int = 0
    removed: int = 0
    cancelled: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    error: str | None = None  # the whole pass was refused (folder missing or suddenly empty)
    skipped: bool = False  # another daemon holds the sync lock

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.cancelled)


class _File:
    """What a pass remembers of one post file for the next: its mtime and size and, when valid,
    the post's id and content hash — enough to tell that the file and the database are unchanged,
    without the parsed post. A daemon keeps one per file for as long as it runs: with slots, the
    hash as bytes and no `PostSpec`, 10,000 files cost about 4 MB instead of about 30 MB. A pass
    that has to write a post the cache did not keep reads its file again (`Syncer._reread`); a
    repeating post keeps its spec, which every pass needs for the next occurrence."""

    __slots__ = ("mtime_ns", "size", "path", "id", "digest", "problems", "repeat")

    def __init__(self, stat: tuple[int, int], path: str, spec: PostSpec | None,
                 problems: tuple[FileProblem, ...]) -> None:
        self.mtime_ns, self.size = stat
        self.path = path  # relative to the posts folder, posix: the cache key, and the spec's `path`
        self.id = spec.id if spec is not None else None  # None: the file failed to validate
        self.digest = bytes.fromhex(spec.content_hash) if spec is not None else None  # content_hash's bytes
        self.problems = problems
        self.repeat = spec if spec is not None and spec.repeat else None

    def same(self, stat: tuple[int, int]) -> bool:
        return self.mtime_ns == stat[0] and self.size == stat[1]


# Built once: building a statement costs more CPU than running it (SQLAlchemy's cache key).
_EXISTING = select(P.c.id, P.c.path, P.c.content_hash, P.c.removed)
_CURRENT_HASHES = select(P.c.content_hash).where(P.c.removed == false())
_SPECS = select(P.c.id, P.c.spec).where(P.c.id.in_(bindparam("ids", expanding=True)))
_UPDATE_POST = P.update().where(P.c.id == bindparam("w_id"))  # SET: the parameters' columns
_DELIVERIES_OF = select(D).where(D.c.post_id == bindparam("post_id"))
_DELIVERIES_BY_DUE = _DELIVERIES_OF.order_by(D.c.due_at)
# A delivery changes only if nobody moved it since it was read (a claim changes state and token).
_UPDATE_UNMOVED = update(D).where(
    D.c.id == bindparam("w_id"), D.c.state == bindparam("w_state"), D.c.claim_token == bindparam("w_token")
)
_INSERT_POST = P.insert()
_INSERT_DELIVERY = D.insert()
_IDS_BY_KEY = select(D.c.key, D.c.id).where(D.c.key.in_(bindparam("keys", expanding=True)))
_LIVE = [s.value for s in (*READY, *IN_FLIGHT)]
_OPEN = [s.value for s in OPEN_OCCURRENCE]
_LATEST_OCCURRENCE = (
    select(D.c.occurrence, D.c.state)
    .where(D.c.post_id == bindparam("post_id"), D.c.account == bindparam("account"), D.c.occurrence != ONCE)
    .order_by(D.c.occurrence.desc())
    .limit(1)
)
# The duplicate guard's candidates: the posts with these fingerprints (on their index), and their
# deliveries (on theirs). Which of those are published lately or on their way is decided here:
# asked of SQLite as one query, it walks every pending delivery by state, a cost that grows
# with the queue.
_SAME_FINGERPRINT = select(P.c.id).where(P.c.fingerprint.in_(bindparam("fingerprints", expanding=True)))
_CANDIDATES = (
    select(P.c.fingerprint, P.c.id, P.c.removed, D.c.state, D.c.published_at)
    .join(D, D.c.post_id == P.c.id)
    .where(P.c.id.in_(bindparam("ids", expanding=True)))
)


class _Known(NamedTuple):
    """A post as the database has it, for comparing with the files."""

    id: str
    path: str
    content_hash: str
    removed: bool


class _Twins:
    """The duplicate guard for a run of new posts: what the database had when the run began
    (one query), plus the posts this run has created since."""

    def __init__(self, conn: Connection, specs: list[PostSpec], now: datetime) -> None:
        self.ids: dict[str, list[str]] = {}
        fingerprints = sorted({spec.fingerprint for spec in specs if not spec.allow_repeat})
        ids = conn.execute(_SAME_FINGERPRINT, {"fingerprints": fingerprints}).scalars().all() if fingerprints else []
        since = now - DUPLICATE_WINDOW
        for fingerprint, post_id, removed, state, published_at in (
            conn.execute(_CANDIDATES, {"ids": ids}) if ids else ()
        ):
            recent = state == State.PUBLISHED.value and published_at is not None and published_at >= since
            if (recent or (state in _LIVE and not removed)) and post_id not in self.ids.get(fingerprint, ()):
                self.ids.setdefault(fingerprint, []).append(post_id)

    def of(self, spec: PostSpec) -> str | None:
        """Another post with the same text, media and targets, published lately or on its way."""
        return next((post_id for post_id in self.ids.get(spec.fingerprint, ()) if post_id != spec.id), None)

    def add(self, spec: PostSpec) -> None:
        self.ids.setdefault(spec.fingerprint, []).append(spec.id)


@dataclass
class _NewRows:
    """Posts and deliveries created in one transaction, written together: one INSERT each, and
    their audit events in one append, in the order a row-by-row write would have made them."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)

    def delivery(
        self, *, post_id: str, account: str, platform: str, occurrence: str, due_at: datetime,
        deadline: datetime, content: dict[str, Any], now: datetime, state: State,
        hold_reason: HoldReason | None, detail: dict[str, Any] | None,
    ) -> None:
        self.deliveries.append((store.delivery_row(
            post_id=post_id, account=account, platform=platform, occurrence=occurrence, due_at=due_at,
            deadline=deadline, content=content, now=now, state=state, hold_reason=hold_reason,
        ), detail))

    def flush(self, conn: Connection, actor: str) -> int:
        """Write what was collected; returns how many deliveries it created."""
        written = len(self.deliveries)
        if self.posts:
            conn.execute(_INSERT_POST, self.posts)
        if self.deliveries:
            rows = [row for row, _ in self.deliveries]
            conn.execute(_INSERT_DELIVERY, rows)
            ids = {key: id_ for key, id_ in conn.execute(_IDS_BY_KEY, {"keys": [row["key"] for row in rows]})}
            events = []
            for row, detail in self.deliveries:
                events += store.creation_events(row, ids[row["key"]], actor=actor, detail=detail)
            audit.append_many(conn, events)
        self.posts.clear()
        self.deliveries.clear()
        return written


class Syncer:
    """Keeps what the last pass saw, so the next pass parses only what changed."""

    def __init__(self, db: Database, settings: Settings, *, actor: str = audit.DAEMON) -> None:
        self.db = db
        self.settings = settings
        self.actor = actor
        self._cache: dict[str, _File] = {}  # by path relative to the posts folder
        self._adapters = AdapterCache(settings)
        # The database converged to the files as the cache has them: until a file changes (or
        # appears, or goes), a pass has nothing to write and needs not read the database either.
        self._converged = False
        self._last: tuple[dict[str, _File], set[str], list[FileProblem]] | None = None
        self._repeating: tuple[dict[str, _File], list[PostSpec]] | None = None
        self._accounts_known: set[tuple[str, str]] = set()  # (name, platform) rows already written

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): parse every file again, since accounts may have changed."""
        self.settings = settings
        self._cache = {}
        self._adapters = AdapterCache(settings)
        self._converged = False
        self._last = None
        self._repeating = None
        self._accounts_known = set()

    # --- reading the folder -----------------------------------------------------------------

    def _read(
        self, report: Report, current: Callable[[], set[bytes]]
    ) -> tuple[dict[str, _File], set[str], dict[str, PostSpec], bool] | None:
        """The valid posts' files by post id, the files that failed, the posts parsed in this pass
        that the database does not have as they are (by id), and whether every file is as the last
        pass saw it. `current()` is the content hashes of the posts in the database (not removed),
        asked only once a file must be parsed: a post whose hash is among them is there as it is,
        since the hash covers its id and path. A set of 32-byte digests, not the rows: the rows
        of 10,000 posts weigh 3.5 MB, and what a pass holds while it parses stays in the heap."""
        entries, folder_error = post_entries(self.settings.posts_dir)
        if folder_error is not None:
            report.error = f"{folder_error}: nothing was cancelled"
            return None
        report.files = len(entries)
        top = os.path.join(str(self.settings.posts_dir), "")
        cache = self._cache
        # The same files as last pass, none changed (an idle daemon's every pass)? Checked without
        # keeping anything: `matched` files, from the first, are as the cache has them.
        same = self._last is not None and len(entries) == len(cache)
        matched = 0
        if same:
            for rel in entries:
                cached = cache.get(rel)
                if cached is None or _stat_key(top + rel) != (cached.mtime_ns, cached.size):
                    same = False
                    break
                matched += 1
        if same:
            # The same posts and problems as last pass.
            assert self._last is not None
            posts, bad, problems = self._last
            report.problems.extend(problems)
            return posts, bad, {}, True
        posts = {}
        bad = set()
        specs: dict[str, PostSpec] = {}
        fresh: dict[str, _File] = {}
        for index, rel in enumerate(entries):
            cached = cache.get(rel)
            changed = False
            if index >= matched:  # not seen as it was above
                key = _stat_key(top + rel)
                if key is None:
                    continue
                changed = cached is None or not cached.same(key)
            spec: PostSpec | None = None
            if changed:
                spec, found = load_post(top + rel, self.settings, adapters=self._adapters)
                cached = _File(key, rel, spec, tuple(found))
                report.parsed += 1
            assert cached is not None
            fresh[rel] = cached
            post_id = cached.id
            problems: Sequence[FileProblem] = cached.problems
            if post_id is not None and post_id in posts:
                first = self.settings.posts_dir / posts[post_id].path
                problems = [*problems, duplicate_id(Path(top + rel), post_id, first)]
                post_id = None
            if changed:
                for problem in problems:
                    event = "sync.file_invalid" if problem.is_error else "sync.file_warning"
                    getattr(log, "error" if problem.is_error else "warning")(
                        event, file=rel, line=problem.line, field=problem.field, problem=str(problem))
            report.problems.extend(problems)
            if post_id is None:
                bad.add(rel)
                continue
            posts[post_id] = cached
            # Only what this pass may write is kept past the file's parse: the rest is dropped
            # at once, so a pass over thousands of files never holds thousands of parsed posts.
            if spec is not None and cached.digest not in current():
                specs[post_id] = spec
        self._cache = fresh
        self._last = (posts, bad, list(report.problems))
        return posts, bad, specs, False

    def _reread(self, file: _File) -> PostSpec | None:
        """The post of a file the cache has as unchanged but the database does not (a pass that
        failed half-way, another daemon's sync): parsed again, its problems already logged. None,
        and dropped from the cache so the next pass reads it as a new file, when it is not the post
        the cache says (it changed without a new size or time, or a media file changed)."""
        name = os.path.join(str(self.settings.posts_dir), file.path)
        spec, _problems = load_post(name, self.settings, adapters=self._adapters)
        if spec is not None and spec.id == file.id and spec.path == file.path:
            if bytes.fromhex(spec.content_hash) == file.digest:
                return spec
        self._cache.pop(file.path, None)
        return None

    # --- converging the database --------------------------------------------------------------

    def run(self, now: datetime | None = None) -> Report:
        """One pass. With several daemons on PostgreSQL, only the one holding the sync lock works;
        the others skip the pass and keep sending."""
        with self.db.exclusive(SYNC_LOCK) as mine:
            if not mine:
                return Report(skipped=True)
            return self._run(now or utcnow())

    def run_unchanged(self, now: datetime | None = None) -> Report | None:
        """A pass for a folder known to be as the last pass read it (its watch saw no change): no
        file is read, but a repeat still gets its next occurrence (its current one may have been
        settled by a command, not by a send). None when the last pass did not converge, or there
        was none: then only a full pass (`run`) will do."""
        last, repeating = self._last, self._repeating
        if not self._converged or last is None or repeating is None or repeating[0] is not last[0]:
            return None
        with self.db.exclusive(SYNC_LOCK) as mine:
            if not mine:
                return Report(skipped=True)
            self._repeats(repeating[1], now or utcnow())
        return Report(files=len(self._cache), problems=list(last[2]))

    def _run(self, now: datetime) -> Report:
        report = Report()
        hashes: set[bytes] | None = None

        def current() -> set[bytes]:
            nonlocal hashes
            if hashes is None:
                with self.db.read() as conn:
                    hashes = {bytes.fromhex(value) for value in conn.execute(_CURRENT_HASHES).scalars()}
            return hashes

        read = self._read(report, current)
        if read is None:
            self._converged = False
            log.error("sync.refused", error=report.error)
            return report
        posts, bad_paths, specs, same = read
        if self._repeating is None or self._repeating[0] is not posts:
            self._repeating = (posts, [file.repeat for file in posts.values() if file.repeat is not None])
        repeats = self._repeating[1]
        if same and self._converged:
            # Nothing to converge; only a repeat may be due its next occurrence.
            self._repeats(repeats, now)
            return report
        self._converged = False  # until this pass has written everything
        live = current()
        if not posts and not bad_paths and live:
            report.error = (
                f"posts folder {self.settings.posts_dir} is suddenly empty but {len(live)} posts are "
                "known: nothing was cancelled (remove the posts one by one, or restore the folder)"
            )
            log.error("sync.refused", error=report.error)
            return report
        # The files whose post the database does not have as it is (new, changed, moved, removed).
        differ = [file for file in posts.values() if file.digest not in live]
        # The rows this pass works on: those of `differ`, and the posts not removed whose file is
        # gone. When every post in the database matched a file, there are none of the latter, and
        # with nothing differing either (a restart) the rows are not read at all; else they are
        # read one by one and only those kept (10,000 rows at once would weigh 3.5 MB).
        existing: dict[str, _Known] = {}
        if differ or len(posts) - len(differ) < len(live):
            wanted = {file.id for file in differ}
            with self.db.read() as conn:
                for row in conn.execute(_EXISTING):
                    known = _Known(*row)
                    if known.id in wanted or (not known.removed and known.id not in posts):
                        existing[known.id] = known
        del live
        hashes = None  # a pass that writes thousands of posts has better use for the room

        # Account rows follow the settings, not the files: written once per name and platform.
        accounts = {(a.name, a.platform) for a in self.settings.accounts.values()} - self._accounts_known
        if accounts:
            with self.db.write() as conn:
                for name, platform in sorted(accounts):
                    store.ensure_account(conn, name, platform)
            self._accounts_known |= accounts

        # Removals first: a renamed file's old pending deliveries are cancelled before the new
        # post is checked against them by the duplicate guard.
        gone = [row for row in existing.values()
                if not row.removed and row.id not in posts and row.path not in bad_paths]
        for chunk in _chunks(gone, CHUNK):
            with self.db.write() as conn:
                for row in chunk:
                    report.cancelled += self._remove(conn, row.id, now)
                    report.removed += 1

        todo: list[PostSpec] = []
        stale = False  # a file must be read afresh next pass: this one has not converged
        for file in differ:
            spec = specs.get(file.id) or self._reread(file)
            if spec is None:
                stale = True
            else:
                todo.append(spec)
        for chunk in _chunks(sorted(todo, key=lambda s: s.path), CHUNK):
            with self.db.write() as conn:
                new = _NewRows()
                twins: _Twins | None = None
                changed = [spec.id for spec in chunk if spec.id in existing]
                previous = dict(conn.execute(_SPECS, {"ids": changed}).all()) if changed else {}
                for spec in chunk:
                    old = existing.get(spec.id)
                    if old is None:
                        if twins is None:
                            twins = _Twins(conn, [s for s in chunk if s.id not in existing], now)
                        self._create(spec, now, new, twins)
                        report.created += 1
                    else:
                        # An update reads and changes what is in the database: write what came
                        # before it first, and ask the database for twins afresh after it.
                        report.deliveries += new.flush(conn, self.actor)
                        twins = None
                        report.cancelled += self._update(conn, spec, old, previous[spec.id], now)
                        report.updated += 1
                report.deliveries += new.flush(conn, self.actor)

        self._repeats(repeats, now)
        self._converged = not stale
        if report.deliveries + report.cancelled >= RESTAT_AFTER_ROWS:
            # Thousands of deliveries may have become due at once: the claim's plan must know.
            self.db.refresh_statistics()
        if report.changed:
            log.info("sync.done", files=report.files, parsed=report.parsed, created=report.created,
                     updated=report.updated, removed=report.removed, cancelled=report.cancelled,
                     invalid=len(bad_paths))
        if report.parsed >= TRIM_AFTER_PARSED:
            _trim_heap()
        return report

    def _repeats(self, repeats: list[PostSpec], now: datetime) -> None:
        if repeats:
            with self.db.write() as conn:
                for spec in repeats:
                    for account in spec.to:
                        self.ensure_next(conn, spec, account, now)

    def _deadline(self, spec: PostSpec, due: datetime) -> datetime:
        return due + (spec.max_lateness or self.settings.max_lateness)

    def _platform(self, account: str) -> str:
        return self.settings.accounts[account].platform

    def _post_values(self, spec: PostSpec, now: datetime) -> dict[str, Any]:
        return {
            "path": spec.path,
            "content_hash": spec.content_hash,
            "fingerprint": spec.fingerprint,
            "spec": spec.to_json(),
            "removed": False,
            "updated_at": now,
        }

    def _create(self, spec: PostSpec, now: datetime, new: _NewRows, twins: _Twins) -> None:
        """A new post: its row and its deliveries, queued in `new` for the chunk's transaction."""
        new.posts.append({"id": spec.id, "created_at": now, **self._post_values(spec, now)})
        twin = None if spec.allow_repeat else twins.of(spec)
        # A new post's row has no `siar approve` yet: only the file can approve it.
        approved = not self.settings.require_approval or bool(spec.approved_by)
        state, reason, hold_detail = self._hold_as(twin, approved)
        live = False
        for account in spec.to:
            if spec.repeat:
                nxt = self._next(spec, account, None, now)  # a new post has no occurrence yet
                if nxt is None:
                    continue
                due, occurrence, detail = nxt
                detail.update(hold_detail or {})
                detail_or_none: dict[str, Any] | None = detail or None
            else:
                due, occurrence, detail_or_none = spec.at or now, ONCE, hold_detail
            new.delivery(
                post_id=spec.id, account=account, platform=self._platform(account), occurrence=occurrence,
                due_at=due, deadline=self._deadline(spec, due), content=spec.content_for(account).to_dict(),
                now=now, state=state, hold_reason=reason, detail=detail_or_none,
            )
            live = live or state is State.PENDING
        if live:
            twins.add(spec)  # on its way: a later new post with the same content is its twin
        if twin:
            log.warning("sync.duplicate_held", post=spec.id, same_as=twin, file=spec.path)
        elif not approved:
            log.info("sync.awaiting_approval", post=spec.id, file=spec.path)

    def _approved(self, conn: Connection, spec: PostSpec) -> bool:
        """Approval, where required: a name in the file, or `siar approve` of this very content."""
        if not self.settings.require_approval or spec.approved_by:
            return True
        approved = conn.execute(select(P.c.approved_hash).where(P.c.id == spec.id)).scalar()
        return approved == spec.content_hash

    def _hold(self, conn: Connection, spec: PostSpec, twin: str | None
              ) -> tuple[State, HoldReason | None, dict[str, Any] | None]:
        """How a new delivery of `spec` starts: pending, or held (duplicate first, then approval)."""
        return self._hold_as(twin, bool(twin) or self._approved(conn, spec))

    @staticmethod
    def _hold_as(twin: str | None, approved: bool) -> tuple[State, HoldReason | None, dict[str, Any] | None]:
        if twin:
            return State.HELD, HoldReason.DUPLICATE, {"same_as": twin}
        if not approved:
            return State.HELD, HoldReason.APPROVAL, None
        return State.PENDING, None, None

    def _next(
        self, spec: PostSpec, account: str, latest: str | None, now: datetime
    ) -> tuple[datetime, str, dict[str, Any]] | None:
        """A repeat's occurrence after `latest` (None: its first): due time, id and audit detail."""
        nxt = next_occurrence(
            spec, after=occurrence_time(latest) if latest else None, now=now, tz=self.settings.timezone,
            max_lateness=spec.max_lateness or self.settings.max_lateness,
        )
        if nxt is None:
            return None
        detail: dict[str, Any] = {}
        if nxt.skipped:
            detail["skipped_occurrences"] = nxt.skipped
            log.warning("sync.occurrences_skipped", post=spec.id, account=account, skipped=nxt.skipped)
        return nxt.due, nxt.occurrence, detail

    def ensure_next(
        self, conn: Connection, spec: PostSpec, account: str, now: datetime, twin: str | None = None
    ) -> int | None:
        """For a repeat: create the next occurrence once the current one has settled."""
        # Occurrence ids are UTC times in ISO form, so the newest sorts last.
        latest = conn.execute(_LATEST_OCCURRENCE, {"post_id": spec.id, "account": account}).first()
        if latest is not None and latest.state in _OPEN:
            return None
        nxt = self._next(spec, account, latest.occurrence if latest else None, now)
        if nxt is None:
            return None
        due, occurrence, detail = nxt
        state, reason, hold_detail = self._hold(conn, spec, twin)
        detail.update(hold_detail or {})
        return store.create_delivery(
            conn, post_id=spec.id, account=account, platform=self._platform(account),
            occurrence=occurrence, due_at=due, deadline=self._deadline(spec, due),
            content=spec.content_for(account).to_dict(), now=now, actor=self.actor,
            state=state, hold_reason=reason, detail=detail or None,
        )

    def on_settled(self, conn: Connection, row: Any, now: datetime) -> None:
        """A repeat's occurrence settled: make the next one in the same transaction."""
        if row["occurrence"] == ONCE:
            return
        found = conn.execute(select(P.c.spec, P.c.removed).where(P.c.id == row["post_id"])).first()
        if found is None or found.removed:
            return
        spec = PostSpec.from_json(found.spec)
        if spec.repeat and row["account"] in spec.to:
            self.ensure_next(conn, spec, row["account"], now)

    def _update(self, conn: Connection, spec: PostSpec, old: Any, old_spec: str, now: datetime) -> int:
        """A changed post: pending deliveries take the new content and time; sent ones stay."""
        conn.execute(_UPDATE_POST, {**self._post_values(spec, now), "w_id": spec.id})
        previous = PostSpec.from_json(old_spec)
        cancelled = 0
        if old.removed:
            log.info("sync.post_restored", post=spec.id, file=spec.path)
        schedule_changed = (previous.at, previous.repeat, previous.until) != (spec.at, spec.repeat, spec.until)
        rows = conn.execute(_DELIVERIES_BY_DUE, {"post_id": spec.id}).mappings().all()
        by_account: dict[str, list[Any]] = {}
        for row in rows:
            by_account.setdefault(row["account"], []).append(row)
        for account, account_rows in by_account.items():
            if account not in spec.to:
                cancelled += self._cancel_rows(conn, account_rows, now, reason=f"{account} removed from `to`")
        for account in spec.to:
            account_rows = by_account.get(account, [])
            content = spec.content_for(account).to_dict()
            message, message_hash = store.message_json(content)
            if not account_rows:
                if spec.repeat:
                    self.ensure_next(conn, spec, account, now)
                else:
                    due = spec.at or now
                    store.create_delivery(
                        conn, post_id=spec.id, account=account, platform=self._platform(account),
                        occurrence=ONCE, due_at=due, deadline=self._deadline(spec, due), content=content,
                        now=now, actor=self.actor,
                    )
                continue
            for row in account_rows:
                cancelled += self._apply_change(conn, spec, row, message, message_hash, schedule_changed, now)
            if spec.repeat:
                self.ensure_next(conn, spec, account, now)
        self._approval_pass(conn, spec, now)
        return cancelled

    def _approval_pass(self, conn: Connection, spec: PostSpec, now: datetime) -> None:
        """A changed post needs approval again; an approval added in the file releases it."""
        if not self.settings.require_approval:
            return
        approved = self._approved(conn, spec)
        if approved:
            frm, to, reason = [State.HELD.value], State.PENDING, None
        else:
            frm, to, reason = [State.PENDING.value, State.RETRYING.value], State.HELD, HoldReason.APPROVAL
        rows = conn.execute(select(D).where(D.c.post_id == spec.id, D.c.state.in_(frm))).mappings().all()
        for row in rows:
            if approved and row["hold_reason"] != HoldReason.APPROVAL.value:
                continue
            if _update_unmoved(conn, row, state=to.value, hold_reason=reason.value if reason else None,
                               updated_at=now):
                audit.append(conn, "released" if approved else "held", actor=self.actor, post_id=spec.id,
                             delivery_id=row["id"], account=row["account"], platform=row["platform"], at=now,
                             detail={"reason": "approved in the file"} if approved
                             else {"reason": "approval", "why": "content changed; approve again"})

    def _apply_change(
        self, conn: Connection, spec: PostSpec, row: Any, message: str, message_hash: str,
        schedule_changed: bool, now: datetime,
    ) -> int:
        state = State(row["state"])
        content_changed = row["message_hash"] != message_hash
        if not content_changed and not schedule_changed:
            return 0
        if state is State.PUBLISHED:
            if content_changed:
                log.warning("sync.change_after_publish", post=spec.id, account=row["account"],
                            delivery=row["id"], file=spec.path,
                            note="already published on this account: the change is not applied there")
            return 0
        if state in IN_FLIGHT or state in (State.UNKNOWN, State.CANCELLED):
            if content_changed and state in IN_FLIGHT:
                log.warning("sync.change_in_flight", post=spec.id, account=row["account"], delivery=row["id"])
            return 0
        if content_changed and row["checkpoint"]:
            # Part of it may be out already (an uploaded video, some WhatsApp recipients): new
            # content now would mix two versions. Keep it as it is and say so.
            log.warning("sync.change_after_partial_send", post=spec.id, account=row["account"], delivery=row["id"],
                        note="part of this delivery was already sent: the change is not applied there")
            content_changed = False
            if not schedule_changed:
                return 0
        if spec.repeat and schedule_changed and row["occurrence"] != ONCE:
            # The schedule moved: this occurrence may no longer exist; make the next one afresh.
            return self._cancel_rows(conn, [row], now, reason="repeat schedule changed")
        values: dict[str, Any] = {"updated_at": now}
        changes: dict[str, Any] = {}
        if content_changed:
            values.update(message=message, message_hash=message_hash)
            changes["content"] = True
        if schedule_changed and row["occurrence"] == ONCE:
            due = spec.at or row["due_at"]
            if due != row["due_at"]:
                values.update(due_at=due, ready_at=max(due, row["ready_at"]) if state is State.RETRYING else due,
                              deadline=self._deadline(spec, due))
                changes["due_at"] = due.isoformat()
                if state is State.HELD and row["hold_reason"] == HoldReason.EXPIRED.value and due > now:
                    # Rescheduled into the future by the operator: it may go at the new time.
                    values.update(state=State.PENDING.value, hold_reason=None, attempts=0)
                    changes["released"] = "rescheduled"
        if not changes:
            return 0
        if _update_unmoved(conn, row, **values):
            audit.append(conn, "updated", actor=self.actor, post_id=spec.id, delivery_id=row["id"],
                         account=row["account"], platform=row["platform"], detail=changes, at=now)
        return 0

    def _remove(self, conn: Connection, post_id: str, now: datetime) -> int:
        conn.execute(_UPDATE_POST, {"removed": True, "updated_at": now, "w_id": post_id})
        rows = conn.execute(_DELIVERIES_OF, {"post_id": post_id}).mappings().all()
        for row in rows:
            if row["state"] in [s.value for s in IN_FLIGHT]:
                log.warning("sync.removed_in_flight", post=post_id, delivery=row["id"])
        log.info("sync.post_removed", post=post_id)
        return self._cancel_rows(conn, rows, now, reason="post file removed")

    def _cancel_rows(self, conn: Connection, rows: list[Any], now: datetime, *, reason: str) -> int:
        count = 0
        for row in rows:
            if row["state"] not in [s.value for s in CANCELLABLE]:
                continue
            if _update_unmoved(conn, row, state=State.CANCELLED.value, hold_reason=None, updated_at=now):
                count += 1
                audit.append(conn, "cancelled", actor=self.actor, post_id=row["post_id"], delivery_id=row["id"],
                             account=row["account"], platform=row["platform"], detail={"reason": reason}, at=now)
                if row["state"] == State.PAUSED.value:
                    store.resume_if_nothing_paused(conn, row, actor=self.actor, now=now)
        return count


@dataclass(frozen=True)
class Drift:
    """How a claimed delivery differs from its post as the database has it now."""

    state: State | None  # where it goes instead of out (cancelled, held, back in line); None: out
    event: str
    values: dict[str, Any]  # the post's current content or time, to record first
    detail: dict[str, Any]
    hold_reason: HoldReason | None = None


# drift() runs before every send: its query is built once, and a post's parsed spec and each
# account's message are remembered by the spec's text (a post is mostly sent to many accounts).
class _DriftPost(NamedTuple):
    spec: str
    removed: bool
    content_hash: str
    approved_hash: str | None


assert _DriftPost._fields == store.DRIFT_COLUMNS  # store.mark_sending returns them in this order

# Run for every delivery just before it goes out: on the driver (see fastsql).
_DRIFT_POST = Fast(select(*(P.c[name] for name in store.DRIFT_COLUMNS)).where(P.c.id == bindparam("w_id")))


@lru_cache(maxsize=256)
def _spec(spec_json: str) -> PostSpec:
    return PostSpec.from_json(spec_json)


@lru_cache(maxsize=4096)
def _message(spec_json: str, account: str) -> tuple[str, str]:
    return store.message_json(_spec(spec_json).content_for(account).to_dict())


def drift(conn: Connection, row: Any, settings: Settings) -> Drift | None:
    """Checked just before `sending` is committed. A delivery that was claimed, sending or
    unknown when its post changed or its file was removed is left alone by sync; once it is back
    in line (lease expired, a retry, `siar resolve --not-published`) it must go out as the files
    say now, or not at all."""
    return drift_from(_DRIFT_POST.run(conn, {"w_id": row["post_id"]}).fetchone(), row, settings)


def drift_from(found: Sequence[Any] | None, row: Any, settings: Settings) -> Drift | None:
    """`drift`, given what it reads of the post: (spec, removed, content_hash, approved_hash)."""
    if found is None or found[0] is None:
        return None
    post = _DriftPost(*found)
    if post.removed:
        return Drift(State.CANCELLED, "cancelled", {}, {"reason": "post file removed"})
    spec = _spec(post.spec)
    if row["account"] not in spec.to:
        return Drift(State.CANCELLED, "cancelled", {}, {"reason": f"{row['account']} removed from `to`"})
    values: dict[str, Any] = {}
    detail: dict[str, Any] = {"reason": "the post changed while this delivery was out"}
    if not row["checkpoint"]:  # part of it already went out: never mix two versions
        message, message_hash = _message(post.spec, row["account"])
        if message_hash != row["message_hash"]:
            values.update(message=message, message_hash=message_hash)
            detail["content"] = True
            if settings.require_approval and not spec.approved_by and post.approved_hash != post.content_hash:
                return Drift(State.HELD, "held", values, {**detail, "reason": "approval"}, HoldReason.APPROVAL)
    if row["occurrence"] == ONCE and spec.at is not None and spec.at != row["due_at"]:
        values.update(due_at=spec.at, ready_at=spec.at, deadline=spec.at + (spec.max_lateness or settings.max_lateness))
        detail["due_at"] = spec.at.isoformat()
        return Drift(State.PENDING, "updated", values, detail)  # back in line for its new time
    return Drift(None, "updated", values, detail) if values else None


def _update_unmoved(conn: Connection, row: Any, **values: Any) -> bool:
    """Change a delivery read earlier in this transaction, unless it was claimed or moved since."""
    where = {"w_id": row["id"], "w_state": row["state"], "w_token": row["claim_token"]}
    return conn.execute(_UPDATE_UNMOVED, {**values, **where}).rowcount == 1


def _stat_key(name: str) -> tuple[int, int] | None:
    """A file's (mtime, size); (-1, -1) for a symlink to nothing (or a loop): reported, what it had
    is kept; None when it vanished between listing and reading: the next pass sees the truth."""
    try:
        st = os.stat(name)
    except OSError:
        return (-1, -1) if os.path.islink(name) else None
    return st.st_mtime_ns, st.st_size


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system: glibc's `malloc_trim(0)`, nothing
    elsewhere (musl has no such call; it returns memory on its own).

    Why: parsing thousands of post files (a daemon's first pass over a big folder, a mass edit)
    allocates and frees tens of MB (file text, parsed tables, pydantic's own allocations, SQLite's
    pages, SQL parameters). glibc keeps what was freed inside its arenas, one of them the
    scheduler worker's that ran the pass, and an idle daemon would carry that peak for as long as
    it runs (about 2 MB of its footprint with 10,000 files). Once per such pass, it costs a few
    milliseconds."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # glibc's malloc_trim once looked up; False where there is none


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _raise(error: OSError) -> None:
    raise error

