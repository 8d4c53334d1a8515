"""YouTube (Data API v3): one video per post, sent with the resumable upload protocol.

The upload session URI is saved in the job's checkpoint before the first byte leaves, so a retry
or a crash resumes the same session from the offset the server reports and never creates a
second video. `lookup` asks the saved session whether the upload completed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, time as clock_time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
    ConfigError,
    Job,
    Limits,
    MaybeSent,
    Media,
    Message,
    Problem,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
    check_limits,
    rebase,
    register_secret,
)
from adapters.google import TOKEN_BASE, TOKEN_PATH, GoogleAuth
from adapters.http import json_or_empty, request, retry_after

API_BASE = "https://www.googleapis.com"
UPLOAD_PATH = "/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status"
CHANNELS_PATH = "/youtube/v3/channels?part=snippet&mine=true"
WATCH_URL = "https://www.youtube.com/watch?v={id}"

TITLE_MAX = 100  # characters
DESCRIPTION_MAX = 5000  # UTF-8 bytes
TAGS_MAX = 500  # characters, counted as YouTube counts them (see `tags_length`)
# Google requires every chunk but the last to be a multiple of 256 KiB.
CHUNK_UNIT = 256 * 1024
DEFAULT_CHUNK = 8 * 1024 * 1024
PRIVACY = ("private", "unlisted", "public")
# Unaudited API projects may upload only private videos: the documented safe default.
DEFAULT_PRIVACY = "private"
DEFAULT_CATEGORY = "22"  # People & Blogs, Google's own default in its samples
# A chunk PUT that the server answers without moving its offset: after this many in a row the
# upload is stuck, and a later attempt (resuming from the server's offset) does better.
STALL_LIMIT = 3

# Quota resets at midnight Pacific time (the documented reset of the daily quota).
PACIFIC = ZoneInfo("America/Los_Angeles")
UPLOAD_LIMIT_WAIT = 24 * 3600.0

# Reasons from `error.errors[].reason`, mapped as PLATFORMS.md says.
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
_PERMANENT_REASONS = {
    "invalidTitle",
    "invalidDescription",
    "invalidTags",
    "invalidCategoryId",
    "invalidPublishAt",
    "invalidFilename",
    "invalidVideoMetadata",
    "mediaBodyRequired",
    "forbidden",
    "forbiddenLicenseSetting",
    "forbiddenPrivacySetting",
    # Comes at HTTP 401, but a new token cannot create the missing channel: no refresh.
    "youtubeSignupRequired",
}
# The account, not the content, is the problem: pause the account until a person acts.
_ACCOUNT_REASONS = {
    "insufficientPermissions",
    "authenticatedUserAccountClosed",
    "authenticatedUserAccountSuspended",
    "authenticatedUserNotChannel",
}


def seconds_until_quota_reset(now: float) -> float:
    """Seconds from `now` (epoch) to the next midnight in America/Los_Angeles."""
    local = datetime.fromtimestamp(now, PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), clock_time(0), tzinfo=PACIFIC)
    # `.timestamp()` on both sides: subtracting aware datetimes that share a tzinfo ignores a
    # DST change between them, and would be an hour off on those two nights a year.
    return midnight.timestamp() - now


def tags_length(tags: list[str]) -> int:
    """Length of the tags as YouTube counts it against its 500-character cap.

    YouTube joins tags with commas and wraps a tag containing a space in quotes, so "Hari Guru"
    costs 11 characters, not 9.
    """
    total = sum(len(tag) + (2 if " " in tag else 0) for tag in tags)
    return total + max(0, len(tags) - 1)


class YouTubeAdapter(BaseAdapter):
    platform: ClassVar[str] = "youtube"
    limits: ClassVar[Limits] = Limits(
        text_max=DESCRIPTION_MAX,
        media_max=1,
        media_kinds=frozenset({"video"}),
        video_max_bytes=256 * 1024**3,  # 256 GB, YouTube's upload cap
        requires_media=True,
    )
    required: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "refresh_token")
    optional: ClassVar[tuple[str, ...]] = ("privacy", "category", "made_for_kids", "tags", "chunk_size")
    secrets: ClassVar[tuple[str, ...]] = ("client_secret", "refresh_token")

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        errors = [p for p in self.account_problems(account) if p.severity == "error"]
        if errors:
            raise ConfigError("; ".join(f"{p.field}: {p.message}" for p in errors))
        self.privacy = str(account.get("privacy") or DEFAULT_PRIVACY)
        self.category = str(account.get("category") or DEFAULT_CATEGORY)
        self.made_for_kids = bool(account.get("made_for_kids", False))
        self.tags = _tags(account.get("tags"))
        self.chunk_size = int(account.get("chunk_size") or DEFAULT_CHUNK)
        # Used for the quota reset time; tests move it.
        self.clock: Callable[[], float] = time.time
        self.google = GoogleAuth(
            http=http,
            token_url=self.url(TOKEN_BASE, TOKEN_PATH),
            timeout=self.timeout,
            client_id=str(account["client_id"]),
            client_secret=str(account["client_secret"]),
            refresh_token=str(account["refresh_token"]),
            state_dir=self.state_dir,
        )

    # --- offline checks ------------------------------------------------------------------------

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        privacy = account.get("privacy")
        if privacy not in (None, "") and privacy not in PRIVACY:
            problems.append(Problem("privacy", f"is {privacy!r}; use one of {', '.join(PRIVACY)}"))
        category = account.get("category")
        if category not in (None, "") and not str(category).isdigit():
            problems.append(Problem("category", f"is {category!r}; a YouTube category id is a number, e.g. 22"))
        kids = account.get("made_for_kids")
        if kids is not None and not isinstance(kids, bool):
            problems.append(Problem("made_for_kids", "must be true or false"))
        tags = account.get("tags")
        if tags is not None:
            if not (isinstance(tags, str) or (isinstance(tags, list) and all(isinstance(t, str) for t in tags))):
                problems.append(Problem("tags", "must be a list of strings (or one comma-separated string)"))
            else:
                parsed = _tags(tags)
                if any("<" in t or ">" in t for t in parsed):
                    problems.append(Problem("tags", "may not contain < or >"))
                if tags_length(parsed) > TAGS_MAX:
                    problems.append(
                        Problem("tags", f"are {tags_length(parsed)} characters in all; the limit is {TAGS_MAX}")
                    )
        chunk = account.get("chunk_size")
        if chunk is not None:
            if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0 or chunk % CHUNK_UNIT:
                problems.append(
                    Problem("chunk_size", f"must be a positive multiple of {CHUNK_UNIT} bytes (256 KiB)")
                )
        return problems

    def count_text(self, text: str) -> int:
        # The description limit is in bytes, so a post in Javanese script or with emoji is
        # shorter than its character count suggests.
        return len(text.encode("utf-8"))

    def check(self, message: Message) -> list[Problem]:
        problems = [p for p in check_limits(self.limits, self.count_text, message) if p.field != "text"]
        title, derived = _title(message)
        if not title:
            problems.append(Problem("title", "is empty: set `title` or start the text with a line"))
        elif not derived and len(title) > TITLE_MAX:
            problems.append(Problem("title", f"is {len(title)} characters long; the limit is {TITLE_MAX}"))
        elif derived and len(_first_line(message.text)) > TITLE_MAX:
            problems.append(
                Problem(
                    "title",
                    f"comes from the first line of the text, which is longer than {TITLE_MAX} characters: "
                    "it is shortened; set `title` to choose it",
                    severity="warning",
                )
            )
        if "<" in title or ">" in title:
            problems.append(Problem("title", "may not contain < or > (YouTube refuses them)"))
        description = _description(message)
        size = self.count_text(description)
        if size > DESCRIPTION_MAX:
            problems.append(Problem("text", f"is {size} bytes as UTF-8; the description limit is {DESCRIPTION_MAX}"))
        if "<" in description or ">" in description:
            problems.append(Problem("text", "may not contain < or > (YouTube refuses them in a description)"))
        return problems

    # --- publishing ------------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        errors = [p for p in self.check(message) if p.severity == "error"]
        if errors:
            # Refused here, before the upload costs 1,600 quota units and the bytes.
            raise Rejected("; ".join(f"{p.field}: {p.message}" for p in errors))
        video = message.media[0]
        try:
            size = video.size
        except OSError as exc:
            raise Rejected(f"media[0]: {video.file} cannot be read ({type(exc).__name__})") from exc
        state = dict(job.saved)
        if state.get("video"):  # completed on an earlier attempt; only the recording was lost
            return _receipt(str(state["video"]))

        offset = 0
        session = state.get("session")
        if session:
            # Ask with the size the session was opened for: if the operator replaced the file
            # since, a completed old upload must still be recognised, not uploaded again.
            outcome, value = self._probe(str(session), int(state.get("size") or size))
            if outcome == "done":
                job.save({**state, "video": value})
                return _receipt(value)
            if outcome == "partial" and int(state.get("size") or size) == size:
                offset = int(value)
            elif outcome == "gone" and state.get("final"):
                raise MaybeSent(
                    "the YouTube upload session expired after its last bytes were sent; "
                    "the video may exist: look at the channel, then `siar resolve`"
                )
            else:
                session = None  # gone before the end, or opened for another file: start over

        if not session:
            session = self._start(message, video, size)
            state = {"session": session, "size": size, "file": video.file}
            job.save(state)  # before any byte: a retry resumes this session, never a new one
        return self._upload(job, state, video, size, offset)

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        """The saved session's status: a Receipt when the upload completed, None when it did not.

        Raises `MaybeSent` when it cannot tell (the session expired after its last bytes went
        out), so the delivery goes to `unknown` rather than being uploaded a second time.
        """
        state = dict(job.saved)
        if state.get("video"):
            return _receipt(str(state["video"]))
        session = state.get("session")
        if not session:
            return None  # no session was opened: nothing can have been published
        size = int(state.get("size") or (message.media[0].size if message.media else 0))
        outcome, value = self._probe(str(session), size)
        if outcome == "done":
            job.save({**state, "video": value})
            return _receipt(value)
        if outcome == "gone" and state.get("final"):
            raise MaybeSent("the YouTube upload session expired after its last bytes were sent")
        return None

    def whoami(self) -> str:
        response = self._call("GET", self.url(API_BASE, CHANNELS_PATH))
        if response.status_code != 200:
            raise self._classify(response)
        body = json_or_empty(response)
        items = (body.get("items") if isinstance(body, dict) else None) or []
        if not items:
            raise AuthExpired("the authorised Google account has no YouTube channel")
        channel = items[0]
        title = (channel.get("snippet") or {}).get("title") or "?"
        return f"YouTube channel {title} ({channel.get('id')})"

    # --- the resumable protocol -------------------------------------------------------------------

    def _start(self, message: Message, video: Media, size: int) -> str:
        title, _ = _title(message)
        snippet: dict[str, Any] = {
            "title": title,
            "description": _description(message),
            "categoryId": self.category,
        }
        if self.tags:
            snippet["tags"] = self.tags
        metadata = {
            "snippet": snippet,
            "status": {"privacyStatus": self.privacy, "selfDeclaredMadeForKids": self.made_for_kids},
        }
        response = self._call(
            "POST",
            self.url(API_BASE, UPLOAD_PATH),
            data=json.dumps(metadata, ensure_ascii=False).encode("utf-8"),
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Length": str(size),
                "X-Upload-Content-Type": video.mime,
            },
        )
        location = response.headers.get("Location")
        if response.status_code == 200 and location:
            # The upload id in the URI lets anyone holding it write to the upload: mask it.
            register_secret(_upload_id(location))
            return location
        if response.status_code == 200:
            raise Transient("YouTube opened no upload session (no Location header)", http_status=200)
        raise self._classify(response)

    def _upload(self, job: Job, state: dict[str, Any], video: Media, size: int, offset: int) -> Receipt:
        session = str(state["session"])
        stalled = 0
        with video.path.open("rb") as handle:
            while True:
                if offset >= size:
                    # Every byte is there yet the server has not finished: only it can move on.
                    raise Transient("YouTube holds every byte but has not completed the upload", http_status=308)
                job.heartbeat()  # renews the lease between chunks; raises LeaseLost if taken
                end = min(offset + self.chunk_size, size) - 1
                if end == size - 1 and not state.get("final"):
                    # From here on the video may come to exist even if no answer reaches us.
                    state = {**state, "final": True}
                    job.save(state)
                handle.seek(offset)
                chunk = handle.read(end - offset + 1)
                response = self._call(
                    "PUT",
                    self._session_url(session),
                    data=chunk,
                    headers={"Content-Type": video.mime, "Content-Range": f"bytes {offset}-{end}/{size}"},
                )
                status = response.status_code
                if status in (200, 201):
                    video_id = _video_id(response)
                    job.save({**state, "video": video_id})
                    return _receipt(video_id)
                if status == 308:
                    received = _next_offset(response)
                    stalled = stalled + 1 if received <= offset else 0
                    if stalled >= STALL_LIMIT:
                        raise Transient(f"YouTube upload made no progress past byte {received}", http_status=308)
                    offset = received
                    continue
                if status in (404, 410):
                    if state.get("final"):
                        raise MaybeSent("the YouTube upload session ended while its last bytes were being sent")
                    job.save({})  # the session is gone: the next attempt opens a new one
                    raise Transient(f"the YouTube upload session expired (HTTP {status})", http_status=status)
                raise self._classify(response)

    def _probe(self, session: str, size: int) -> tuple[str, Any]:
        """Ask a session where it stands: ("done", video id), ("partial", next offset), ("gone", None)."""
        response = self._call(
            "PUT",
            self._session_url(session),
            data=b"",
            headers={"Content-Range": f"bytes */{size}", "Content-Length": "0"},
        )
        status = response.status_code
        if status in (200, 201):
            return "done", _video_id(response)
        if status == 308:
            return "partial", _next_offset(response)
        if status in (404, 410):
            return "gone", None
        raise self._classify(response)

    def _session_url(self, uri: str) -> str:
        # The URI is stored as YouTube gave it; `api_base` applies at use, like every other URL.
        return rebase(uri, self.account.get("api_base"))

    # --- HTTP with a bearer token -----------------------------------------------------------------

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One API call with the access token; on 401 refresh once and send again."""
        headers = dict(kwargs.pop("headers", {}) or {})
        headers["Authorization"] = f"Bearer {self.google.token()}"
        # A 308 here means "resume incomplete", not a redirect: never let requests follow it.
        kwargs.setdefault("allow_redirects", False)
        response = request(self.http, method, url, timeout=self.timeout, headers=headers, **kwargs)
        if response.status_code == 401 and "youtubeSignupRequired" not in _reasons(response):
            # A 401 answer means the request was refused, not acted on: sending it again is safe.
            self.google.forget()
            headers["Authorization"] = f"Bearer {self.google.refresh()}"
            response = request(self.http, method, url, timeout=self.timeout, headers=headers, **kwargs)
            if response.status_code == 401 and "youtubeSignupRequired" not in _reasons(response):
                raise AuthExpired(
                    f"YouTube refused a freshly refreshed token: {_error_text(response)}", http_status=401
                )
        return response

    def _classify(self, response: requests.Response) -> AdapterError:
        status = response.status_code
        reasons = set(_reasons(response))
        detail = f"YouTube: HTTP {status} {_error_text(response)}"
        if "quotaExceeded" in reasons:
            return RateLimited(detail, retry_after=seconds_until_quota_reset(self.clock()), http_status=status)
        if "uploadLimitExceeded" in reasons:
            return RateLimited(detail, retry_after=UPLOAD_LIMIT_WAIT, http_status=status)
        if reasons & _RATE_REASONS or status == 429:
            return RateLimited(detail, retry_after=retry_after(response.headers), http_status=status)
        if reasons & _PERMANENT_REASONS:
            return Rejected(detail, http_status=status)
        if reasons & _ACCOUNT_REASONS or status == 401:
            return AuthExpired(detail, http_status=status)
        if status >= 500 or status in (408, 425):
            return Transient(detail, retry_after=retry_after(response.headers), http_status=status)
        return Rejected(detail, http_status=status)


# --- helpers -------------------------------------------------------------------------------------


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    return [str(tag).strip() for tag in value if str(tag).strip()]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _title(message: Message) -> tuple[str, bool]:
    """The video title and whether it was derived from the text (and so may be shortened)."""
    if message.title and message.title.strip():
        return message.title.strip(), False
    line = _first_line(message.text)
    if len(line) > TITLE_MAX:
        cut = line[: TITLE_MAX - 1]
        # Cut at a word boundary when one is near, so the title does not end mid-word.
        if " " in cut[TITLE_MAX // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        line = cut.rstrip() + "…"
    return line, True


def _description(message: Message) -> str:
    text = message.text.strip()
    if message.link and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _reasons(response: requests.Response) -> list[str]:
    body = json_or_empty(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    return [str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")]


def _error_text(response: requests.Response) -> str:
    body = json_or_empty(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        reasons = ",".join(_reasons(response))
        return f"{reasons}: {str(error.get('message') or '')[:300]}".strip(": ")
    return response.text[:200]


def _next_offset(response: requests.Response) -> int:
    """The first byte the server still needs, from a 308's `Range: bytes=0-N` (none: 0)."""
    value = response.headers.get("Range", "")
    if "-" not in value:
        return 0
    try:
        return int(value.rsplit("-", 1)[1]) + 1
    except ValueError:
        return 0


def _video_id(response: requests.Response) -> str:
    body = json_or_empty(response)
    video_id = body.get("id") if isinstance(body, dict) else None
    if not video_id:
        # The upload finished but the answer is unreadable: the video exists, its id is unknown.
        raise MaybeSent(f"YouTube finished the upload but sent no video id (HTTP {response.status_code})")
    return str(video_id)


def _upload_id(uri: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return (parse_qs(urlsplit(uri).query).get("upload_id") or [""])[0]


def _receipt(video_id: str) -> Receipt:
    return Receipt(platform_id=video_id, url=WATCH_URL.format(id=video_id))
