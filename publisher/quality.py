"""Quality checks beyond the platforms' hard limits: what a careful editor would flag.

These are warnings (they fail `siar check` only with `--strict`): images without alt text, more
hashtags than a platform favours, a post due inside a blackout window, the same text sent to
different platforms, a repeat without an end, and — with `--online` — links that do not answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import requests

from adapters.http import USER_AGENT
from publisher.occurrences import next_occurrence
from publisher.posts import Content, PostSpec
from publisher.problems import FileProblem
from publisher.settings import Settings
from publisher.tomlpos import line_of

# Hashtags a platform's own guidance favours per post (beyond them reach drops or it reads as
# spam); the platforms' hard caps are higher and are checked by the adapters.
FAVOURED_HASHTAGS = {
    "instagram": 5,  # Instagram's creators guidance: 3 to 5
    "threads": 1,  # Threads links one topic tag per post
    "x": 2,
    "facebook": 3,
    "linkedin": 3,
    "mastodon": 5,
    "bluesky": 3,
}
LOCAL_PLATFORMS = {"outbox", "webhook"}  # not audiences: the same text there is expected
LINK_CACHE_FOR = 24 * 3600  # seconds a link's answer is trusted
LINK_TIMEOUT = 5.0


def _hashtags(text: str) -> int:
    return sum(1 for word in text.split() if word.startswith("#") and len(word) > 1)


def quality_problems(spec: PostSpec, settings: Settings, path: Path) -> list[FileProblem]:
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        source = ""
    problems: list[FileProblem] = []

    def warn(field: tuple[str | int, ...], message: str) -> None:
        name = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in field).replace(".[", "[")
        problems.append(FileProblem(path, line_of(source, field), name, message, "warning"))

    contents: list[tuple[tuple[str | int, ...], Content]] = [((), spec.content)]
    contents += [(("variants", name), content) for name, content in spec.variants.items()]
    for prefix, content in contents:
        for index, media in enumerate(content.media):
            if media.file.lower().endswith((".jpg", ".jpeg", ".png", ".gif", ".webp")) and not (media.alt or "").strip():
                warn(prefix + ("media", index, "alt"),
                     f"{media.file} has no alt text: people using screen readers will not know what it shows")

    for account in spec.to:
        platform = settings.accounts[account].platform
        favoured = FAVOURED_HASHTAGS.get(platform)
        content = spec.content_for(account)
        count = _hashtags(content.text)
        if favoured is not None and count > favoured:
            field = ("variants", account, "text") if account in spec.variants else ("text",)
            warn(field, f"for {account} ({platform}): {count} hashtags; {platform} favours at most {favoured}")

    platforms = {settings.accounts[a].platform for a in spec.to} - LOCAL_PLATFORMS
    if len(platforms) > 1 and not spec.variants:
        warn(("text",), f"the same text goes to {len(platforms)} platforms ({', '.join(sorted(platforms))}); "
                        "a [variants.ACCOUNT] table can fit each audience and limit")

    if spec.repeat and spec.until is None:
        warn(("repeat",), "repeats with no `until`: it will go on until the file is removed")

    due = spec.at
    if spec.repeat:
        nxt = next_occurrence(spec, after=None, now=spec.at or _now(), tz=settings.timezone,
                              max_lateness=settings.max_lateness)
        due = nxt.due if nxt else None
    if due is not None:
        for window in settings.blackouts:
            for account in spec.to:
                if window.covers(account, due):
                    action = "cancelled" if window.action == "cancel" else "held until it ends"
                    warn(("at",) if not spec.repeat else ("repeat",),
                         f"due inside the blackout window {window.reason!r} for {account}: it will be {action}")
                    break
    return problems


def _now():  # noqa: ANN202 - tiny seam for tests
    from publisher.models import utcnow

    return utcnow()


class LinkChecker:
    """HEAD (then GET) each link once, with a short timeout; answers cached in the state folder."""

    def __init__(self, state_dir: Path, session: requests.Session | None = None) -> None:
        self.cache_file = state_dir / "link-check.json"
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        try:
            self.cache: dict[str, dict[str, float | str]] = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            self.cache = {}

    def problem(self, url: str) -> str | None:
        """None when the link answers; else what went wrong."""
        cached = self.cache.get(url)
        if cached and time.time() - float(cached["at"]) < LINK_CACHE_FOR:
            return str(cached["problem"]) or None
        problem = self._ask(url)
        self.cache[url] = {"at": time.time(), "problem": problem or ""}
        return problem

    def _ask(self, url: str) -> str | None:
        try:
            answer = self.session.head(url, timeout=LINK_TIMEOUT, allow_redirects=True)
            if answer.status_code in (405, 403, 501):  # some servers refuse HEAD: ask properly
                answer = self.session.get(url, timeout=LINK_TIMEOUT, allow_redirects=True, stream=True)
                answer.close()
        except requests.RequestException as exc:
            return f"does not answer ({type(exc).__name__})"
        if answer.status_code >= 400:
            return f"answers HTTP {answer.status_code}"
        return None

    def save(self) -> None:
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_text(json.dumps(self.cache))
        except OSError:
            pass  # a cache that cannot be written costs a repeat check next time, nothing more


def link_problems(spec: PostSpec, path: Path, checker: LinkChecker) -> list[FileProblem]:
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        source = ""
    problems = []
    links: Iterable[tuple[tuple[str, ...], str | None]] = [(("link",), spec.content.link)] + [
        (("variants", name, "link"), content.link) for name, content in spec.variants.items()]
    seen: set[str] = set()
    for field, url in links:
        if not url or url in seen:
            continue
        seen.add(url)
        problem = checker.problem(url)
        if problem:
            problems.append(FileProblem(path, line_of(source, field), ".".join(field), f"{url} {problem}", "warning"))
    return problems
