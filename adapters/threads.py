"""Threads through Meta's Threads API (`graph.threads.net`): text, one image or video, a carousel.

Every post is a container: create it, wait until it is FINISHED, then `threads_publish` it. The
container id is saved before any polling or publishing, so a retry or a crash asks the
container's status instead of publishing again: PUBLISHED settles, FINISHED publishes, EXPIRED
or ERROR creates a new one. Meta downloads media itself, so every file needs the public URL the
daemon's `media_url` gives it.

The long-lived token (60 days) is refreshed well before it runs out and kept, with its expiry, in
the account's state folder (mode 0600). Threads allows 250 API-published posts per rolling 24 h
(a carousel counts once) and enforces it only at `threads_publish`: keep the account's
`max_per_day` at 250 or below so the core never asks for more.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import regex
import requests

from adapters import graph
from adapters.base import (
    AdapterError,
    AuthExpired,
    ConfigError,
    Job,
    Limits,
    MaybeSent,
    Media,
    Message,
    Problem,
    Receipt,
    Rejected,
    Transient,
    check_limits,
)
from adapters.graph import same_text
from adapters.graphemes import graphemes
from adapters.http import json_or_empty, request
from adapters.tokens import TokenStore

HOST = "https://graph.threads.net"
VERSION = "v1.0"

# Meta's "Threads Posts" guide: text up to 500 characters, emoji counted as their UTF-8 bytes.
# Carousels of 2 to 20 images, videos or a mix, and the media specifications (JPEG or PNG up to
# 8 MB; MP4 or MOV up to 1 GB and 5 minutes) as ayrshare's and unipost's Threads guides give
# them; Threads raised carousels from 10 to 20 items in 2024. Meta's own wording of these was
# not at hand: unconfirmed.
TEXT_MAX = 500
CAROUSEL_MAX = 20
IMAGE_MAX_BYTES = 8 * 1024 * 1024
VIDEO_MAX_BYTES = 1024**3
IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime"})
# Threads makes one topic tag of a post's hashtags (PLATFORMS.md, third-party source).
TOPIC_TAGS_MAX = 1
_HASHTAG = re.compile(r"(?<!\w)#\w+")
# What Meta's counter treats as an emoji. Extended_Pictographic also holds ©, ® and ™, which
# may count as one there: counting them as bytes errs on the side of a post that fits.
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}\u20e3]")

TOKEN_LIFETIME = 60 * 24 * 3600.0
# Refresh once less than this is left. A month of room rather than days: a daemon switched off
# over a long holiday (Lebaran leave runs one to two weeks) must not come back to a dead token.
REFRESH_BEFORE = 30 * 24 * 3600.0
# A token under 24 hours old cannot be refreshed; a failed refresh is not tried again sooner.
REFRESH_RETRY = 24 * 3600.0

# Text and images are ready in seconds, video takes longer. Meta advises polling a container
# for no more than 5 minutes: POLL_ATTEMPTS × POLL_INTERVAL, then a retry polls on from the
# saved container id.
POLL_INTERVAL = 10.0
POLL_ATTEMPTS = 30
# Our clock and Meta's differ: a published post is searched from this long before the saved time.
CLOCK_SKEW = 10 * 60
LOOKUP_LIMIT = 25
# How GET /{user-id}/threads names the media_type a container was created with.
_LISTED_TYPE = {"TEXT": "TEXT_POST", "IMAGE": "IMAGE", "VIDEO": "VIDEO", "CAROUSEL": "CAROUSEL_ALBUM"}


def count_text(text: str) -> int:
    """Length as Threads counts it: one per character (grapheme), an emoji its UTF-8 bytes.

    A joined emoji (a family, a flag, a skin tone) is one grapheme whose bytes all count.
    """
    return sum(len(cluster.encode("utf-8")) if _EMOJI.search(cluster) else 1 for cluster in graphemes(text))


def post_text(message: Message) -> str:
    """The text as posted. A link not already in it goes at its end; Threads previews the first URL."""
    if message.link and message.link not in message.text:
        return f"{message.text.rstrip()}\n\n{message.link}".lstrip()
    return message.text


class ThreadsAdapter(graph.ContainerAdapter):
    platform: ClassVar[str] = "threads"
    limits: ClassVar[Limits] = Limits(
        text_max=TEXT_MAX,
        media_max=CAROUSEL_MAX,
        image_max_bytes=IMAGE_MAX_BYTES,
        video_max_bytes=VIDEO_MAX_BYTES,
    )
    required: ClassVar[tuple[str, ...]] = ("user_id", "token")
    optional: ClassVar[tuple[str, ...]] = ("graph_version",)
    secrets: ClassVar[tuple[str, ...]] = ("token",)
    errors: ClassVar[graph.ErrorTable] = graph.THREADS
    host: ClassVar[str] = HOST
    default_version: ClassVar[str] = VERSION
    create_edge: ClassVar[str] = "threads"
    publish_edge: ClassVar[str] = "threads_publish"
    status_fields: ClassVar[tuple[str, str]] = ("status", "error_message")
    poll_interval: ClassVar[float] = POLL_INTERVAL
    poll_attempts: ClassVar[int] = POLL_ATTEMPTS

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        self.tokens = TokenStore(self.state_dir)
        # The kept token belongs to the configured one only while that stays the same: a person
        # who pastes a new token into .env means the new one.
        self._source = hashlib.sha256(str(account["token"]).encode()).hexdigest()
        self._token = str(account["token"])
        self._adopt(self._record())
        # One renewal per operation after the token is rejected (see `call`).
        self._may_renew = False

    @property
    def user(self) -> str:
        return str(self.account["user_id"])

    def access_token(self) -> str:
        return self._token

    def count_text(self, text: str) -> int:
        return count_text(text)

    # --- offline check ------------------------------------------------------------------------

    def check(self, message: Message) -> list[Problem]:
        text = post_text(message)
        problems = check_limits(self.limits, self.count_text, replace(message, text=text))
        if not text.strip() and not message.media:
            problems.append(Problem("text", "is empty: Threads needs text or a media file"))
        hashtags = len(_HASHTAG.findall(text))
        if hashtags > TOPIC_TAGS_MAX:
            problems.append(
                Problem("text", f"has {hashtags} hashtags; Threads makes only the first a topic tag "
                        "(the others stay plain text)", "warning")
            )
        for index, item in enumerate(message.media):
            where = f"media[{index}]"
            if not item.url:
                problems.append(
                    Problem(where, f"{item.file} has no public URL: Threads downloads media from a URL "
                            "(set media_url in [daemon] and serve the media folder there)")
                )
            if item.kind == "image" and item.mime not in IMAGE_TYPES:
                problems.append(Problem(where, f"{item.file} is {item.mime}; Threads takes JPEG or PNG images"))
            if item.kind == "video" and item.mime not in VIDEO_TYPES:
                problems.append(Problem(where, f"{item.file} is {item.mime}; Threads takes MP4 or MOV video"))
        return problems

    # --- publish (the container flow is graph.ContainerAdapter's) ----------------------------

    def _post_data(self, message: Message, job: Job, since: int) -> dict[str, str]:
        text = post_text(message)
        if not message.media:
            if not text.strip():
                raise Rejected("the post is empty: Threads needs text or a media file")
            return {"media_type": "TEXT", "text": text}
        data = self._media_data(message, job, since)
        if text.strip():
            data["text"] = text
        return data

    def _item(self, item: Media, *, carousel: bool) -> dict[str, str]:
        if not item.url:
            raise Rejected(f"{item.file} has no public URL: Threads downloads media from a URL (set media_url)")
        if item.kind not in ("image", "video"):
            raise Rejected(f"{item.file} is {item.mime}; Threads takes images and video only")
        kind = item.kind.upper()
        data = {"media_type": kind, f"{item.kind}_url": item.url}
        if item.alt:
            data["alt_text"] = item.alt
        if carousel:
            data["is_carousel_item"] = "true"
        return data

    def _container_error(self, container: str, error: str) -> AdapterError:
        """A container in ERROR names the failed step (`FAILED_*`, `UNKNOWN`) or the property of the
        file Threads refuses (`INVALID_*`, e.g. INVALID_ASPEC_RATIO, spelt so by Meta)."""
        error = error or "ERROR"
        if error.startswith("INVALID_"):
            return Rejected(f"Threads refused the media of container {container}: {error} "
                            "(see Meta's media specifications for Threads)")
        return Transient(f"Threads could not process container {container}: {error}")

    def _publish(self, message: Message, job: Job, container: str) -> Receipt | None:
        """`threads_publish` one FINISHED container; None when it expired meanwhile.

        Unlike the shared `_publish`, a failed answer is checked against the container first. It
        is sent a second time only once the container shows it did not go out, and only with a
        token renewed after Threads rejected the first one.
        """
        resent = False
        while True:
            token = self._token
            try:
                # Not `self.call`: its resend after a rejected token must not apply here unchecked.
                answer = super().call("POST", f"{self.user}/{self.publish_edge}", data={"creation_id": container})
            except MaybeSent:
                raise  # no answer at all: the dispatcher reconciles through `lookup`
            except AdapterError as error:
                # Clients report threads_publish failing (a 5xx with code 10) for a container that
                # did go out; believing the error would post it twice. The container knows.
                try:
                    status, _ = self._status(container)
                except AdapterError:
                    raise error from None
                if status == "PUBLISHED":
                    return self._settle(message, job, container)
                if status == "EXPIRED":
                    graph.checkpoint(job, drop=graph.CONTAINER_KEYS)
                    return None
                if not resent and isinstance(error, AuthExpired) and (self._token != token or self._renew()):
                    resent = True
                    continue
                raise error from None
            return self._published(job, answer)

    def _find(self, message: Message, since: Any) -> Receipt | None:
        params = {"fields": "id,media_type,text,timestamp,permalink", "limit": str(LOOKUP_LIMIT)}
        if since is not None:
            params["since"] = str(int(since) - CLOCK_SKEW)
        answer = self.call("GET", f"{self.user}/threads", params=params)
        text = post_text(message)
        listed = _LISTED_TYPE[_media_type(message)]
        matches = [
            item for item in answer.get("data") or []
            if item.get("id") and same_text(text, str(item.get("text") or ""))
            and item.get("media_type") in (None, listed)
        ]
        if not matches:
            return None
        # Newest first: the oldest match since the first attempt is the one this delivery made;
        # a later one with the same text would be a person's repeat.
        item = matches[-1]
        return Receipt(str(item["id"]), item.get("permalink") or None)

    # --- identity -----------------------------------------------------------------------------

    def whoami(self) -> str:
        self._begin()
        answer = self.call("GET", "me", params={"fields": "username"})
        # Graph always answers the id too. A token of another profile would post elsewhere, or
        # fail on every post with a puzzling "resource does not exist".
        if self.user != "me" and answer.get("id") and str(answer["id"]) != self.user:
            raise ConfigError(
                f"the token belongs to @{answer.get('username') or '?'} (user id {answer['id']}), "
                f"not to user_id {self.user}"
            )
        return f"@{answer.get('username') or '?'}"

    # --- the token ----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        host: str | None = None,
    ) -> dict[str, Any]:
        """A Graph request; a rejected token is renewed once per operation and the request resent.

        Resending is safe: a request refused for its token did nothing on Threads.
        """
        try:
            return super().call(method, path, params=params, data=data, files=files, host=host)
        except AuthExpired:
            if not self._renew():
                raise
        return super().call(method, path, params=params, data=data, files=files, host=host)

    def keep_token(self, token: str, expires_at: float) -> None:
        """Keep a token and when it expires (after a refresh, or a fresh login) for every later run."""
        self._token = token
        self.tokens.save({"source": self._source, "access_token": token, "expires_at": expires_at})

    def _record(self) -> dict[str, Any]:
        record = self.tokens.load()
        return record if record.get("source") == self._source else {}

    def _adopt(self, record: Mapping[str, Any]) -> bool:
        """Use the kept token; True when it differs from the one in use."""
        token = record.get("access_token")
        if not token or str(token) == self._token:
            return False
        self._token = str(token)
        return True

    def _begin(self) -> None:
        """Start of an operation: the newest kept token (another process may have refreshed it),
        refreshed if it is due, and one renewal allowed should Threads reject it."""
        self._may_renew = True
        record = self._record()
        self._adopt(record)
        now = self.clock()
        expires_at = record.get("expires_at")
        if expires_at is not None and float(expires_at) - now > REFRESH_BEFORE:
            return
        # An unknown expiry (a token just pasted in) is refreshed too: that is how it is learnt.
        if now - float(record.get("tried_at") or 0) < REFRESH_RETRY:
            return
        self._refresh(record, now)

    def _renew(self) -> bool:
        """After Threads rejected the token: a newer kept one, else one refresh. Once per operation."""
        if not self._may_renew:
            return False
        self._may_renew = False
        record = self._record()
        return self._adopt(record) or self._refresh(record, self.clock())

    def _refresh(self, record: Mapping[str, Any], now: float) -> bool:
        """Ask for a new 60-day token. A failure never fails the post: the current token still works
        until it expires, and an expired one shows up as an auth error on the real request."""
        try:
            response = request(
                self.http, "GET", self.url(HOST + "/", "refresh_access_token"), timeout=self.timeout,
                params={"grant_type": "th_refresh_token", "access_token": self._token},
            )
            answer = json_or_empty(response) if response.ok else {}
        except AdapterError:
            answer = {}
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            self.tokens.save({**record, "source": self._source, "tried_at": now})
            return False
        lifetime = float(answer.get("expires_in") or TOKEN_LIFETIME)
        self.keep_token(str(token), now + lifetime)
        return True


def _media_type(message: Message) -> str:
    if not message.media:
        return "TEXT"
    if len(message.media) > 1:
        return "CAROUSEL"
    return "VIDEO" if message.media[0].kind == "video" else "IMAGE"

