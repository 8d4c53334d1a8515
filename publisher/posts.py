"""Post files: one TOML file per post, validated into a `PostSpec` with every problem at once.

Checks run in three layers: the shape (pydantic), the rules that need the settings or tie fields
together (times, accounts, media, variants), then each target platform's own limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property, lru_cache
from pathlib import Path
from stat import S_ISREG
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, StrictBool, StrictStr, ValidationError

from adapters import registry
from adapters.base import BaseAdapter, ConfigError, Media, Message
from publisher.problems import (
    FileProblem,
    describe,
    field_name,
    nul_paths,
    sort_problems,
    too_deep,
    validation_problems,
)
from publisher.settings import (
    FILE_MAX,
    NESTED_TOO_DEEP,
    NUL_MESSAGE,
    PositiveDuration,
    Settings,
    StrictModel,
    Team,
    is_http_url,
    regular_file_problem,
    schedulable,
)
from publisher.tomlpos import KeyPath, line_of, parse_error_line, parse_error_message

ALT_MAX = 1000
_EXAMPLE_AT = "2026-11-25T08:00:00"
_CONTENT_FIELDS = ("text", "link", "title", "media")
_FIELD_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- what a post is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRef:
    file: str  # relative to the media folder, as the operator wrote it
    alt: str | None = None


@dataclass(frozen=True, kw_only=True)
class Content:
    """What one account receives: text, link, title, media."""

    text: str = ""
    link: str | None = None
    title: str | None = None
    media: tuple[MediaRef, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "link": self.link,
            "title": self.title,
            "media": [{"file": ref.file, "alt": ref.alt} for ref in self.media],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Content:
        return cls(
            text=data.get("text", ""),
            link=data.get("link"),
            title=data.get("title"),
            media=tuple(MediaRef(item["file"], item.get("alt")) for item in data.get("media", ())),
        )

    def to_message(self, post_id: str, media_dir: Path, media_url: str | None) -> Message:
        """The adapter's view: media with absolute paths, and public URLs where the folder is served."""
        return Message(
            post_id=post_id,
            text=self.text,
            link=self.link,
            title=self.title,
            media=tuple(
                Media(
                    file=ref.file,
                    path=(media_dir / ref.file).resolve(),
                    alt=ref.alt,
                    url=media_url + quote(ref.file) if media_url else None,
                )
                for ref in self.media
            ),
        )


@dataclass(frozen=True, kw_only=True)
class PostSpec:
    """One validated post file. Times are aware and in UTC."""

    id: str
    path: str  # posix, relative to the posts folder
    at: datetime | None  # None: as soon as possible
    to: tuple[str, ...]
    content: Content
    variants: dict[str, Content]  # full content for each account that has a variant
    repeat: str | None = None  # cron, in the daemon's time zone
    until: datetime | None = None
    max_lateness: timedelta | None = None
    allow_repeat: bool = False
    approved_by: str | None = None  # a person's name: approval written in the file itself
    # sha256 of each media file's bytes when loaded: a replaced image is a changed post, and
    # the duplicate guard compares the pictures, not only their names.
    media_digests: dict[str, str] = field(default_factory=dict)

    def content_for(self, account: str) -> Content:
        return self.variants.get(account, self.content)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what the database keeps and `content_hash` covers."""
        return self._json

    # Cached: a spec never changes once loaded, and sync compares every post's hash each pass.
    @cached_property
    def _json(self) -> str:
        document = {
            "id": self.id,
            "path": self.path,
            "at": _iso(self.at),
            "to": list(self.to),
            "content": self.content.to_dict(),
            "variants": {name: content.to_dict() for name, content in self.variants.items()},
            "repeat": self.repeat,
            "until": _iso(self.until),
            "max_lateness": self.max_lateness.total_seconds() if self.max_lateness is not None else None,
            "allow_repeat": self.allow_repeat,
            "approved_by": self.approved_by,
            "media_digests": self.media_digests,
        }
        return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PostSpec:
        data = json.loads(text)
        lateness = data.get("max_lateness")
        return cls(
            id=data["id"],
            path=data["path"],
            at=_from_iso(data.get("at")),
            to=tuple(data["to"]),
            content=Content.from_dict(data["content"]),
            variants={name: Content.from_dict(item) for name, item in data.get("variants", {}).items()},
            repeat=data.get("repeat"),
            until=_from_iso(data.get("until")),
            max_lateness=timedelta(seconds=lateness) if lateness is not None else None,
            allow_repeat=bool(data.get("allow_repeat", False)),
            approved_by=data.get("approved_by"),
            media_digests=dict(data.get("media_digests", {})),
        )

    @cached_property
    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """Text, media and targets, for the duplicate guard: the same post under another file
        name or id has the same fingerprint."""
        text = unicodedata.normalize("NFC", self.content.text.strip())
        media = [[ref.file, self.media_digests.get(ref.file, "")] for ref in self.content.media]
        document = json.dumps([text, media, sorted(self.to)], ensure_ascii=False)
        return hashlib.sha256(document.encode()).hexdigest()

    def cron_trigger(self, tz: ZoneInfo) -> CronTrigger | None:
        """The repeat's occurrences in `tz`, from `at` (when given) up to `until`."""
        if self.repeat is None:
            return None
        return _trigger(self.repeat, tz, self.at, self.until)


@dataclass(frozen=True, kw_only=True)
class Scan:
    """Every post file under the posts folder, loaded."""

    posts: dict[str, PostSpec]  # by id
    problems: list[FileProblem]
    bad_paths: set[str]  # relative paths of files that failed: what the database had stays
    files: int
    folder_error: str | None  # the folder is missing or unreadable: cancel nothing


# --- the file's shape --------------------------------------------------------------------------


def _alt(value: str) -> str:
    if len(value) > ALT_MAX:
        raise ValueError(f"is {len(value)} characters long; the limit is {ALT_MAX}")
    return value


def _link(value: str) -> str:
    if not is_http_url(value):
        raise ValueError(f"expected an http(s) URL, got {describe(value)}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class _MediaTable(StrictModel):
    file: Annotated[StrictStr, AfterValidator(_not_blank)]
    alt: Annotated[StrictStr, AfterValidator(_alt)] | None = None


class _ContentTable(StrictModel):
    text: StrictStr | None = None
    link: Annotated[StrictStr, AfterValidator(_link)] | None = None
    title: StrictStr | None = None
    media: list[_MediaTable] | None = None


class _PostFile(_ContentTable):
    # Every field has a default so that the fields that did validate can be read even when
    # others did not: the rules below then still run, and the operator sees all problems.
    id: Annotated[StrictStr, AfterValidator(_not_blank)] | None = None
    at: Any = None  # a TOML datetime or an ISO string: read below, with the daemon's time zone
    to: list[StrictStr] | None = None
    variants: dict[str, _ContentTable] = {}
    repeat: StrictStr | None = None
    until: Any = None
    max_lateness: PositiveDuration | None = None
    allow_repeat: StrictBool = False
    approved_by: Annotated[StrictStr, AfterValidator(_not_blank)] | None = None


# --- loading -----------------------------------------------------------------------------------


def load_post(
    path: Path | str, settings: Settings, *, platform_checks: bool = True, adapters: AdapterCache | None = None
) -> tuple[PostSpec | None, list[FileProblem]]:
    """One post file: its spec (None when it has errors) and every problem found in it.

    Pass one `AdapterCache` when loading many files, so each account's adapter is built once.
    A name (str) is enough: a `Path` is made only if a problem has to name the file.
    """
    if platform_checks and adapters is None:
        adapters = AdapterCache(settings)
    loaded = _PostLoader(path, settings, adapters if platform_checks else None).load()
    return loaded.spec, sort_problems(loaded.problems)


def duplicate_id(path: Path, post_id: str, first: Path) -> FileProblem:
    """The problem of a second file claiming a post id another file already has."""
    line = line_of(path.read_text(encoding="utf-8", errors="replace"), ("id",)) if path.exists() else None
    return FileProblem(path, line, "id", f"{post_id!r} is also the id of {first}; ids must be unique")


def scan_posts(settings: Settings, *, platform_checks: bool = True) -> Scan:
    """Every `*.toml` under the posts folder (hidden files and folders skipped), in path order."""
    files, folder_error = post_files(settings.posts_dir)
    adapters = AdapterCache(settings) if platform_checks else None
    posts: dict[str, PostSpec] = {}
    problems: list[FileProblem] = []
    bad_paths: set[str] = set()
    for path in files:
        loaded = _PostLoader(path, settings, adapters).load()
        spec = loaded.spec
        if spec is not None and spec.id in posts:
            loaded.problems.append(duplicate_id(path, spec.id, settings.posts_dir / posts[spec.id].path))
            spec = None
        problems.extend(loaded.problems)
        if spec is None:
            bad_paths.add(loaded.relative)
        else:
            posts[spec.id] = spec
    return Scan(
        posts=posts,
        problems=sort_problems(problems),
        bad_paths=bad_paths,
        files=len(files),
        folder_error=folder_error,
    )


def post_files(folder: Path) -> tuple[list[Path], str | None]:
    names, folder_error = post_entries(folder)
    top = os.path.join(str(folder), "")
    return [Path(top + name) for name in names], folder_error


def post_entries(folder: Path) -> tuple[list[str], str | None]:
    """Every `*.toml` under `folder` as its path relative to `folder` (posix form), in that
    order, hidden files and folders skipped, symlinked folders not followed (as `os.walk` does).
    Plain strings, not `os.scandir` entries: sync walks thousands of files every few seconds,
    and 10,000 entries (each with the `stat` result it caches once asked) weigh about 10 MB
    against 1 MB for the names, a peak the process would keep. `os.path.join(folder, name)` is
    the file."""
    if not folder.is_dir():
        return [], f"the posts folder {folder} does not exist or is not a folder"
    errors: list[OSError] = []
    found: list[str] = []
    _walk(str(folder), "", found, errors)
    found.sort()  # by relative path
    if errors:
        # A subfolder we cannot read would look like removed posts; the caller must not cancel.
        return found, f"cannot read {errors[0].filename}: {errors[0].strerror}"
    return found, None


def _walk(top: str, prefix: str, found: list[str], errors: list[OSError]) -> None:
    files: list[str] = []
    folders: list[tuple[str, str]] = []
    try:
        with os.scandir(top) as listing:
            for entry in listing:
                name = entry.name
                # Hidden entries are editors' swap files and version-control folders, never posts.
                if name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not entry.is_symlink():
                        folders.append((entry.path, prefix + name + "/"))
                elif name.endswith(".toml"):
                    files.append(prefix + name)
    except OSError as exc:
        errors.append(exc)
        return  # as os.walk: a folder that cannot be listed to the end counts as unreadable
    found.extend(files)
    for path, below in folders:
        _walk(path, below, found, errors)


class AdapterCache:
    """One adapter per account, built on first use and shared by every file of a scan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        self.built: dict[str, BaseAdapter | str] = {}

    def get(self, account: str) -> BaseAdapter | str:
        """The adapter, or why it cannot be built."""
        if account not in self.built:
            settings = self.settings.accounts[account]
            try:
                cls = registry.adapter_class(settings.platform)
                config = settings.adapter_config(self.settings.state_dir, self.settings.http_timeout.total_seconds())
                self.built[account] = cls(config, self.session)
            except ConfigError as exc:
                self.built[account] = f"the account's settings are unusable: {exc}"
            except Exception as exc:  # one broken adapter must not stop the check of the others
                self.built[account] = f"the adapter cannot be built: {exc}"
        return self.built[account]


@dataclass
class _Loaded:
    spec: PostSpec | None
    problems: list[FileProblem]
    relative: str


class _PostLoader:
    """One load of one post file; collects problems instead of stopping at the first."""

    def __init__(self, path: Path | str, settings: Settings, adapters: AdapterCache | None) -> None:
        # The file by its name; its `Path` only when a problem names it. pathlib (CPython 3.11)
        # interns every part of every path it parses, and making one per file of a sync over
        # 10,000 files grew the interpreter's table of interned strings by 2 MB for good.
        self.file = os.fspath(path)
        self._path = path if isinstance(path, Path) else None
        self.settings = settings
        self.adapters = adapters
        self.relative = _relative(self.file, settings.posts_dir)
        self.source = ""
        self.problems: list[FileProblem] = []

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(self.file)
        return self._path

    def problem(self, path: KeyPath, message: str, severity: str = "error") -> None:
        line = line_of(self.source, path) if path else None
        self.problems.append(FileProblem(self.path, line, field_name(path) or None, message, severity))

    def done(self, spec: PostSpec | None = None) -> _Loaded:
        if any(problem.is_error for problem in self.problems):
            spec = None
        return _Loaded(spec, self.problems, self.relative)

    def load(self) -> _Loaded:
        try:
            unusable = self._unusable()
            if unusable is not None:
                self.problem((), unusable)
                return self.done()
            with open(self.file, "rb") as handle:
                self.source = handle.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem((), f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
            return self.done()
        except OSError as exc:
            self.problem((), f"cannot be read: {exc.strerror or exc}")
            return self.done()
        try:
            data = tomllib.loads(self.source)
        except tomllib.TOMLDecodeError as exc:
            line = parse_error_line(exc, self.source)
            self.problems.append(FileProblem(self.path, line, None, parse_error_message(exc)))
            return self.done()
        except RecursionError:
            self.problem((), NESTED_TOO_DEEP)
            return self.done()
        deep = too_deep(data)
        if deep is not None:
            self.problem(deep, NESTED_TOO_DEEP)
            return self.done()
        for where in nul_paths(data):
            self.problem(where, NUL_MESSAGE)

        post, bad = self._shape(data)
        post_id = post.id if post.id is not None else self.relative.removesuffix(".toml")
        tz = self.settings.timezone
        lateness = (post.max_lateness if "max_lateness" not in bad else None) or self.settings.max_lateness
        at = self._time(post.at, "at", tz, lateness) if "at" not in bad else None
        until = self._time(post.until, "until", tz, lateness) if "until" not in bad else None
        to = post.to if "to" not in bad else None
        targets = self._targets(to) if "to" not in bad else None
        if "repeat" not in bad:
            self._repeat_rules(post.repeat, at, until, "at" in bad or "until" in bad)
        # Fields that failed their shape are absent from `post`: what remains is still checked.
        content_ok = not bad.intersection(_CONTENT_FIELDS + ("variants",))
        content = _content(post, None)
        written = data.get("variants")
        variants = self._variants(post, content, to, list(written) if isinstance(written, dict) else [])
        before = len(self.problems)
        digests = self._media(content, variants, post)
        media_ok = len(self.problems) == before
        # Even when `to` has a bad name, the accounts it names correctly get their content checked.
        named: list[str | None] = [name for name in dict.fromkeys(to or ()) if name in self.settings.accounts]
        if not bad.intersection(("text", "media", "variants")):
            self._empty_content(content, variants, post, named)
        if targets is None:
            return self.done()
        spec = PostSpec(
            id=post_id,
            path=self.relative,
            at=at,
            to=targets,
            content=content,
            variants=variants,
            repeat=post.repeat,
            until=until,
            max_lateness=post.max_lateness,
            allow_repeat=post.allow_repeat,
            approved_by=post.approved_by,
            media_digests=digests,
        )
        # Adapters may open the media files, so they only see posts whose files are all there.
        if self.adapters is not None and content_ok and media_ok:
            self._platform_checks(spec, post)
        return self.done(spec)

    def _unusable(self) -> str | None:
        """`regular_file_problem`, with one `stat` and no `Path` for the usual file: regular and
        not too big."""
        try:
            st = os.stat(self.file)
        except OSError:
            return regular_file_problem(self.path)  # it says why, as for any other file
        if S_ISREG(st.st_mode) and st.st_size <= FILE_MAX:
            return None
        return regular_file_problem(self.path)

    def _shape(self, data: dict[str, Any]) -> tuple[_PostFile, set[str]]:
        """The fields that validated, and the names of the top-level fields that did not."""
        try:
            return _PostFile.model_validate(data), set()
        except ValidationError as exc:
            self.problems.extend(validation_problems(self.path, self.source, exc, _PostFile))
            locs = [item["loc"] for item in exc.errors() if item["loc"]]
        # Validate again without the broken fields (and broken variants): each field validates
        # on its own, so this succeeds, and the rules that need only good fields still run.
        bad_variants = {loc[1] for loc in locs if loc[0] == "variants" and len(loc) > 1}
        whole = {str(loc[0]) for loc in locs if loc[0] != "variants" or len(loc) == 1}
        cleaned = {key: value for key, value in data.items() if key not in whole}
        if bad_variants:
            cleaned["variants"] = {k: v for k, v in cleaned["variants"].items() if k not in bad_variants}
        return _PostFile.model_validate(cleaned), whole | ({"variants"} if bad_variants else set())

    def _time(self, value: Any, key: str, tz: ZoneInfo, lateness: timedelta) -> datetime | None:
        if value is None:
            return None
        try:
            moment = to_utc(value, tz)
        except ValueError as exc:
            self.problem((key,), str(exc))
            return None
        if not schedulable(moment, lateness):
            self.problem((key,), f"{moment.isoformat()} is too close to the ends of the calendar (year 1, year 9999) "
                                 "for Siar to schedule")
            return None
        return moment

    def _targets(self, to: list[str] | None) -> tuple[str, ...] | None:
        known = ", ".join(sorted(self.settings.accounts)) or "none"
        if to is None:
            self.problem(("to",), f"is required: the accounts to publish to (known: {known})")
            return None
        if not to:
            self.problem(("to",), f"is empty: name at least one account (known: {known})")
            return None
        seen: set[str] = set()
        valid = True
        for index, name in enumerate(to):
            if name not in self.settings.accounts:
                self.problem(("to", index), f"unknown account {name!r} (known: {known})")
                valid = False
            elif name in seen:
                self.problem(("to", index), f"names {name!r} twice")
                valid = False
            seen.add(name)
        team = self._team()
        if team is not None:
            for index, name in enumerate(to):
                if name in self.settings.accounts and name not in team.accounts:
                    self.problem(("to", index), f"account {name!r} does not belong to team {team.name!r}, "
                                                f"whose folder holds this file (its accounts: "
                                                f"{', '.join(sorted(team.accounts)) or 'none'})")
                    valid = False
        return tuple(to) if valid else None

    def _team(self) -> Team | None:
        """The team whose folder holds this file (the deepest, if folders nest)."""
        if not self.settings.teams:
            return None
        path = Path(os.path.abspath(self.file))
        owners = [team for team in self.settings.teams.values() if path.is_relative_to(team.folder)]
        return max(owners, key=lambda team: len(team.folder.parts), default=None)

    def _repeat_rules(
        self, repeat: str | None, at: datetime | None, until: datetime | None, times_bad: bool
    ) -> None:
        if repeat is None:
            if until is not None:
                self.problem(("until",), "needs `repeat`: it ends a repeating post")
            return
        try:
            trigger = _trigger(repeat, self.settings.timezone, at, until)
        except ValueError as exc:
            self.problem(("repeat",), str(exc))
            return
        if at is not None and until is not None and until <= at:
            self.problem(("until",), "must be after `at`")
        elif not times_bad:
            start = at or datetime.now(timezone.utc)
            try:
                fires = trigger.get_next_fire_time(None, start) is not None
            except OverflowError:  # the next time it names falls off the calendar
                fires = False
            if not fires:
                self.problem(("repeat",), "never fires" + (" before `until`" if until else ""))

    def _variants(
        self, post: _PostFile, content: Content, to: list[str] | None, written: list[str]
    ) -> dict[str, Content]:
        """Each valid variant merged over the base content; every written one checked against
        `to` (None: unknown, so none is refused)."""
        variants = {}
        for name in written:
            if to is not None and name not in to:
                self.problem(
                    ("variants", name),
                    f"{name!r} is not one of this post's accounts (to: {', '.join(to)})",
                )
            elif name in post.variants:
                variants[name] = _content(post.variants[name], content)
        return variants

    def _media(self, content: Content, variants: dict[str, Content], post: _PostFile) -> dict[str, str]:
        """Check that every media file is inside the media folder and exists; their digests."""
        digests: dict[str, str] = {}
        if not content.media and not any(variant.media for variant in variants.values()):
            return digests  # most posts: no folder to resolve
        try:
            root = self.settings.media_dir.resolve()
        except (OSError, ValueError, RuntimeError):  # a symlink loop: nothing resolves inside it
            root = self.settings.media_dir
        lists: list[tuple[KeyPath, tuple[MediaRef, ...]]] = [(("media",), content.media)]
        # A variant without its own `media` shares the base list, checked once above.
        lists += [
            (("variants", name, "media"), variant.media)
            for name, variant in variants.items()
            if "media" in post.variants[name].model_fields_set
        ]
        for where, refs in lists:
            for index, ref in enumerate(refs):
                try:
                    target = (self.settings.media_dir / ref.file).resolve()
                    inside = target.is_relative_to(root)
                    present = inside and target.is_file()
                except (OSError, ValueError, RuntimeError) as exc:
                    # A symlink loop, a name too long for the file system, a NUL in the name.
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    self.problem(where + (index, "file"), f"{describe(ref.file)} cannot be used: {reason}")
                    continue
                if not inside:
                    self.problem(
                        where + (index, "file"),
                        f"{ref.file!r} resolves to {target}, outside the media folder {self.settings.media_dir}",
                    )
                elif not present:
                    self.problem(
                        where + (index, "file"), f"{ref.file!r} is not in the media folder {self.settings.media_dir}"
                    )
                else:
                    try:
                        stat = target.stat()
                        digests[ref.file] = _digest(str(target), stat.st_mtime_ns, stat.st_size)
                    except OSError as exc:
                        self.problem(where + (index, "file"), f"{describe(ref.file)} cannot be read: {exc.strerror}")
        return digests

    def _empty_content(
        self, base: Content, variants: dict[str, Content], post: _PostFile, accounts: list[str | None]
    ) -> None:
        reported: set[KeyPath] = set()
        # Without a usable `to`, the base content is what can be checked.
        for account in accounts or [None]:
            content = variants.get(account, base) if account else base
            if content.text or content.media:
                continue
            table = post.variants.get(account) if account else None
            supplied = table.model_fields_set if table is not None else set()
            if supplied & {"text", "media"}:
                where: KeyPath = ("variants", account, "text" if "text" in supplied else "media")
            else:
                where = ("text",)
            if where not in reported:
                reported.add(where)
                self.problem(where, "is empty and there is no media: a post needs text or media")

    def _platform_checks(self, spec: PostSpec, post: _PostFile) -> None:
        assert self.adapters is not None
        for index, account in enumerate(spec.to):
            platform = self.settings.accounts[account].platform
            prefix = f"for {account} ({platform}): "
            adapter = self.adapters.get(account)
            if isinstance(adapter, str):
                self.problem(("to", index), prefix + adapter)
                continue
            message = spec.content_for(account).to_message(spec.id, self.settings.media_dir, self.settings.media_url)
            try:
                found = adapter.check(message)
            except Exception as exc:  # a buggy third-party check must not hide the other accounts
                self.problem(("to", index), prefix + f"the adapter failed to check this post: {exc}")
                continue
            table = post.variants.get(account)
            supplied = table.model_fields_set if table is not None else set()
            for item in found:
                where = _field_path(item.field)
                if where and where[0] in supplied:
                    where = ("variants", account) + where
                self.problem(where, prefix + item.message, item.severity)


def _relative(path: Path | str, folder: Path) -> str:
    """`path` relative to `folder` in posix form, or its name for a file given from elsewhere."""
    # A string prefix first: pathlib's relative_to costs more than the rest of a small file's
    # checks, and both paths are already normalised.
    top = str(folder)
    name = os.fspath(path)
    prefix = top if top.endswith(os.sep) else top + os.sep
    if name.startswith(prefix) and len(name) > len(prefix):
        return name[len(prefix):].replace(os.sep, "/")
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return Path(path).name  # a file given from elsewhere: its name stands for it


def _content(table: _ContentTable, base: Content | None) -> Content:
    """The table's content; for a variant, its fields over the base content's."""
    given = table.model_fields_set if base is not None else set(_CONTENT_FIELDS)
    base = base or Content()
    media = table.media or []
    return Content(
        text=(table.text or "").strip() if "text" in given else base.text,
        link=table.link if "link" in given else base.link,
        title=table.title if "title" in given else base.title,
        media=tuple(MediaRef(item.file, item.alt) for item in media) if "media" in given else base.media,
    )


def _field_path(name: str) -> KeyPath:
    """`media[0].alt` → ("media", 0, "alt")."""
    return tuple(int(index) if index else key for key, index in _FIELD_PART.findall(name))


@lru_cache(maxsize=4096)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, remembered while its modification time and size stay the same: a sync
    every few seconds must not reread every video."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- times and repeats -------------------------------------------------------------------------


def to_utc(value: Any, tz: ZoneInfo) -> datetime:
    """A post's time as written (TOML datetime or ISO string; no offset = `tz`), in UTC.

    Raises ValueError saying how to write it.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise ValueError(f"is a date without a time; write the time too, like {value.isoformat()}T08:00:00")
    elif isinstance(value, time):
        raise ValueError(f"is a time without a date; write the date too, like 2026-11-25T{value.isoformat()}")
    elif isinstance(value, str):
        moment = _from_string(value.strip())
    else:
        raise ValueError(f"expected a date and time like {_EXAMPLE_AT}, got {describe(value)}")
    try:
        if moment.tzinfo is not None:
            return moment.astimezone(timezone.utc)
        local = moment.replace(tzinfo=tz)
        round_trip = local.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise ValueError(f"{moment.isoformat()} falls outside the calendar (years 1 to 9999) in UTC") from None
    # A wall-clock time skipped by a daylight-saving change does not survive the round trip.
    if round_trip != moment:
        raise ValueError(
            f"{moment.isoformat()} does not exist in {tz.key}: the clocks skip it; "
            "choose another time or give an offset"
        )
    return local.astimezone(timezone.utc)


def _from_string(text: str) -> datetime:
    if _DATE_ONLY.fullmatch(text):
        raise ValueError(f"is a date without a time; write the time too, like {text}T08:00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        time.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"is not a date and time; write it like {_EXAMPLE_AT}, without quotes"
        ) from None
    raise ValueError(f"is a time without a date; write the date too, like 2026-11-25T{text}")


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _trigger(expr: str, tz: ZoneInfo, start: datetime | None, end: datetime | None) -> CronTrigger:
    """What `CronTrigger.from_crontab` builds, with cron's weekday numbers and a start and end.

    Raises ValueError with a message for the operator.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"has {len(fields)} fields; a cron expression has 5: minute hour day month weekday, "
            "like '0 8 * * MON'"
        )
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        # Cron runs on days matching either field; APScheduler on days matching both.
        raise ValueError(
            "restricts both the day of the month and the day of the week, which cron and Siar "
            "read differently; restrict only one (or write two posts)"
        )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=cron_weekdays(weekday),
            timezone=tz,
            start_date=start,
            end_date=end,
        )
    except ValueError as exc:
        raise ValueError(f"is not a valid cron expression: {exc}") from None


def cron_weekdays(field: str) -> str:
    """A cron day-of-week field as APScheduler 3 reads it correctly: day names.

    In cron 0 and 7 are Sunday; APScheduler 3 reads a numeric 0 as Monday (and `*/2` from
    Monday), so every item is spelled out as names.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        body, slash, step_text = item.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(f"bad step in weekday {item!r}")
        step = int(step_text) if slash else 1
        if body == "*":
            first, last = 0, 6
        else:
            first_text, dash, last_text = body.partition("-")
            first = _day_number(first_text)
            last = _day_number(last_text) if dash else (6 if slash else first)
            if dash and last == 0 and first > 0:
                last = 7  # "fri-sun": Sunday closes the week
            if last < first:
                raise ValueError(f"weekday range {body!r} runs backwards")
        days.update(number % 7 for number in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[number] for number in sorted(days))


def _day_number(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    raise ValueError(f"{text!r} is not a weekday (0-7 or SUN-SAT)")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
