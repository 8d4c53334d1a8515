"""X (API v2): posts with text, up to four images, a GIF or a video, as the account's own user.

The post itself (`POST /2/tweets`) is the one irreversible step and X has no idempotency key. So
every upload is checkpointed with `job.save` as soon as X has it, and a marker is saved just before
the post request: a retry resumes the uploads instead of repeating them, and a crash or X's
"duplicate content" answer on a retry is settled from the account's own timeline, never by
posting again. Auth is an OAuth 2.0 user token (refreshed here; X rotates the refresh token, so the
new one is kept in the account's state folder) or OAuth 1.0a user context, signed here.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import html
import secrets as secrets_module
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

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
)
from adapters.http import json_or_empty, request, retry_after, seconds_until_epoch
from adapters.tokens import TokenStore
from adapters.xtext import MAX_WEIGHTED_LENGTH, find_urls, weighted_length

API_BASE = "https://api.x.com"
WEB_BASE = "https://x.com"  # permalinks for people: never rebased onto `api_base`

IMAGE_MAX_BYTES = 5 * 1024 * 1024
GIF_MAX_BYTES = 15 * 1024 * 1024
VIDEO_MAX_BYTES = 512 * 1024 * 1024
ALT_MAX = 1000
IMAGES_MAX = 4

# Refresh an OAuth 2.0 token this long before its stated expiry, so a long video upload started
# with it does not come back 401 halfway.
EXPIRY_MARGIN = 120.0
# Our clock and X's may disagree; look this far before our own "about to post" mark.
LOOKUP_SLACK = 600.0

# Problem types (the path after /2/problems/) that are about the credentials or the app, not the
# content: every later post would fail the same way, so the account waits for a person.
_AUTH_PROBLEMS = frozenset({"client-forbidden", "unsupported-authentication", "oauth1-permissions"})
_DUPLICATE = "duplicate content"  # "You are not allowed to create a Tweet with duplicate content."


class XAdapter(BaseAdapter):
    platform: ClassVar[str] = "x"
    limits: ClassVar[Limits] = Limits(
        text_max=MAX_WEIGHTED_LENGTH,
        media_max=IMAGES_MAX,
        media_kinds=frozenset({"image", "video"}),
        image_max_bytes=IMAGE_MAX_BYTES,
        video_max_bytes=VIDEO_MAX_BYTES,
        alt_max=ALT_MAX,
    )
    oauth2_keys: ClassVar[tuple[str, ...]] = ("token", "refresh_token", "client_id")
    oauth1_keys: ClassVar[tuple[str, ...]] = ("consumer_key", "consumer_secret", "access_token", "access_secret")
    # Either set of keys makes a valid account, so none is `required`; `account_problems` checks
    # that one whole set is there.
    optional: ClassVar[tuple[str, ...]] = (*oauth2_keys, "client_secret", *oauth1_keys)
    secrets: ClassVar[tuple[str, ...]] = (
        "token",
        "refresh_token",
        "client_secret",
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_secret",
    )
    # X takes append segments up to 5 MB; 4 MiB leaves room for the multipart framing.
    chunk_size: int = 4 * 1024 * 1024
    # STATUS polls before giving the attempt back as Transient (the next one resumes polling).
    max_polls: int = 120

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        problems = self.auth_problems(account)
        if problems:
            raise ConfigError(f"x account {self.name!r}: " + "; ".join(f"{p.field} {p.message}" for p in problems))
        # Expiries, OAuth timestamps and rate-limit waits are measured with this, so tests can
        # fix the time.
        self.clock: Callable[[], float] = time.time
        self.auth: _Auth = _OAuth1(self) if self.auth_mode(account) == "oauth1" else _OAuth2(self)
        # The account's id and username (for the timeline and permalinks): not secrets, so they
        # sit nested under "user", where TokenStore does not register them for masking.
        self.profile = TokenStore(self.state_dir, "x-profile.json")

    # --- account validation ---------------------------------------------------------------------

    @classmethod
    def auth_mode(cls, account: Mapping[str, Any]) -> str:
        return "oauth1" if any(_given(account, key) for key in cls.oauth1_keys) else "oauth2"

    @classmethod
    def auth_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        """One whole set of credentials, OAuth 2.0 or OAuth 1.0a, and not a mix of both."""
        oauth2 = [key for key in (*cls.oauth2_keys, "client_secret") if _given(account, key)]
        oauth1 = [key for key in cls.oauth1_keys if _given(account, key)]
        if oauth1 and oauth2:
            return [
                Problem(
                    oauth2[0],
                    f"mixes OAuth 2.0 keys ({', '.join(oauth2)}) with OAuth 1.0a keys "
                    f"({', '.join(oauth1)}): keep one set",
                )
            ]
        if oauth1:
            wanted, scheme = (
                cls.oauth1_keys,
                "OAuth 1.0a (consumer_key, consumer_secret, access_token, access_secret)",
            )
        else:
            wanted = cls.oauth2_keys
            scheme = (
                "OAuth 2.0 (token, refresh_token, client_id, and client_secret for a confidential "
                "client); or give consumer_key, consumer_secret, access_token, access_secret for OAuth 1.0a"
            )
        return [Problem(key, f"is required for {scheme}") for key in wanted if not _given(account, key)]

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        return super().account_problems(account) + cls.auth_problems(account)

    # --- offline checks -------------------------------------------------------------------------

    @staticmethod
    def compose(message: Message) -> str:
        """The post's text as sent: X has no link field, so the link goes at the end of the text."""
        text = message.text.strip()
        link = (message.link or "").strip()
        if link and link not in text:
            text = f"{text}\n\n{link}" if text else link
        return text

    def count_text(self, text: str) -> int:
        return weighted_length(text)

    def check(self, message: Message) -> list[Problem]:
        problems: list[Problem] = []
        text = self.compose(message)
        length = weighted_length(text)
        if length > MAX_WEIGHTED_LENGTH:
            problems.append(
                Problem(
                    "text",
                    f"is {length} characters long as X counts them (every link 23, CJK and emoji 2, "
                    f"link included); the limit is {MAX_WEIGHTED_LENGTH}",
                )
            )
        if not text and not message.media:
            problems.append(Problem("text", "is empty and there is no media: X needs one or the other"))
        groups: dict[str, list[int]] = {"image": [], "gif": [], "video": []}
        for index, item in enumerate(message.media):
            where = f"media[{index}]"
            kind = _kind(item)
            if kind is None:
                problems.append(Problem(where, f"{item.file} is {item.mime}; X takes images, GIFs and videos"))
                continue
            groups[kind].append(index)
            cap = {"image": IMAGE_MAX_BYTES, "gif": GIF_MAX_BYTES, "video": VIDEO_MAX_BYTES}[kind]
            size = _size(item)  # a missing file is reported by the post validation itself
            if size is not None and size > cap:
                label = "GIF" if kind == "gif" else kind
                problems.append(
                    Problem(where, f"{item.file} is {size} bytes; the limit for an X {label} is {cap}")
                )
            if item.alt and len(item.alt) > ALT_MAX:
                problems.append(Problem(f"{where}.alt", f"is {len(item.alt)} characters; the limit is {ALT_MAX}"))
            if item.alt and kind == "video":
                problems.append(
                    Problem(f"{where}.alt", "X takes alt text for images and GIFs only; it is not sent", "warning")
                )
        plural = {"image": "images", "gif": "GIFs", "video": "videos"}
        used = [kind for kind, indexes in groups.items() if indexes]
        if len(used) > 1:
            mixed = " and ".join(plural[kind] for kind in used)
            problems.append(Problem("media", f"mixes {mixed}: X takes up to 4 images, or 1 GIF, or 1 video"))
        elif len(groups["image"]) > IMAGES_MAX:
            problems.append(Problem("media", f"has {len(groups['image'])} images; the limit is {IMAGES_MAX}"))
        elif used and used[0] in ("gif", "video") and len(groups[used[0]]) > 1:
            problems.append(Problem("media", f"has {len(groups[used[0]])} {plural[used[0]]}; X takes 1 per post"))
        return problems

    # --- publishing -----------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        text = self.compose(message)
        # Saved only just before a post request: if it is there, an earlier attempt may have posted.
        posted_before = job.saved.get("post_requested_at")
        if posted_before is not None:
            # X may have created the post even though the earlier attempt heard an error (it
            # answers 503 and posts anyway). Its duplicate check would catch a repeated text, but
            # not a media-only post: look first.
            found = self._find_on_timeline(message, float(posted_before))
            if found is not None:
                return found
        media_ids = self._upload_media(message, job)
        if posted_before is None:
            self._save(job, post_requested_at=self.clock())
        body: dict[str, Any] = {"text": text}
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        response = self._call("POST", "/2/tweets", json=body)
        if response.status_code in (200, 201):
            post_id = str(_data(response).get("id") or "")
            if not post_id:
                status = response.status_code
                raise MaybeSent(f"X answered HTTP {status} without a post id", http_status=status)
            return self._receipt(post_id)
        if response.status_code == 403 and _DUPLICATE in _problem(response).get("detail", "").lower():
            return self._settle_duplicate(message, posted_before, response)
        raise self._error(response, "create post")

    def _settle_duplicate(self, message: Message, posted_before: Any, response: requests.Response) -> Receipt:
        """X refused the text as a duplicate: ours from an earlier attempt, or someone else's."""
        detail = _problem(response).get("detail", "duplicate content")
        if posted_before is None:
            # No attempt of this delivery ever sent a post request: the copy on X is not ours.
            raise Rejected(f"X refused the post: {detail} (this delivery never posted it)", http_status=403)
        found = self._find_on_timeline(message, float(posted_before))
        if found is not None:
            return found
        # X says it is there and an earlier attempt sent it, but we cannot see it: a person decides.
        raise MaybeSent(
            f"X refused the post as a duplicate ({detail}) after an earlier attempt sent it, "
            "but it is not on the account's recent timeline",
            http_status=403,
        )

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        posted_at = job.saved.get("post_requested_at")
        if posted_at is None:
            return None  # the post request never left this machine: there is nothing to find
        return self._find_on_timeline(message, float(posted_at))

    def whoami(self) -> str:
        return f"@{self._user(refresh=True)['username']}"

    # --- media ----------------------------------------------------------------------------------

    def _upload_media(self, message: Message, job: Job) -> list[str]:
        ids: list[str] = []
        for index, item in enumerate(message.media):
            entry = self._media_entry(job, index, item)
            if not entry.get("ready"):
                if _kind(item) == "image":
                    entry = self._upload_image(job, index, item)
                else:
                    entry = self._upload_chunked(job, index, item, entry)
            if item.alt and _kind(item) in ("image", "gif") and entry.get("alt") != item.alt:
                job.heartbeat()
                response = self._call(
                    "POST",
                    "/2/media/metadata",
                    json={"id": entry["id"], "metadata": {"alt_text": {"text": item.alt}}},
                )
                if not response.ok:
                    raise self._error(response, f"set alt text of {item.file}")
                entry = self._store_media(job, index, {**entry, "alt": item.alt})
            ids.append(str(entry["id"]))
        return ids

    def _media_entry(self, job: Job, index: int, item: Media) -> dict[str, Any]:
        """What an earlier attempt uploaded for this item, if it is still the same file."""
        saved = job.saved.get("media") or []
        entry = dict(saved[index]) if index < len(saved) and isinstance(saved[index], Mapping) else {}
        # The post may have been edited between attempts: an id uploaded for another file is no use.
        if entry.get("file") != item.file or entry.get("size") != _size(item):
            return {}
        return entry

    def _upload_image(self, job: Job, index: int, item: Media) -> dict[str, Any]:
        job.heartbeat()
        response = self._call(
            "POST",
            "/2/media/upload",
            data={"media_category": "tweet_image"},
            files={"media": (Path(item.file).name, item.read(), item.mime)},
        )
        media_id = self._media_id(response, f"upload {item.file}")
        return self._store_media(
            job, index, {"file": item.file, "size": _size(item), "id": media_id, "ready": True}
        )

    def _upload_chunked(self, job: Job, index: int, item: Media, entry: dict[str, Any]) -> dict[str, Any]:
        """INITIALIZE, APPEND each segment, FINALIZE, then wait for processing; resumable at each step."""
        if not entry.get("id"):
            job.heartbeat()
            category = "tweet_gif" if _kind(item) == "gif" else "tweet_video"
            response = self._call(
                "POST",
                "/2/media/upload/initialize",
                json={"media_type": item.mime, "total_bytes": _size(item), "media_category": category},
            )
            media_id = self._media_id(response, f"start the upload of {item.file}")
            # The segment size is kept with the upload: a resumed upload must cut the file the same way.
            entry = self._store_media(
                job,
                index,
                {"file": item.file, "size": _size(item), "id": media_id, "chunk": self.chunk_size, "segments": 0},
            )
        media_id = str(entry["id"])
        if not entry.get("finalized"):
            segment = int(entry.get("segments") or 0)
            chunk_size = int(entry.get("chunk") or self.chunk_size)
            with item.path.open("rb") as handle:
                handle.seek(segment * chunk_size)
                while chunk := handle.read(chunk_size):
                    job.heartbeat()
                    response = self._call(
                        "POST",
                        f"/2/media/upload/{media_id}/append",
                        data={"segment_index": str(segment)},
                        files={"media": (Path(item.file).name, chunk, "application/octet-stream")},
                    )
                    if not response.ok:
                        raise self._error(response, f"upload part {segment} of {item.file}")
                    segment += 1
                    entry = self._store_media(job, index, {**entry, "segments": segment})
            job.heartbeat()
            response = self._call("POST", f"/2/media/upload/{media_id}/finalize")
            if not response.ok:
                raise self._error(response, f"finish the upload of {item.file}")
            entry = self._store_media(job, index, {**entry, "finalized": True})
            processing = _data(response).get("processing_info")
        else:
            # Finalized by an earlier attempt that stopped while X was still processing.
            processing = {"state": "pending", "check_after_secs": 0}
        self._await_processing(job, index, item, media_id, processing)
        return self._store_media(job, index, {**entry, "ready": True})

    def _await_processing(
        self, job: Job, index: int, item: Media, media_id: str, processing: Mapping[str, Any] | None
    ) -> None:
        polls = 0
        while isinstance(processing, Mapping) and processing.get("state") in ("pending", "in_progress"):
            wait = float(processing.get("check_after_secs") or 1)
            if polls >= self.max_polls:
                raise Transient(f"X is still processing {item.file}", retry_after=wait)
            job.heartbeat()
            self.sleep(wait)
            job.heartbeat()
            response = self._call("GET", "/2/media/upload", params={"command": "STATUS", "media_id": media_id})
            if not response.ok:
                raise self._error(response, f"read the processing state of {item.file}")
            processing = _data(response).get("processing_info")
            polls += 1
        if isinstance(processing, Mapping) and processing.get("state") == "failed":
            error = processing.get("error") if isinstance(processing.get("error"), Mapping) else {}
            reason = error.get("message") or error.get("name") or "processing failed"
            # Forget the upload, so that `siar retry` after the file is fixed uploads it afresh.
            self._store_media(job, index, {})
            raise Rejected(f"X could not process {item.file}: {reason}")

    def _media_id(self, response: requests.Response, what: str) -> str:
        if not response.ok:
            raise self._error(response, what)
        media_id = _data(response).get("id")
        if not media_id:
            status = response.status_code
            raise Transient(f"X {what}: HTTP {status} without a media id", http_status=status)
        return str(media_id)

    @staticmethod
    def _store_media(job: Job, index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        state = dict(job.saved)
        media = [dict(item) if isinstance(item, Mapping) else {} for item in state.get("media") or []]
        media.extend({} for _ in range(index + 1 - len(media)))
        media[index] = dict(entry)
        state["media"] = media
        job.save(state)
        return dict(entry)

    @staticmethod
    def _save(job: Job, **changes: Any) -> None:
        job.save({**job.saved, **changes})

    # --- the account: id, username, timeline ----------------------------------------------------

    def _user(self, *, refresh: bool = False) -> dict[str, str]:
        owner = self.auth.owner
        cached = self.profile.load()
        user = cached.get("user")
        if not refresh and cached.get("owner") == owner and isinstance(user, Mapping) and user.get("username"):
            return {"id": str(user["id"]), "username": str(user["username"])}
        response = self._call("GET", "/2/users/me")
        if not response.ok:
            raise self._error(response, "read the account")
        data = _data(response)
        if not data.get("id") or not data.get("username"):
            raise Transient(f"X read the account: HTTP {response.status_code} without id and username")
        user = {"id": str(data["id"]), "username": str(data["username"])}
        self.profile.save({"owner": owner, "user": user})
        return user

    def _receipt(self, post_id: str) -> Receipt:
        try:
            username: str | None = self._user()["username"]
        except AdapterError:
            # The post is out: a missing username must not turn a success into a failure.
            username = None
        path = f"/{username}/status/{post_id}" if username else f"/i/web/status/{post_id}"
        return Receipt(platform_id=post_id, url=WEB_BASE + path)

    def _find_on_timeline(self, message: Message, since: float) -> Receipt | None:
        """The post on the account's timeline made after `since` whose text is the message's."""
        user = self._user()
        start = datetime.fromtimestamp(since - LOOKUP_SLACK, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = self._call(
            "GET",
            f"/2/users/{user['id']}/tweets",
            params={"max_results": "100", "exclude": "replies,retweets", "start_time": start},
        )
        if not response.ok:
            raise self._error(response, "read the account's timeline")
        body = json_or_empty(response)
        posts = body.get("data") if isinstance(body, dict) else None
        wanted = {_comparable(self.compose(message))}
        if message.media:
            # X shows a post with media with one more t.co link at the end of its text.
            wanted |= {f"{text} \0".strip() for text in wanted}
        for post in posts if isinstance(posts, list) else []:
            if not isinstance(post, Mapping) or not post.get("id"):
                continue
            if _comparable(str(post.get("text") or "")) in wanted:
                post_id = str(post["id"])
                return Receipt(platform_id=post_id, url=f"{WEB_BASE}/{user['username']}/status/{post_id}")
        return None

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """One API request; a 401 gets one fresh token (OAuth 2.0) and one more try."""
        url = self.url(API_BASE, path)

        def send() -> tuple[dict[str, str], requests.Response]:
            headers = self.auth.headers(method, url, params or {})
            response = request(
                self.http,
                method,
                url,
                timeout=self.timeout,
                params=params,
                json=json,
                data=data,
                files=files,
                headers=headers,
            )
            return headers, response

        headers, response = send()
        # A 401 means X did not act on the request, so sending it again is safe.
        if response.status_code == 401 and self.auth.renew(headers):
            headers, response = send()
        return response

    def _error(self, response: requests.Response, what: str) -> AdapterError:
        """X's answer as a typed error; the message quotes X's problem, never a credential."""
        status = response.status_code
        problem = _problem(response)
        summary = f"X {what}: HTTP {status}"
        if problem.get("title"):
            summary += f" {problem['title']}"
        if problem.get("detail"):
            summary += f": {problem['detail']}"
        if problem.get("errors"):
            summary += f" ({problem['errors']})"
        kind = problem.get("kind", "")
        if status == 429:
            return RateLimited(summary, retry_after=self._rate_limit_wait(response.headers), http_status=status)
        if status >= 500 or status == 408:
            return Transient(summary, retry_after=retry_after(response.headers, self.clock()), http_status=status)
        if status == 401 or kind in _AUTH_PROBLEMS:
            return AuthExpired(f"{summary}; authorise the account again", http_status=status)
        return Rejected(summary, http_status=status)

    def _rate_limit_wait(self, headers: Mapping[str, str]) -> float | None:
        """Until the latest reset among X's exhausted windows (15-minute, then the 24-hour caps)."""
        now = self.clock()
        waits = []
        for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
            remaining = headers.get(f"{prefix}-remaining")
            if remaining is not None and remaining.strip() == "0":
                wait = seconds_until_epoch(headers.get(f"{prefix}-reset"), now)
                if wait is not None:
                    waits.append(wait)
        if not waits:
            wait = seconds_until_epoch(headers.get("x-rate-limit-reset"), now)
            if wait is not None:
                waits.append(wait)
        return max(waits) if waits else retry_after(headers, now)


# --- authentication ------------------------------------------------------------------------------


class _Auth(Protocol):
    owner: str  # a fingerprint of the configured identity, to tell cached state apart

    def headers(self, method: str, url: str, params: Mapping[str, str]) -> dict[str, str]: ...

    def renew(self, rejected: Mapping[str, str]) -> bool:
        """After a 401: True when a new credential is ready and one more try is worth it."""
        ...


class _OAuth1:
    """OAuth 1.0a user context: every request signed with HMAC-SHA1 (RFC 5849)."""

    def __init__(self, adapter: XAdapter) -> None:
        account = adapter.account
        self.adapter = adapter
        self.consumer_key = str(account["consumer_key"])
        self.consumer_secret = str(account["consumer_secret"])
        self.token = str(account["access_token"])
        self.token_secret = str(account["access_secret"])
        self.owner = _fingerprint(self.consumer_key, self.token)

    def headers(self, method: str, url: str, params: Mapping[str, str]) -> dict[str, str]:
        header = oauth1_header(
            method,
            url,
            params,
            consumer_key=self.consumer_key,
            consumer_secret=self.consumer_secret,
            token=self.token,
            token_secret=self.token_secret,
            nonce=secrets_module.token_hex(16),
            timestamp=str(int(self.adapter.clock())),
        )
        return {"Authorization": header}

    def renew(self, rejected: Mapping[str, str]) -> bool:
        return False  # OAuth 1.0a tokens do not expire: a 401 needs a person


class _OAuth2:
    """OAuth 2.0 user token; refreshed with the (rotating) refresh token, kept on disk (0600)."""

    def __init__(self, adapter: XAdapter) -> None:
        account = adapter.account
        self.adapter = adapter
        self.client_id = str(account["client_id"])
        self.client_secret = str(account.get("client_secret") or "") or None
        self.configured = {"access_token": str(account["token"]), "refresh_token": str(account["refresh_token"])}
        self.store = TokenStore(adapter.state_dir, "x-token.json")
        # Tokens on disk belong to the configured grant: when the operator authorises the account
        # again and puts a new refresh token in the settings, the old rotated ones are ignored.
        self.owner = _fingerprint(self.client_id, self.configured["refresh_token"])

    def _current(self) -> dict[str, Any]:
        saved = self.store.load()
        if saved.get("owner") == self.owner and saved.get("access_token") and saved.get("refresh_token"):
            return saved
        return dict(self.configured)  # its expiry is unknown: used until X says 401

    def headers(self, method: str, url: str, params: Mapping[str, str]) -> dict[str, str]:
        current = self._current()
        if self._expired(current):
            current = self._refresh(current["access_token"])
        return {"Authorization": f"Bearer {current['access_token']}"}

    def renew(self, rejected: Mapping[str, str]) -> bool:
        rejected_token = rejected.get("Authorization", "").removeprefix("Bearer ")
        self._refresh(rejected_token)
        return True

    def _refresh(self, stale_access_token: str) -> dict[str, Any]:
        with self._lock():
            # Another process (`siar accounts --verify`, a second daemon) may have refreshed while
            # we waited: its rotated refresh token is the only valid one now, so use its result.
            current = self._current()
            if current["access_token"] != stale_access_token and not self._expired(current):
                return current
            return self._exchange(current["refresh_token"])

    def _expired(self, tokens: Mapping[str, Any]) -> bool:
        expires_at = tokens.get("expires_at")
        return isinstance(expires_at, (int, float)) and expires_at - EXPIRY_MARGIN <= self.adapter.clock()

    def _exchange(self, refresh_token: str) -> dict[str, Any]:
        adapter = self.adapter
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        headers: dict[str, str] = {}
        if self.client_secret:
            # A confidential client authenticates with HTTP Basic; a public one names itself.
            pair = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form["client_id"] = self.client_id
        url = adapter.url(API_BASE, "/2/oauth2/token")
        response = request(adapter.http, "POST", url, timeout=adapter.timeout, data=form, headers=headers)
        answer = json_or_empty(response)
        answer = answer if isinstance(answer, dict) else {}
        status = response.status_code
        if response.ok and isinstance(answer.get("access_token"), str):
            tokens = {
                "owner": self.owner,
                "access_token": answer["access_token"],
                # X rotates the refresh token on every use: the old one is dead from now on.
                "refresh_token": str(answer.get("refresh_token") or refresh_token),
                "expires_at": adapter.clock() + float(answer.get("expires_in") or 7200),
            }
            self.store.save(tokens)
            return tokens
        # `error_description` is X's own sentence ("Value passed for the token was invalid."):
        # it names no credential, so it is safe and useful to show.
        reason = f"{answer.get('error', '')} {str(answer.get('error_description', ''))[:200]}"
        detail = " ".join(f"X token refresh: HTTP {status} {reason}".split())
        if status == 429:
            raise RateLimited(detail, retry_after=adapter._rate_limit_wait(response.headers), http_status=status)
        if status >= 500:
            raise Transient(detail, retry_after=retry_after(response.headers, adapter.clock()), http_status=status)
        raise AuthExpired(f"{detail}; authorise the account again", http_status=status)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        folder = self.adapter.state_dir
        if folder is None:
            yield
            return
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / "x-token.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _percent(value: str) -> str:
    # RFC 3986 unreserved characters stay, everything else is %XX of its UTF-8 bytes (RFC 5849 3.6).
    return quote(value, safe="-._~")


def oauth1_signature(
    method: str, url: str, params: Mapping[str, str], *, consumer_secret: str, token_secret: str
) -> str:
    """The HMAC-SHA1 `oauth_signature` of a request (RFC 5849 3.4), given every signed parameter.

    `params` holds the oauth_* values and the query and form parameters; a JSON or multipart body
    is not signed. Parameters in `url`'s own query are added here.
    """
    parts = urlsplit(url)
    pairs = [(key, value) for key, value in params.items()] + parse_qsl(parts.query, keep_blank_values=True)
    normalised = "&".join(f"{k}={v}" for k, v in sorted((_percent(k), _percent(v)) for k, v in pairs))
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    base_url = f"{scheme}://{host}{parts.path or '/'}"
    base_string = "&".join((method.upper(), _percent(base_url), _percent(normalised)))
    key = f"{_percent(consumer_secret)}&{_percent(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def oauth1_header(
    method: str,
    url: str,
    params: Mapping[str, str],
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    nonce: str,
    timestamp: str,
) -> str:
    """The `Authorization: OAuth …` header value for one request (RFC 5849 3.5.1)."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce,
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": timestamp,
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    oauth["oauth_signature"] = oauth1_signature(
        method, url, {**params, **oauth}, consumer_secret=consumer_secret, token_secret=token_secret
    )
    return "OAuth " + ", ".join(f'{_percent(k)}="{_percent(v)}"' for k, v in sorted(oauth.items()))


# --- small helpers -------------------------------------------------------------------------------


def _given(account: Mapping[str, Any], key: str) -> bool:
    return account.get(key) not in (None, "")


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _kind(item: Media) -> str | None:
    """`image`, `gif` or `video` as X groups them; None for what X does not take."""
    if item.mime == "image/gif":
        return "gif"
    if item.kind in ("image", "video"):
        return item.kind
    return None


def _size(item: Media) -> int | None:
    try:
        return item.size
    except OSError:
        return None


def _data(response: requests.Response) -> dict[str, Any]:
    body = json_or_empty(response)
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _problem(response: requests.Response) -> dict[str, str]:
    """X's problem JSON reduced to title, detail, kind (the type's path after /2/problems/), errors."""
    body = json_or_empty(response)
    if not isinstance(body, dict):
        return {}
    problem: dict[str, str] = {}
    for key in ("title", "detail"):
        if isinstance(body.get(key), str):
            problem[key] = body[key]
    kind = str(body.get("type") or "")
    # The host has been api.twitter.com and api.x.com: only the path names the problem.
    problem["kind"] = kind.split("/2/problems/", 1)[1].strip("/") if "/2/problems/" in kind else ""
    errors = body.get("errors")
    if isinstance(errors, list):
        messages = [str(e.get("message") or e.get("detail") or "") for e in errors if isinstance(e, dict)]
        messages = [text for text in messages if text]
        if messages:
            problem["errors"] = "; ".join(messages)[:300]
    return problem


def _comparable(text: str) -> str:
    """Text as X shows it back, reduced for matching: entities decoded, every link one token."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    pieces: list[str] = []
    last = 0
    for span in find_urls(text):
        pieces.append(text[last : span.start])
        pieces.append(" \0 ")  # X shows our links as t.co links: any link matches any link
        last = span.end
    pieces.append(text[last:])
    return " ".join("".join(pieces).split())
