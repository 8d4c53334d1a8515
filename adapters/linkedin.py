"""LinkedIn organization pages through the versioned Posts API: text, link card, or images.

Commentary is sent in LinkedIn's "little" text format, where reserved characters must be
escaped or the post is silently cut. A 422 DUPLICATE_POST on a retry names the post the first
attempt created, so it settles the delivery as published instead of failing it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import quote

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
)
from adapters.http import json_or_empty, request, retry_after

API = "https://api.linkedin.com"
# A version LinkedIn's own documentation lists (li-lms-2026-05). Versions are retired about a
# year after release, answered with 426 NONEXISTENT_VERSION: accounts can pin a newer one.
DEFAULT_VERSION = "202605"
TEXT_MAX = 3000
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})

# The characters the little format reserves (mentions, hashtag templates, formatting). Unescaped,
# LinkedIn accepts the post and shows it cut at the first one.
RESERVED = frozenset("\\|{}@[]()<>#*_~")
_ORGANIZATION = re.compile(r"^(?:urn:li:organization:)?(\d+)$")
_VERSION = re.compile(r"^20\d{2}(0[1-9]|1[0-2])$")
_POST_URN = re.compile(r"urn:li:(?:share|ugcPost|activity):\d+")


def escape_little(text: str) -> str:
    """Backslash every reserved character, so LinkedIn shows the text exactly as written."""
    return "".join(f"\\{char}" if char in RESERVED else char for char in text)


def unescape_little(text: str) -> str:
    """The inverse of `escape_little` (a backslash makes the next character literal)."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def count_utf16(text: str) -> int:
    """Length in UTF-16 code units: LinkedIn's services are Java, whose strings count so.

    An emoji counts 2 here; if LinkedIn counted code points instead, this only errs on the safe side.
    """
    return len(text.encode("utf-16-le")) // 2


def organization_urn(value: Any) -> str:
    """`urn:li:organization:<id>` from a bare id or the URN itself."""
    match = _ORGANIZATION.match(str(value or "").strip())
    if not match:
        raise ConfigError("organization must be a numeric id or urn:li:organization:<id>")
    return f"urn:li:organization:{match.group(1)}"


class LinkedInAdapter(BaseAdapter):
    platform: ClassVar[str] = "linkedin"
    limits: ClassVar[Limits] = Limits(
        text_max=TEXT_MAX,
        media_max=20,  # multiImage takes 2–20 images; one goes as a single image post
        media_kinds=frozenset({"image"}),  # video needs the Videos API: not supported yet
        alt_max=4086,  # altText of a post's media, per the Posts API schema
    )
    required: ClassVar[tuple[str, ...]] = ("organization", "token")
    optional: ClassVar[tuple[str, ...]] = ("version",)
    secrets: ClassVar[tuple[str, ...]] = ("token",)

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        self.author = organization_urn(account.get("organization"))
        self.version = str(account.get("version") or DEFAULT_VERSION)

    def __repr__(self) -> str:
        return f"LinkedInAdapter(name={self.name!r}, author={self.author!r}, version={self.version!r})"

    @classmethod
    def account_problems(cls, account: Mapping[str, Any]) -> list[Problem]:
        problems = super().account_problems(account)
        organization = account.get("organization")
        if organization not in (None, "") and not _ORGANIZATION.match(str(organization).strip()):
            problems.append(Problem("organization", "must be a numeric id or urn:li:organization:<id>"))
        version = account.get("version")
        if version not in (None, "") and not _VERSION.match(str(version)):
            problems.append(Problem("version", f"must be YYYYMM (e.g. {DEFAULT_VERSION}), not {version!r}"))
        return problems

    # --- offline checks --------------------------------------------------------------------

    def count_text(self, text: str) -> int:
        return count_utf16(text)

    def check(self, message: Message) -> list[Problem]:
        """The 3,000 limit is applied to the text as readers see it, before escaping.

        LinkedIn documents 3,000 characters for a post's text, and the little format's escapes
        are markup that is not shown; its docs do not say which form the API measures, so a text
        whose escaped form is longer gets a warning rather than an error.
        """
        commentary = _commentary(message)
        problems = check_limits(self.limits, lambda _text: self.count_text(commentary), message)
        escaped = self.count_text(escape_little(commentary))
        if self.count_text(commentary) <= TEXT_MAX < escaped:
            problems.append(
                Problem(
                    "text",
                    f"is {escaped} characters once reserved characters are escaped (limit {TEXT_MAX}); "
                    "LinkedIn may count it so",
                    severity="warning",
                )
            )
        for index, item in enumerate(message.media):
            if item.kind == "image" and item.mime not in IMAGE_TYPES:
                problems.append(
                    Problem(f"media[{index}]", f"{item.file} is {item.mime}; LinkedIn takes JPG, PNG and GIF")
                )
        return problems

    # --- publishing ------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        """Upload images (each URN saved on the job), then create the post."""
        length = self.count_text(_commentary(message))
        if length > TEXT_MAX:
            # LinkedIn has been seen to cut long commentary silently: refuse before uploading.
            raise Rejected(f"text is {length} characters; LinkedIn's limit is {TEXT_MAX}")
        body: dict[str, Any] = {
            "author": self.author,
            "commentary": escape_little(_commentary(message)),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if message.media:
            images = self._upload_images(message, job)
            if len(images) == 1:
                body["content"] = {"media": _media_entry(images[0])}
            else:
                body["content"] = {"multiImage": {"images": [_media_entry(image) for image in images]}}
        elif message.link:
            # The article card; the title is required by LinkedIn, so the link stands in for one.
            body["content"] = {"article": {"source": message.link, "title": message.title or message.link}}

        job.heartbeat()  # the post is the irreversible step: only while the lease is ours
        response = self._request("POST", "/rest/posts", json=body)
        if 200 <= response.status_code < 300:  # 201 as documented; any success may have made the post
            urn = response.headers.get("x-restli-id")
            if not urn:
                raise MaybeSent(
                    f"LinkedIn answered {response.status_code} without x-restli-id: the post may be out, "
                    "where is unknown", http_status=response.status_code,
                )
            return _receipt(urn)
        answer = _answer(response)
        duplicate = duplicate_of(response.status_code, answer)
        if duplicate:
            # LinkedIn refuses the same content twice and names the first: on a retry, that is
            # the post the earlier attempt created.
            return _receipt(duplicate)
        raise classify(response.status_code, answer, response.headers)

    def whoami(self) -> str:
        org_id = self.author.rsplit(":", 1)[1]
        response = self._request("GET", f"/rest/organizations/{org_id}")
        if response.status_code == 200:
            answer = _answer(response)
            return f"{answer.get('localizedName') or answer.get('vanityName') or '?'} ({self.author})"
        raise classify(response.status_code, _answer(response), response.headers)

    # --- images ----------------------------------------------------------------------------

    def _upload_images(self, message: Message, job: Job) -> list[dict[str, Any]]:
        """Each image's URN, uploading only those no earlier attempt saved for the same bytes."""
        saved = [entry for entry in job.saved.get("images", []) if isinstance(entry, Mapping)]
        done: list[dict[str, Any]] = []
        for index, item in enumerate(message.media):
            data = _read(item)
            digest = hashlib.sha256(data).hexdigest()
            earlier = saved[index] if index < len(saved) else None
            if earlier and earlier.get("sha256") == digest and earlier.get("image"):
                done.append({"image": str(earlier["image"]), "sha256": digest, "alt": item.alt})
                continue
            # A saved URN is reused only for the same bytes: the post may have changed since.
            done.append({"image": self._upload_image(item, data), "sha256": digest, "alt": item.alt})
            # Saved after each upload: a retry re-uploads nothing that is already there.
            job.save({**job.saved, "images": [{"image": d["image"], "sha256": d["sha256"]} for d in done]})
            job.heartbeat()
        return done

    def _upload_image(self, item: Media, data: bytes) -> str:
        response = self._request(
            "POST", "/rest/images?action=initializeUpload", json={"initializeUploadRequest": {"owner": self.author}}
        )
        answer = _answer(response)
        value = answer.get("value") if isinstance(answer.get("value"), dict) else {}
        if response.status_code >= 300:
            raise classify(response.status_code, answer, response.headers)
        if not value.get("uploadUrl") or not value.get("image"):
            # Nothing is published yet, so asking again is safe.
            raise Transient(
                "LinkedIn initializeUpload answered without uploadUrl or image", http_status=response.status_code
            )
        upload = request(
            self.http,
            "PUT",
            rebase(str(value["uploadUrl"]), self.account.get("api_base")),
            timeout=self.timeout,
            data=data,
            headers={"Authorization": f"Bearer {self.account['token']}", "Content-Type": item.mime},
        )
        if upload.status_code not in (200, 201):
            raise classify(upload.status_code, _answer(upload), upload.headers)
        return str(value["image"])

    # --- requests --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.account['token']}",
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        return request(self.http, method, self.url(API, path), timeout=self.timeout, headers=headers, **kwargs)


def duplicate_of(status: int, answer: Mapping[str, Any]) -> str | None:
    """The existing post's URN when LinkedIn refused the content as a duplicate."""
    if status != 422:
        return None
    message = str(answer.get("message") or "")
    codes = {str(answer.get("code") or "")}
    details = answer.get("errorDetails")
    if isinstance(details, Mapping):
        for entry in details.get("inputErrors") or []:
            if isinstance(entry, Mapping):
                codes.add(str(entry.get("code") or ""))
    if "DUPLICATE_POST" not in codes and "duplicate" not in message.lower():
        return None
    match = _POST_URN.search(message)
    return match.group(0) if match else None


def classify(status: int, answer: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> AdapterError:
    """Map a LinkedIn error answer to the typed errors."""
    message = str(answer.get("message") or f"HTTP {status}")[:300]
    code = answer.get("code") or answer.get("serviceErrorCode")
    detail = f"LinkedIn {status}{f' {code}' if code else ''}: {message}"
    if status == 401:
        return AuthExpired(detail, http_status=status)
    if status == 403 and answer.get("code") == "ACCESS_DENIED":
        # "Not enough permissions": the token lacks w_organization_social or its member is no
        # longer an admin of the page. Every post of the account would fail alike until a
        # person fixes the grant, so the account is paused instead of failing them one by one.
        return AuthExpired(detail, http_status=status)
    if status == 426:
        # NONEXISTENT_VERSION: the pinned LinkedIn-Version was retired; account-wide, a person
        # sets a newer `version`.
        return AuthExpired(f"{detail} (set a newer version = YYYYMM)", http_status=status)
    if status == 429:
        # LinkedIn sends no Retry-After. Its daily quotas reset at midnight UTC, so a "DAY"
        # throttle waits for that; others leave the wait to the dispatcher's backoff.
        wait = _until_utc_midnight() if "DAY" in message else None
        return RateLimited(detail, retry_after=wait, http_status=status)
    if status >= 500:
        return Transient(detail, retry_after=retry_after(headers or {}), http_status=status)
    return Rejected(detail, http_status=status)


def _until_utc_midnight(now: datetime | None = None) -> float:
    now = now or datetime.now(timezone.utc)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def _commentary(message: Message) -> str:
    """The text as readers should see it: with images there is no link card, so the link joins it."""
    text = message.text.strip()
    if message.media and message.link and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _media_entry(image: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": image["image"]}
    if image.get("alt"):
        entry["altText"] = image["alt"]
    return entry


def _receipt(urn: str) -> Receipt:
    # The URN goes into the path as is (LinkedIn's own share links do); only unsafe bytes quoted.
    return Receipt(platform_id=urn, url=f"https://www.linkedin.com/feed/update/{quote(urn, safe=':')}")


def _answer(response: requests.Response) -> dict[str, Any]:
    answer = json_or_empty(response)
    return answer if isinstance(answer, dict) else {}


def _read(item: Media) -> bytes:
    try:
        return item.read()
    except OSError as exc:
        raise Rejected(f"cannot read media file {item.file}: {exc.strerror or type(exc).__name__}") from None
