"""Mastodon: statuses through the REST API, made safe to resend by Mastodon's `Idempotency-Key`.

A post is: each media file uploaded (`POST /api/v2/media`) and, when the server answers 202,
polled until processed; then `POST /api/v1/statuses` with `Idempotency-Key: <job.key>`. The server
remembers the key for one hour: a resend with the same key answers the status the first request
created instead of making a second one.

Checkpoints (`job.save`, committed before the next step, so no step is repeated after a crash):
- `media`: each uploaded file's id (and whether it is processed) — a retry never uploads it again;
- `posting_at`: when the status request first left — without it, no status request was ever sent;
- `status_id`, `status_url`: the answer, once it came back.

`lookup` is exact when the answer was recorded (the saved status) or when no status request ever
left (nothing saved: `None`, without asking the server). In between — the request left, the answer
did not come back — it asks the server: the account's recent statuses (`verify_credentials`, then
`/api/v1/accounts/:id/statuses`), matched by the uploaded media ids when there are any (exact:
a media attachment belongs to one status only), else by the text as Mastodon renders it, created
no earlier than `posting_at`. A text that is not found is answered `None`, and the resend that
follows carries the same key, so within the hour the server itself settles it; past the hour,
`publish` searches the timeline again before sending.

Limits come from `GET /api/v2/instance`, cached per account for a day (`mastodon-instance.json`
in its state folder) and used offline by `check`; without the cache, the `max_characters` account
key or Mastodon's defaults. Text is counted as Mastodon counts it: grapheme clusters, every URL as
`characters_reserved_per_url`, and `@user@domain` as `@user`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from adapters import graphemes
from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
    Job,
    Limits,
    MaybeSent,
    Message,
    Problem,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
    check_limits,
)
from adapters.http import json_or_empty, request, retry_after, seconds_until_iso

# Mastodon's own defaults (used until the instance has told us its values).
DEFAULT_LIMITS: Mapping[str, int] = {
    "max_characters": 500,
    "max_media_attachments": 4,
    "characters_reserved_per_url": 23,
    "description_limit": 1500,
    "image_size_limit": 16 * 1024 * 1024,
    "video_size_limit": 99 * 1024 * 1024,
}
CACHE_FILE = "mastodon-instance.json"
CACHE_MAX_AGE = timedelta(days=1)
# The server keeps an Idempotency-Key for one hour; stop trusting it a little before, since our
# clock and the server's may differ.
IDEMPOTENCY_WINDOW = timedelta(minutes=55)
# How far before `posting_at` a status may be stamped and still be ours (clock skew).
CLOCK_SLACK = timedelta(minutes=5)
TIMELINE_PAGE = 40  # the API's maximum page size
MEDIA_POLLS = 30  # about 4.5 minutes of waiting in all (1, 2, 4, 8, then 10 s per poll)
VISIBILITIES = ("public", "unlisted", "private", "direct")

# Mastodon's rules (app/models/account.rb, app/lib/text_formatter.rb): a mention is `@user` or
# `@user@domain` not preceded by a word character, `=` or `/`.
_MENTION = re.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@\w+(?:[.-]+\w+)*)?",
    re.IGNORECASE,
)
# Only URLs with a scheme are linked (and so counted as a fixed length) by Mastodon.
_URL = re.compile(r"(?<![\w@/.])https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,:;!?'\""


class MastodonAdapter(BaseAdapter):
    platform: ClassVar[str] = "mastodon"
    # The class-level limits are Mastodon's defaults; `current_limits` has the instance's own.
    limits: ClassVar[Limits] = Limits(
        text_max=DEFAULT_LIMITS["max_characters"],
        media_max=DEFAULT_LIMITS["max_media_attachments"],
        media_kinds=frozenset({"image", "video"}),
        image_max_bytes=DEFAULT_LIMITS["image_size_limit"],
        video_max_bytes=DEFAULT_LIMITS["video_size_limit"],
        alt_max=DEFAULT_LIMITS["description_limit"],
    )
    required: ClassVar[tuple[str, ...]] = ("instance", "token")
    optional: ClassVar[tuple[str, ...]] = ("visibility", "language", "max_characters")
    secrets: ClassVar[tuple[str, ...]] = ("token",)

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        self.instance = _base_url(str(account.get("instance") or ""))
        self.token = str(account.get("token") or "")
        # The wall clock, replaceable in tests so waits and checkpoints are exact.
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        visibility = account.get("visibility")
        if visibility not in (None, "") and visibility not in VISIBILITIES:
            problems.append(Problem("visibility", f"must be one of {', '.join(VISIBILITIES)}"))
        limit = account.get("max_characters")
        if limit not in (None, "") and not (str(limit).isdigit() and int(limit) > 0):
            problems.append(Problem("max_characters", "must be a positive whole number"))
        return problems

    # --- limits and counting -------------------------------------------------------------------

    def instance_limits(self) -> dict[str, int]:
        """The instance's values from the cache when present, else the account key or defaults."""
        values = dict(DEFAULT_LIMITS)
        configured = self.account.get("max_characters")
        if configured not in (None, "") and str(configured).isdigit():
            values["max_characters"] = int(configured)
        cached = self._read_cache()
        if cached is not None:
            values.update({k: v for k, v in cached.items() if k in DEFAULT_LIMITS and isinstance(v, int)})
        return values

    def current_limits(self) -> Limits:
        values = self.instance_limits()
        return dataclasses.replace(
            self.limits,
            text_max=values["max_characters"],
            media_max=values["max_media_attachments"],
            image_max_bytes=values["image_size_limit"],
            video_max_bytes=values["video_size_limit"],
            alt_max=values["description_limit"],
        )

    def count_text(self, text: str) -> int:
        return mastodon_length(text, url_length=self.instance_limits()["characters_reserved_per_url"])

    def check(self, message: Message) -> list[Problem]:
        # Count what will be sent: the link is appended to the text when the text lacks it.
        composed = dataclasses.replace(message, text=compose(message))
        return check_limits(self.current_limits(), self.count_text, composed)

    def refresh_limits(self) -> dict[str, int]:
        """Ask the instance for its limits and cache them for `check`."""
        response = self._send("GET", "/api/v2/instance")
        if response.status_code != 200:
            raise self._error(response, "reading the instance's limits")
        body = json_or_empty(response)
        config = body.get("configuration", {}) if isinstance(body, dict) else {}
        statuses = config.get("statuses") or {}
        media = config.get("media_attachments") or {}
        found: dict[str, Any] = {}
        for key in ("max_characters", "max_media_attachments", "characters_reserved_per_url"):
            if isinstance(statuses.get(key), int):
                found[key] = statuses[key]
        for key in ("description_limit", "image_size_limit", "video_size_limit"):
            if isinstance(media.get(key), int):
                found[key] = media[key]
        found["fetched_at"] = self.clock().isoformat()
        self._write_cache(found)
        return self.instance_limits()

    def _refresh_limits_if_stale(self) -> None:
        # Best effort, after the real work: a failure here must never fail a post that went out.
        if self.state_dir is None:
            return
        cached = self._read_cache()
        fetched = _parse_time(cached.get("fetched_at")) if cached else None
        if fetched is not None and self.clock() - fetched < CACHE_MAX_AGE:
            return
        try:
            self.refresh_limits()
        except (AdapterError, OSError, ValueError):
            pass

    def _cache_path(self) -> Path | None:
        return self.state_dir / CACHE_FILE if self.state_dir is not None else None

    def _read_cache(self) -> dict[str, Any] | None:
        path = self._cache_path()
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # a damaged cache is as good as none: the defaults apply
        return data if isinstance(data, dict) else None

    def _write_cache(self, data: dict[str, Any]) -> None:
        path = self._cache_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".instance-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        saved = job.saved
        if saved.get("status_id"):  # the answer was recorded: the status exists, send nothing
            return Receipt(str(saved["status_id"]), saved.get("status_url"))
        media_ids = self._upload_media(message, job)

        now = self.clock()
        posting_at = _parse_time(job.saved.get("posting_at"))
        if posting_at is not None and now - posting_at > IDEMPOTENCY_WINDOW:
            # The server has forgotten the key: a resend could make a second status, so look first.
            found = self._find_in_timeline(message, job.saved)
            if found is not None:
                self._save(job, status_id=found.platform_id, status_url=found.url)
                return found
            posting_at = None  # not there: this request starts a new idempotency window
        if posting_at is None:
            first = job.saved.get("first_posting_at") or now.isoformat()
            self._save(job, posting_at=now.isoformat(), first_posting_at=first)

        body: dict[str, Any] = {"status": compose(message)}
        if media_ids:
            body["media_ids"] = media_ids
        for key in ("visibility", "language"):
            if self.account.get(key):
                body[key] = str(self.account[key])
        response = self._send("POST", "/api/v1/statuses", json=body, headers={"Idempotency-Key": job.key})
        if response.status_code != 200:
            raise self._error(response, "creating the status")
        status = json_or_empty(response)
        if not isinstance(status, dict) or not _is_id(status.get("id")):
            # 200 without a status: it may exist; let the dispatcher reconcile through lookup.
            raise MaybeSent("the instance answered 200 without a status id", http_status=200)
        receipt = _receipt(status)
        self._save(job, status_id=receipt.platform_id, status_url=receipt.url)
        self._refresh_limits_if_stale()
        return receipt

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        saved = job.saved
        if saved.get("status_id"):
            return Receipt(str(saved["status_id"]), saved.get("status_url"))
        if not saved.get("posting_at"):
            return None  # `posting_at` is saved before the status request leaves: none ever left
        return self._find_in_timeline(message, saved)

    def whoami(self) -> str:
        account = self._verify_credentials()
        self._refresh_limits_if_stale()
        acct = str(account.get("acct") or account.get("username") or "")
        host = urlsplit(self.instance).hostname or self.instance
        return f"@{acct}" if "@" in acct else f"@{acct}@{host}"

    # --- steps ---------------------------------------------------------------------------------

    def _upload_media(self, message: Message, job: Job) -> list[str]:
        # Copies: the checkpoint changes only through `save`, as it would in the database.
        entries: list[dict[str, Any] | None] = [dict(e) if e else None for e in job.saved.get("media") or []]
        entries = (entries + [None] * len(message.media))[: len(message.media)]
        for index, item in enumerate(message.media):
            entry = entries[index]
            if entry is not None and entry.get("file") == item.file:
                continue  # uploaded on an earlier attempt
            job.heartbeat()
            data = {"description": item.alt} if item.alt else {}
            files = {"file": (Path(item.file).name, item.read(), item.mime)}
            response = self._send("POST", "/api/v2/media", data=data, files=files)
            if response.status_code not in (200, 202):
                raise self._error(response, f"uploading media[{index}]")
            answer = json_or_empty(response)
            if not isinstance(answer, dict) or not answer.get("id"):
                raise Transient(
                    f"uploading media[{index}]: the answer had no media id", http_status=response.status_code
                )
            # 202 (or 200 without `url`) means the server is still processing the file.
            ready = response.status_code == 200 and answer.get("url") is not None
            entries[index] = {"file": item.file, "id": str(answer["id"]), "ready": ready}
            self._save(job, media=entries)
        for index, entry in enumerate(entries):
            assert entry is not None
            if not entry["ready"]:
                self._wait_until_processed(job, entries, index)
                entry["ready"] = True
                self._save(job, media=entries)
        return [str(entry["id"]) for entry in entries if entry is not None]

    def _wait_until_processed(self, job: Job, entries: list[dict[str, Any] | None], index: int) -> None:
        entry = entries[index]
        assert entry is not None
        delay = 1.0
        for _ in range(MEDIA_POLLS):
            job.heartbeat()
            self.sleep(delay)
            response = self._send("GET", f"/api/v1/media/{entry['id']}")
            if response.status_code == 200:
                return
            if response.status_code == 404:
                # Unattached uploads are removed after a while: forget it, upload it again next time.
                entries[index] = None
                self._save(job, media=entries)
                raise Transient(f"media[{index}] is gone from the instance; it will be uploaded again", http_status=404)
            if response.status_code != 206:  # 206: still processing
                raise self._error(response, f"waiting for media[{index}]")
            delay = min(delay * 2, 10.0)
        raise Transient(f"media[{index}] is still being processed by the instance", retry_after=60)

    def _verify_credentials(self) -> dict[str, Any]:
        response = self._send("GET", "/api/v1/accounts/verify_credentials")
        if response.status_code != 200:
            raise self._error(response, "reading the account")
        account = json_or_empty(response)
        if not isinstance(account, dict) or not account.get("id"):
            raise Transient("reading the account: the answer had no account id", http_status=200)
        return account

    def _find_in_timeline(self, message: Message, saved: Mapping[str, Any]) -> Receipt | None:
        account = self._verify_credentials()
        response = self._send(
            "GET",
            f"/api/v1/accounts/{account['id']}/statuses",
            params={"limit": TIMELINE_PAGE, "exclude_reblogs": "true"},
        )
        if response.status_code != 200:
            raise self._error(response, "reading the account's statuses")
        statuses = json_or_empty(response)
        if not isinstance(statuses, list):
            return None
        media_ids = {str(e["id"]) for e in saved.get("media") or [] if e}
        since = _parse_time(saved.get("first_posting_at") or saved.get("posting_at"))
        wanted = _comparable(compose(message))
        for status in statuses:
            if not isinstance(status, dict) or not _is_id(status.get("id")):
                continue
            created = _parse_time(status.get("created_at"))
            if since is not None and created is not None and created < since - CLOCK_SLACK:
                continue
            if media_ids:
                attached = {str(m.get("id")) for m in status.get("media_attachments") or []}
                if attached & media_ids:
                    return _receipt(status)
            elif _comparable(html_to_text(str(status.get("content") or ""))) == wanted:
                return _receipt(status)
        return None

    # --- HTTP ----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        try:
            url = self.url(self.instance, path)
            return request(self.http, method, url, timeout=self.timeout, headers=headers, **kwargs)
        except AdapterError as exc:
            exc.args = (self._scrub(str(exc)),)
            raise

    def _error(self, response: requests.Response, doing: str) -> AdapterError:
        """Map Mastodon's `{"error", "error_description"?}` answers to the typed errors."""
        status = response.status_code
        body = json_or_empty(response)
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
        said = error or response.text[:200]
        detail = self._scrub(f"{doing}: HTTP {status}: {said}" + (f" ({description})" if description else ""))
        if status == 429:
            now = self.clock().timestamp()
            wait = seconds_until_iso(response.headers.get("X-RateLimit-Reset"), now=now)
            if wait is None:
                wait = retry_after(response.headers, now=now)
            return RateLimited(detail, retry_after=wait, http_status=status)
        if status >= 500 or status == 408:
            return Transient(detail, retry_after=retry_after(response.headers), http_status=status)
        if status in (401, 403):  # invalid/revoked token, or a scope the token lacks
            return AuthExpired(detail, http_status=status)
        if status == 422 and "processing" in error.lower():
            # "Cannot attach files that have not finished processing. Try again in a moment!"
            return Transient(detail, retry_after=10, http_status=status)
        return Rejected(detail, http_status=status)

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    @staticmethod
    def _save(job: Job, **changes: Any) -> None:
        # `save` replaces the checkpoint: always write the whole of it, as plain JSON (what the
        # database keeps), so later changes to our own lists never leak into it unsaved.
        job.save(json.loads(json.dumps({**job.saved, **changes})))


# --- text ------------------------------------------------------------------------------------


def compose(message: Message) -> str:
    """The status text: the message text, with its link appended when the text lacks it."""
    text = message.text.strip()
    if message.link and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _spans(text: str) -> list[tuple[int, int, str]]:
    """URLs and mentions as (start, end, replacement), overlaps removed, in text order."""
    found: list[tuple[int, int, str]] = []
    for match in _URL.finditer(text):
        end = _trim_url(text, match.start(), match.end())
        found.append((match.start(), end, "url"))
    for match in _MENTION.finditer(text):
        found.append((match.start(), match.end(), "@" + match.group(1)))
    found.sort()
    kept: list[tuple[int, int, str]] = []
    for span in found:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def _trim_url(text: str, start: int, end: int) -> int:
    # Sentence punctuation after a link is not part of it; a closing bracket is only when opened.
    while end > start:
        last = text[end - 1]
        if last in _TRAILING:
            end -= 1
        elif last == ")" and text.count("(", start, end) < text.count(")", start, end):
            end -= 1
        else:
            break
    return end


def mastodon_length(text: str, *, url_length: int = 23) -> int:
    """Length as Mastodon's StatusLengthValidator counts it."""
    total = 0
    position = 0
    for start, end, kind in _spans(text):
        total += graphemes.count(text[position:start])
        total += url_length if kind == "url" else graphemes.count(kind)
        position = end
    return total + graphemes.count(text[position:])


def without_mention_domains(text: str) -> str:
    """`@user@domain` → `@user`, as a status's rendered content shows a mention."""
    out: list[str] = []
    position = 0
    for start, end, kind in _spans(text):
        out.append(text[position:start])
        out.append(text[start:end] if kind == "url" else kind)
        position = end
    out.append(text[position:])
    return "".join(out)


class _PlainText(HTMLParser):
    """A status's HTML `content` back to its text: paragraphs and line breaks kept as spaces."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    parser = _PlainText()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts)


def _comparable(text: str) -> str:
    # Mastodon renders a remote mention without its domain and turns newlines into markup.
    return " ".join(without_mention_domains(text).split())


# --- small helpers ---------------------------------------------------------------------------


def _receipt(status: Mapping[str, Any]) -> Receipt:
    url = next((v for v in (status.get("url"), status.get("uri")) if isinstance(v, str) and v), None)
    return Receipt(str(status["id"]), url)


def _is_id(value: Any) -> bool:
    """A status id as Mastodon sends it: a non-empty string (a number from some forks)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != ""


def _base_url(instance: str) -> str:
    instance = instance.strip().rstrip("/")
    if instance and "://" not in instance:
        instance = f"https://{instance}"  # operators often write just the host name
    return instance


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
