"""Instagram professional accounts through the Graph API: one image, a carousel, or a Reel.

Every post is a container: create it, wait until it is FINISHED, then `media_publish` it. The
container id is saved before any polling or publishing, so a retry or a crash asks the
container's `status_code` instead of publishing again: PUBLISHED settles, FINISHED publishes,
EXPIRED or ERROR creates a new one. Meta downloads the media itself, so every file needs the
public URL the daemon's `media_url` gives it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

import requests

from adapters import graph
from adapters.base import (
    AdapterError,
    ConfigError,
    Job,
    Limits,
    Media,
    Message,
    Problem,
    Receipt,
    Rejected,
    Transient,
    check_limits,
)
from adapters.graph import same_text, text_with_link
from adapters.http import json_or_empty, request
from adapters.tokens import TokenStore

# PLATFORMS.md: caption 2,200 characters; 30 hashtags (unconfirmed); JPEG up to 8 MB; 2–10
# carousel items. Reels: 300 MB is the figure of Meta's Reels publishing spec (unconfirmed).
CAPTION_MAX = 2_200
HASHTAGS_MAX = 30
IMAGE_MAX_BYTES = 8 * 1024 * 1024
VIDEO_MAX_BYTES = 300 * 1024 * 1024
CAROUSEL_MAX = 10
_HASHTAG = re.compile(r"(?<!\w)#\w+")

# "facebook": an Instagram account linked to a Page, tokens from Facebook Login, graph.facebook.com.
# "instagram": Instagram Login; graph.instagram.com, and a 60-day token that must be refreshed.
LOGINS = ("facebook", "instagram")
INSTAGRAM_HOST = "https://graph.instagram.com"
TOKEN_LIFETIME = 60 * 24 * 3600.0
# Refresh once less than this is left: about monthly, with a month of room for a failed refresh.
REFRESH_BEFORE = 30 * 24 * 3600.0
# A refresh that failed (a token under 24 h old cannot be refreshed) is not tried again sooner.
REFRESH_RETRY = 24 * 3600.0

# Images are ready almost at once; Reels take minutes. Poll at most POLL_ATTEMPTS × POLL_INTERVAL
# (five minutes), then let a retry poll on from the saved container id.
POLL_INTERVAL = 5.0
POLL_ATTEMPTS = 60
# Our clock and Meta's differ: a published post is matched from this long before the saved time.
CLOCK_SKEW = 10 * 60
_SUBCODE = re.compile(r"\b(\d{6,8})\b")


class InstagramAdapter(graph.ContainerAdapter):
    platform: ClassVar[str] = "instagram"
    limits: ClassVar[Limits] = Limits(
        text_max=CAPTION_MAX,
        media_max=CAROUSEL_MAX,
        image_max_bytes=IMAGE_MAX_BYTES,
        video_max_bytes=VIDEO_MAX_BYTES,
        requires_media=True,
    )
    required: ClassVar[tuple[str, ...]] = ("ig_user_id", "token")
    optional: ClassVar[tuple[str, ...]] = ("graph_version", "login")
    secrets: ClassVar[tuple[str, ...]] = ("token",)
    errors: ClassVar[graph.ErrorTable] = graph.INSTAGRAM
    create_edge: ClassVar[str] = "media"
    publish_edge: ClassVar[str] = "media_publish"
    status_fields: ClassVar[tuple[str, str]] = ("status_code", "status")
    poll_interval: ClassVar[float] = POLL_INTERVAL
    poll_attempts: ClassVar[int] = POLL_ATTEMPTS
    # Images are ready at once; a video item must be processed before the carousel can name it.
    finish_items: ClassVar[frozenset[str]] = frozenset({"video"})
    item_expired: ClassVar[str] = "creating it again later"

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        self.login = str(account.get("login") or "facebook")
        if self.login not in LOGINS:
            raise ConfigError(f"login {self.login!r} is not one of {', '.join(LOGINS)}")
        if self.login == "instagram":
            self.api_host = INSTAGRAM_HOST
        self.tokens = TokenStore(self.state_dir)
        # The stored token belongs to the configured one only while that stays the same: a
        # person who pastes a new token into .env means the new one.
        self._source = hashlib.sha256(str(account["token"]).encode()).hexdigest()
        self._token = str(account["token"])
        if self.login == "instagram":
            record = self._record()
            if record.get("access_token"):
                self._token = str(record["access_token"])

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        login = account.get("login")
        if login and login not in LOGINS:
            problems.append(Problem("login", f"{login!r} is not one of {', '.join(LOGINS)}"))
        return problems

    @property
    def user(self) -> str:
        return str(self.account["ig_user_id"])

    def access_token(self) -> str:
        return self._token

    # --- offline check ------------------------------------------------------------------------

    def check(self, message: Message) -> list[Problem]:
        caption = text_with_link(message)
        problems = check_limits(self.limits, self.count_text, replace(message, text=caption))
        hashtags = len(_HASHTAG.findall(caption))
        if hashtags > HASHTAGS_MAX:
            problems.append(
                Problem("text", f"has {hashtags} hashtags; Instagram takes at most {HASHTAGS_MAX}", "warning")
            )
        for index, item in enumerate(message.media):
            if not item.url:
                problems.append(
                    Problem(
                        f"media[{index}]",
                        f"{item.file} has no public URL: Instagram downloads media from a URL "
                        "(set media_url in [daemon] and serve the media folder there)",
                    )
                )
            if item.kind == "image" and item.mime != "image/jpeg":
                problems.append(Problem(f"media[{index}]", f"{item.file} is {item.mime}; Instagram takes JPEG images only"))
        return problems

    # --- publish (the container flow is graph.ContainerAdapter's) ----------------------------

    def _post_data(self, message: Message, job: Job, since: int) -> dict[str, str]:
        data = self._media_data(message, job, since)
        caption = text_with_link(message)
        if caption:
            data["caption"] = caption
        return data

    def _item(self, item: Media, *, carousel: bool) -> dict[str, str]:
        if not item.url:
            raise Rejected(f"{item.file} has no public URL: Instagram downloads media from a URL (set media_url)")
        if item.kind == "video":
            data = {"media_type": "VIDEO" if carousel else "REELS", "video_url": item.url}
        else:
            data = {"image_url": item.url}
            if item.alt:
                data["alt_text"] = item.alt
        if carousel:
            data["is_carousel_item"] = "true"
        return data

    def _container_error(self, container: str, status: str) -> AdapterError:
        """A container's ERROR carries the error subcode in its `status` text."""
        found = _SUBCODE.search(status)
        subcode = int(found.group(1)) if found else None
        if self.errors.rule(None, subcode) is None:
            return Transient(f"Instagram could not process container {container}: {status or 'ERROR'}")
        return graph.to_error(graph.GraphError(0, subcode=subcode, message=f"container {container}: {status}"), self.errors)

    def _find(self, message: Message, since: Any) -> Receipt | None:
        answer = self.call("GET", f"{self.user}/media", params={"fields": "id,caption,timestamp,permalink", "limit": "50"})
        caption = text_with_link(message)
        for item in answer.get("data") or []:
            if not item.get("id") or not same_text(caption, str(item.get("caption") or "")):
                continue
            made = _epoch(item.get("timestamp"))
            if since is not None and made is not None and made < float(since) - CLOCK_SKEW:
                continue  # an older post with the same caption (a repeat), not this one
            return Receipt(str(item["id"]), item.get("permalink"))
        return None

    # --- identity and token -------------------------------------------------------------------

    def whoami(self) -> str:
        self._begin()
        answer = self.call("GET", self.user, params={"fields": "username"})
        return f"@{answer.get('username') or '?'} ({answer.get('id') or self.user})"

    def _record(self) -> dict[str, Any]:
        record = self.tokens.load()
        return record if record.get("source") == self._source else {}

    def _begin(self) -> None:
        """Keep an Instagram-login token alive: refresh it well before its 60 days run out.

        A failed refresh never fails the post: the current token still works until it expires,
        and an expired one shows up as an auth error on the real request.
        """
        if self.login != "instagram":
            return
        now = self.clock()
        record = self._record()
        expires_at = record.get("expires_at")
        if expires_at is not None and float(expires_at) - now > REFRESH_BEFORE:
            return
        if now - float(record.get("tried_at") or 0) < REFRESH_RETRY:
            return
        record = {**record, "source": self._source, "tried_at": now}
        try:
            response = request(
                self.http, "GET", self.url(INSTAGRAM_HOST + "/", "refresh_access_token"), timeout=self.timeout,
                params={"grant_type": "ig_refresh_token", "access_token": self._token},
            )
            answer = json_or_empty(response) if response.ok else {}
        except AdapterError:
            answer = {}
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if token:
            lifetime = float(answer.get("expires_in") or TOKEN_LIFETIME)
            record.update(access_token=str(token), expires_at=now + lifetime)
            self._token = str(token)
        self.tokens.save(record)


def _epoch(value: Any) -> float | None:
    """Graph timestamps look like 2026-11-25T01:00:03+0000."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None
