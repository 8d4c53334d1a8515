"""Facebook Pages through the Graph API: text and link posts, one photo, an album, a video by URL.

Facebook has no idempotency key. Before the request that makes a post public, the adapter saves
`since` (when it first tried) in the job's checkpoint; an attempt that finds `since` without a
post id searches the Page for the post before sending anything again, and lookup after a crash
does the same. A 506 "duplicate" on such an attempt means the first one went out: it settles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, ClassVar

from adapters import graph
from adapters.graph import same_text, text_with_link
from adapters.base import (
    AdapterError,
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

WEB = "https://www.facebook.com"
VIDEO_HOST = "https://graph-video.facebook.com"

# PLATFORMS.md: 63,206 characters (unconfirmed), photos JPG/PNG up to 4 MB (subcode 1366046).
TEXT_MAX = 63_206
PHOTO_MAX_BYTES = 4 * 1024 * 1024
PHOTO_TYPES = frozenset({"image/jpeg", "image/png"})
# Meta documents no cap on `attached_media`; 10 photos is the figure well-kept third-party
# clients enforce (Postiz, Mixpost and others use FACEBOOK_MAX_IMAGES = 10). Unconfirmed.
PHOTOS_MAX = 10
# The non-resumable `file_url` upload takes up to 1 GB (Meta's video upload guide); unconfirmed.
VIDEO_MAX_BYTES = 1024**3

# Our clock and Facebook's differ: a lookup window opens this long before the saved time.
CLOCK_SKEW = 10 * 60
# Lookups read the newest posts first; a retry comes within the hour, so a few pages suffice.
LOOKUP_PAGE_SIZE = 25
LOOKUP_PAGES = 4
# A video is processed after the upload answers: poll for at most POLL_ATTEMPTS × POLL_INTERVAL
# (five minutes), then let a retry poll on from the saved video id.
POLL_INTERVAL = 5.0
POLL_ATTEMPTS = 60
VIDEO_FAILED = frozenset({"error", "expired", "upload_failed"})


@dataclass(frozen=True)
class _Create:
    """The one request that makes a post public."""

    path: str
    data: dict[str, str]
    files: Mapping[str, Any] | None = None
    video: bool = False  # sent to the video host; answers a video id that is then polled


class FacebookAdapter(graph.GraphAdapter):
    platform: ClassVar[str] = "facebook"
    limits: ClassVar[Limits] = Limits(
        text_max=TEXT_MAX,
        media_max=PHOTOS_MAX,
        image_max_bytes=PHOTO_MAX_BYTES,
        video_max_bytes=VIDEO_MAX_BYTES,
    )
    required: ClassVar[tuple[str, ...]] = ("page_id", "token")
    optional: ClassVar[tuple[str, ...]] = ("graph_version",)
    secrets: ClassVar[tuple[str, ...]] = ("token",)
    errors: ClassVar[graph.ErrorTable] = graph.FACEBOOK

    @property
    def page(self) -> str:
        return str(self.account["page_id"])

    # --- offline check ------------------------------------------------------------------------

    def check(self, message: Message) -> list[Problem]:
        # Counted as sent: with media the link travels inside the caption.
        problems = check_limits(self.limits, self.count_text, replace(message, text=text_with_link(message)))
        if not message.text.strip() and not message.link and not message.media:
            problems.append(Problem("text", "nothing to post: give a text, a link or a media file"))
        videos = [m for m in message.media if m.kind == "video"]
        if videos and len(message.media) > 1:
            problems.append(
                Problem(
                    "media",
                    f"a Facebook post takes one video alone or up to {PHOTOS_MAX} photos; this one has "
                    f"{len(videos)} video(s) and {len(message.media) - len(videos)} photo(s)",
                )
            )
        for index, item in enumerate(message.media):
            if item.kind == "image" and item.mime not in PHOTO_TYPES:
                problems.append(Problem(f"media[{index}]", f"{item.file} is {item.mime}; Facebook photos take JPG or PNG"))
            if item.kind == "video" and not item.url:
                problems.append(
                    Problem(
                        f"media[{index}]",
                        f"{item.file} has no public URL: Facebook fetches videos by URL "
                        "(set media_url in [daemon] and serve the media folder there)",
                    )
                )
        return problems

    # --- publish ------------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        saved = job.saved
        if saved.get("post_id"):
            return self._receipt(str(saved["post_id"]))
        if saved.get("video_id"):
            return self._finish_video(job, str(saved["video_id"]))
        if "since" in saved:
            # An earlier attempt sent the request that creates the post and heard no clear
            # answer (a 5xx can still have posted): look before sending it again.
            found = self._search(message, float(saved["since"]))
            if found is not None:
                return self._keep(job, found)
        videos = [m for m in message.media if m.kind == "video"]
        if videos:
            return self._create(message, job, self._video(message, videos[0]))
        if len(message.media) > 1:
            return self._create(message, job, self._album(message, job))
        if message.media:
            data, files = self._photo(message.media[0], caption=text_with_link(message))
            return self._create(message, job, _Create(f"{self.page}/photos", data, files))
        data = {"message": message.text} if message.text else {}
        if message.link:
            data["link"] = message.link
        data["fields"] = "id,permalink_url"
        return self._create(message, job, _Create(f"{self.page}/feed", data))

    def _photo(
        self, item: Media, *, caption: str | None = None, published: bool = True
    ) -> tuple[dict[str, str], Mapping[str, Any] | None]:
        """Form fields and file for one `/photos` request: by URL when served, else the bytes."""
        data: dict[str, str] = {}
        if item.url:
            data["url"] = item.url
        if caption:
            data["caption"] = caption
        if item.alt:
            data["alt_text_custom"] = item.alt
        if not published:
            data["published"] = "false"
        files = None if item.url else {"source": (PurePath(item.file).name, item.read(), item.mime)}
        return data, files

    def _album(self, message: Message, job: Job) -> _Create:
        """Upload each photo unpublished (saving each id at once), then describe the one post."""
        done = graph.still_valid(job.saved.get("photos"), message.media)
        for item in message.media[len(done):]:
            data, files = self._photo(item, published=False)
            answer = self.call("POST", f"{self.page}/photos", data=data, files=files)
            if not answer.get("id"):
                raise Transient(f"Facebook answered an unpublished photo upload of {item.file} without an id")
            done.append({"file": item.file, "id": str(answer["id"])})
            graph.checkpoint(job, photos=done)
        attached = json.dumps([{"media_fbid": entry["id"]} for entry in done], separators=(",", ":"))
        text = text_with_link(message)
        data = {"message": text} if text else {}
        data.update({"attached_media": attached, "fields": "id,permalink_url"})
        return _Create(f"{self.page}/feed", data)

    def _video(self, message: Message, item: Media) -> _Create:
        if not item.url:
            raise Rejected(f"{item.file} has no public URL: Facebook fetches videos by URL (set media_url)")
        data = {"file_url": item.url}
        text = text_with_link(message)
        if text:
            data["description"] = text
        if message.title:
            data["title"] = message.title
        return _Create(f"{self.page}/videos", data, video=True)

    def _create(self, message: Message, job: Job, create: _Create) -> Receipt:
        """Send the request that makes the post public, after saving that it is being sent."""
        earlier = job.saved.get("since")
        if earlier is None:
            graph.checkpoint(job, since=int(self.clock()))
        try:
            answer = self.call(
                "POST", create.path, data=create.data, files=create.files,
                host=VIDEO_HOST if create.video else None,
            )
        except graph.Duplicate:
            if earlier is None:
                raise  # nothing of ours went out before: the Page already has this very post
            found = self._search(message, float(earlier))
            if found is None:
                raise MaybeSent(
                    "Facebook refused the post as a duplicate of a recent one, yet no matching post "
                    "was found on the Page since the first attempt; check the Page"
                ) from None
            return self._keep(job, found)
        if create.video:
            if not answer.get("id"):
                raise MaybeSent("Facebook answered the video upload without a video id")
            graph.checkpoint(job, video_id=str(answer["id"]))
            return self._finish_video(job, str(answer["id"]))
        # `/photos` answers the photo `id` and the `post_id` of the post it made; `/feed` the post.
        post_id = answer.get("post_id") or answer.get("id")
        if not post_id:
            raise MaybeSent("Facebook answered without a post id")
        return self._keep(job, Receipt(str(post_id), answer.get("permalink_url")))

    def _keep(self, job: Job, receipt: Receipt) -> Receipt:
        """Save the post id before anything else can fail, then complete the receipt."""
        graph.checkpoint(job, post_id=receipt.platform_id)
        return receipt if receipt.url else self._receipt(receipt.platform_id)

    def _finish_video(self, job: Job, video_id: str) -> Receipt:
        """Poll the uploaded video until Facebook has processed it (bounded)."""
        for _ in range(POLL_ATTEMPTS):
            job.heartbeat()
            answer = self.call("GET", video_id, params={"fields": "status,permalink_url"})
            status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
            state = str(status.get("video_status") or "")
            if state == "ready":
                graph.checkpoint(job, post_id=video_id)
                return Receipt(video_id, absolute(answer.get("permalink_url")) or f"{WEB}/{video_id}")
            if state in VIDEO_FAILED:
                # Start afresh if a person retries: this video will never play.
                job.save({})
                raise Rejected(f"Facebook could not process video {video_id}: {state}{_phase_errors(status)}")
            self.sleep(POLL_INTERVAL)
        raise Transient(f"Facebook is still processing video {video_id}; polling again later", retry_after=60)

    def _receipt(self, post_id: str) -> Receipt:
        """The receipt for a post that exists; its permalink is a courtesy, never a failure."""
        try:
            answer = self.call("GET", post_id, params={"fields": "permalink_url"})
        except AdapterError:
            answer = {}
        return Receipt(post_id, absolute(answer.get("permalink_url")) or f"{WEB}/{post_id}")

    # --- after a crash ------------------------------------------------------------------------

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        saved = job.saved
        if saved.get("post_id"):
            return self._receipt(str(saved["post_id"]))
        if saved.get("video_id"):
            video_id = str(saved["video_id"])
            answer = self.call("GET", video_id, params={"fields": "status,permalink_url"})
            status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
            if status.get("video_status") in VIDEO_FAILED:
                return None  # the retry's publish reports why
            # Uploaded, processed or still processing: it is on the Page and will play.
            return Receipt(video_id, absolute(answer.get("permalink_url")) or f"{WEB}/{video_id}")
        if "since" not in saved:
            return None  # the creating request was never sent
        found = self._search(message, float(saved["since"]))
        if found is not None:
            graph.checkpoint(job, post_id=found.platform_id)
        return found

    def _search(self, message: Message, since: float) -> Receipt | None:
        """The Page's post (or video) with this text, created since `since`."""
        video = any(m.kind == "video" for m in message.media)
        edge, text_field = ("videos", "description") if video else ("published_posts", "message")
        wanted = text_with_link(message)
        params = {
            "since": str(int(since) - CLOCK_SKEW),
            "fields": f"id,{text_field},created_time,permalink_url",
            "limit": str(LOOKUP_PAGE_SIZE),
        }
        for _ in range(LOOKUP_PAGES):
            answer = self.call("GET", f"{self.page}/{edge}", params=params)
            for item in answer.get("data") or []:
                if item.get("id") and same_text(wanted, str(item.get(text_field) or "")):
                    return Receipt(str(item["id"]), absolute(item.get("permalink_url")))
            paging = answer.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not after or not paging.get("next"):
                return None
            params = {**params, "after": str(after)}
        return None

    # --- identity -----------------------------------------------------------------------------

    def whoami(self) -> str:
        answer = self.call("GET", self.page, params={"fields": "name"})
        return f"{answer.get('name') or '?'} ({answer.get('id') or self.page})"


def absolute(url: Any) -> str | None:
    """Graph gives some permalinks (videos) as a path on www.facebook.com."""
    if not url:
        return None
    url = str(url)
    return WEB + url if url.startswith("/") else url


def _phase_errors(status: Mapping[str, Any]) -> str:
    messages = [
        str(error.get("message"))
        for phase in status.values()
        if isinstance(phase, dict)
        for error in phase.get("errors") or []
        if isinstance(error, dict) and error.get("message")
    ]
    return f" ({'; '.join(messages)})" if messages else ""
