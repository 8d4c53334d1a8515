"""The adapter contract: what the dispatcher hands an adapter and what an adapter may answer.

Adapters never import `publisher`: they get a `Message`, the account's settings and a `Job`, and
return a `Receipt` or raise one of the typed errors below. The dispatcher decides what happens next.
"""

from __future__ import annotations

import copy
import mimetypes
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:  # adapters that send import it; the contract alone (outbox, settings) need not
    import requests

# --- what goes out ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Media:
    """One media file of a post, resolved inside the configured media folder."""

    file: str  # path relative to the media folder, as the operator wrote it
    path: Path  # absolute path on this machine
    alt: str | None = None
    url: str | None = None  # public URL when the media folder is served (`media_url`)

    @property
    def mime(self) -> str:
        return mimetypes.guess_type(self.file)[0] or "application/octet-stream"

    @property
    def kind(self) -> str:
        """`image`, `video` or `other`, from the file's type."""
        major = self.mime.split("/", 1)[0]
        return major if major in ("image", "video") else "other"

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True, kw_only=True)
class Message:
    """The content one account receives: the post with that account's variant applied."""

    post_id: str
    text: str = ""
    link: str | None = None
    title: str | None = None  # used where a platform wants one (YouTube)
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Receipt:
    """What the platform said it created."""

    platform_id: str
    url: str | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a message for a platform, found offline."""

    field: str  # "text", "media[0]", "link", …
    message: str  # says the limit and the counted value where there is one
    severity: str = "error"  # or "warning"


@dataclass(frozen=True)
class Limits:
    """A platform's content rules, declared on the adapter class."""

    text_max: int | None = None  # counted with the adapter's `count_text`
    media_max: int = 0  # 0: the platform takes no media through this adapter
    media_kinds: frozenset[str] = frozenset({"image", "video"})
    image_max_bytes: int | None = None
    video_max_bytes: int | None = None
    requires_media: bool = False  # Instagram, YouTube: no text-only posts
    alt_max: int | None = None


# --- the job: idempotency key and checkpoint ---------------------------------------------------


@runtime_checkable
class Job(Protocol):
    """The delivery being attempted, as an adapter sees it.

    `key` is stable across attempts and crashes (post, account, occurrence). `saved` is what an
    earlier attempt stored with `save`; `save` commits new state before it returns, so a step
    recorded there is never repeated after a crash or a retry.
    """

    key: str
    attempt: int

    @property
    def saved(self) -> Mapping[str, Any]: ...

    def save(self, state: Mapping[str, Any]) -> None: ...

    def heartbeat(self) -> None:
        """Renew the lease during a long upload or poll; raises `LeaseLost` if it was taken."""
        ...


@dataclass
class MemoryJob:
    """A `Job` kept in memory: for `siar check`, tests, and tools without a database."""

    key: str
    attempt: int = 1
    state: dict[str, Any] = field(default_factory=dict)
    on_save: Callable[[Mapping[str, Any]], None] | None = None

    @property
    def saved(self) -> Mapping[str, Any]:
        # A deep copy, as a database round trip would give: changing it must not change the checkpoint.
        return copy.deepcopy(self.state)

    def save(self, state: Mapping[str, Any]) -> None:
        self.state = copy.deepcopy(dict(state))
        if self.on_save is not None:
            self.on_save(self.state)

    def heartbeat(self) -> None:
        return None


# --- typed errors ------------------------------------------------------------------------------


class AdapterError(Exception):
    """Root of what an adapter may raise on purpose. `http_status` is kept for the audit."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class Transient(AdapterError):
    """A passing failure (5xx, connection refused): try again later, the platform may say when."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class RateLimited(Transient):
    """The platform asked us to slow down; `retry_after` is its own wait in seconds."""

    def __init__(
        self, message: str, *, retry_after: float | None, http_status: int | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after, http_status=http_status)


class AuthExpired(AdapterError):
    """The credentials were rejected: the account is paused until a person acts."""


class Rejected(AdapterError):
    """The platform refused this content for good; retrying would not help."""


class MaybeSent(AdapterError):
    """The request may have reached the platform but no answer came (read timeout, reset).

    The dispatcher reconciles: `lookup` where the adapter has one, else the delivery is `unknown`.
    """


class ConfigError(ValueError):
    """An account's settings are unusable (raised at construction)."""


class LeaseLost(Exception):
    """Raised by `Job.save`/`Job.heartbeat` when another worker took the delivery: stop at once,
    send nothing more. Adapters let it propagate."""


# --- secrets learned at run time ---------------------------------------------------------------

_secret_sinks: list[Callable[[str], None]] = []


def on_secret(sink: Callable[[str], None]) -> None:
    """Register a callback told of every secret an adapter obtains (refreshed tokens, sessions)."""
    _secret_sinks.append(sink)


def register_secret(value: str | None) -> None:
    """Adapters call this with every token they receive, so the core can mask it everywhere."""
    if value:
        for sink in _secret_sinks:
            sink(value)


# --- the adapter -------------------------------------------------------------------------------


@runtime_checkable
class Adapter(Protocol):
    platform: ClassVar[str]
    limits: ClassVar[Limits]

    def check(self, message: Message) -> list[Problem]: ...

    def publish(self, message: Message, job: Job) -> Receipt: ...

    def whoami(self) -> str: ...


class BaseAdapter:
    """Shared behaviour: account keys, the offline limit check, and `api_base` rewriting.

    Subclasses declare `platform`, `limits`, `required` and `optional` account keys (and
    `secrets`, the keys whose values must never be shown), and implement `publish` and `whoami`.
    A subclass that can find a post after a crash also implements `lookup`.
    """

    platform: ClassVar[str] = ""
    limits: ClassVar[Limits] = Limits()
    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    secrets: ClassVar[tuple[str, ...]] = ()
    paths: ClassVar[tuple[str, ...]] = ()  # file paths, resolved against the config folder
    # Keys every account takes, whatever its platform.
    common: ClassVar[tuple[str, ...]] = (
        "platform",
        "api_base",
        "min_interval",
        "max_per_day",
        "timeout",
        "state_dir",
    )

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        self.account = dict(account)
        self.http = http
        self.name = str(account.get("name", self.platform))
        self.timeout = float(account.get("timeout", 30))
        # A private folder (mode 0700) for this account's rotated tokens and sessions.
        state_dir = account.get("state_dir")
        self.state_dir = Path(state_dir) if state_dir else None
        # Waits between polls go through here, so tests can make them instant.
        self.sleep: Callable[[float], None] = time.sleep
        for key in self.secrets:
            register_secret(str(account.get(key) or ""))

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        """Offline validation of an account table: missing and unknown keys."""
        problems: list[Problem] = []
        allowed = set(cls.common) | set(cls.required) | set(cls.optional) | {"name"}
        for key in cls.required:
            if account.get(key) in (None, ""):
                problems.append(Problem(key, f"is required for platform {cls.platform!r}"))
        for key in account:
            if key not in allowed:
                known = ", ".join(sorted(allowed - {"name"}))
                problems.append(Problem(key, f"unknown key for platform {cls.platform!r} (known: {known})"))
        return problems

    # Length as the platform counts it; platforms override (X weights, Bluesky graphemes, …).
    def count_text(self, text: str) -> int:
        return len(text)

    def check(self, message: Message) -> list[Problem]:
        return check_limits(self.limits, self.count_text, message)

    def url(self, default_base: str, path: str) -> str:
        """`default_base` + `path`, with scheme and host replaced by the account's `api_base`."""
        return rebase(default_base, self.account.get("api_base")) + path

    def lookup(self, message: Message, job: Job) -> Receipt | None:  # pragma: no cover - doc only
        raise NotImplementedError

    def publish(self, message: Message, job: Job) -> Receipt:  # pragma: no cover - abstract
        raise NotImplementedError

    def whoami(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def has_lookup(adapter: object) -> bool:
    """True when the adapter overrides `lookup` (the base one only documents it)."""
    method = getattr(type(adapter), "lookup", None)
    return method is not None and method is not BaseAdapter.lookup


def rebase(url: str, api_base: str | None) -> str:
    """Replace scheme and host (and any path prefix) of `url` by `api_base`, keeping its path."""
    if not api_base:
        return url
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return api_base.rstrip("/") + rest


def check_limits(limits: Limits, count: Callable[[str], int], message: Message) -> list[Problem]:
    """The checks every platform shares, driven by its declared `Limits`."""
    problems: list[Problem] = []
    if limits.text_max is not None:
        length = count(message.text)
        if length > limits.text_max:
            problems.append(
                Problem("text", f"is {length} characters long; the limit is {limits.text_max}")
            )
    if limits.requires_media and not message.media:
        problems.append(Problem("media", "this platform takes no text-only posts: add a media file"))
    if len(message.media) > limits.media_max:
        problems.append(
            Problem("media", f"has {len(message.media)} files; the limit is {limits.media_max}")
        )
    for index, item in enumerate(message.media):
        where = f"media[{index}]"
        if item.kind not in limits.media_kinds:
            kinds = ", ".join(sorted(limits.media_kinds)) or "none"
            problems.append(Problem(where, f"{item.file} is {item.mime}; this platform takes {kinds}"))
            continue
        cap = limits.image_max_bytes if item.kind == "image" else limits.video_max_bytes
        try:
            size = item.size
        except OSError:
            continue  # a missing file is reported by the post validation itself
        if cap is not None and size > cap:
            problems.append(Problem(where, f"{item.file} is {size} bytes; the limit is {cap}"))
        if limits.alt_max is not None and item.alt and len(item.alt) > limits.alt_max:
            problems.append(
                Problem(f"{where}.alt", f"is {len(item.alt)} characters; the limit is {limits.alt_max}")
            )
    return problems
