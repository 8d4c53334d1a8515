"""Bluesky: posts as `app.bsky.feed.post` records in the account's AT Protocol repository.

Idempotency comes from the record key: the adapter chooses it (`rkey`), derived from the delivery's
key as a valid TID, so the same delivery always names the same record. `lookup` asks for that
record (`com.atproto.repo.getRecord`) and is exact; a second `createRecord` with the same key fails
on the server (today a 500) instead of posting twice, and is then settled by the same look-up.

One session per account is cached in its state folder (`bluesky-session.json`, mode 0600):
`createSession` runs only when there is none (it is rate-limited to a few dozen a day), an expired
access token is refreshed with the refresh token (which rotates), and a session the server no
longer accepts is replaced once before the account is reported as `AuthExpired`.

Checkpoints (`job.save`): each uploaded image's blob, so a retry never uploads it again, then the
record's `createdAt` before `createRecord` leaves (a retry sends the very same record), then the
record's URI once the answer came back.

Links, mentions and hashtags are not found by the server: the adapter sends them as facets whose
offsets are UTF-8 byte offsets into the text. Mentions are resolved to DIDs through
`com.atproto.identity.resolveHandle`; a handle that does not resolve stays plain text.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

import regex
import requests

from adapters import graphemes
from adapters.base import (
    AdapterError,
    AuthExpired,
    BaseAdapter,
    Job,
    Limits,
    Message,
    Problem,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
    check_limits,
    register_secret,
)
from adapters.http import json_or_empty, request, retry_after, seconds_until_epoch
from adapters.tokens import TokenStore

SERVICE = "https://bsky.social"
COLLECTION = "app.bsky.feed.post"
SESSION_FILE = "bluesky-session.json"
TEXT_MAX_BYTES = 3000  # the lexicon's second limit on `text`, beside 300 graphemes
TAG_MAX_GRAPHEMES = 64
FACET = "app.bsky.richtext.facet"

# Error names that mean "this session is no good", whatever the HTTP status carrying them.
_SESSION_ERRORS = frozenset({"AuthenticationRequired", "InvalidToken", "AuthMissing"})

# --- record keys: TIDs derived from the delivery key -------------------------------------------

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable
# TIDs carry microseconds since the epoch in their high bits. A derived key must not look like
# a future time (clients sort and trust those less), so the hash picks a moment in a fixed past
# window: 2^45 µs (about 407 days) from 2023-01-01T00:00:00Z, plus a 10-bit clock id.
_TID_EPOCH_US = 1_672_531_200 * 1_000_000
_TID_WINDOW_BITS = 45
TID_PATTERN = regex.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def record_key(key: str) -> str:
    """The record key for a delivery: a valid TID, the same for the same key, on any machine."""
    digest = hashlib.sha256(b"siar/bluesky/rkey\x00" + key.encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    micros = _TID_EPOCH_US + (number >> (64 - _TID_WINDOW_BITS))
    clock_id = number & 0x3FF
    value = (micros << 10) | clock_id  # below 2^63: the TID's top bit stays 0
    return "".join(_TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


# --- facets ------------------------------------------------------------------------------------

_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"
_LINK = regex.compile(r"(?:^|(?<=[\s(]))https?://\S+", regex.IGNORECASE)
# A handle is a domain name whose last label starts with a letter (the atproto handle syntax).
_MENTION = regex.compile(
    r"(?:^|(?<=[\s(]))@((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(?![a-zA-Z0-9_-])"
)
# The Bluesky app's rule: `#` (or `＃`) after a space, a word that is not only digits or punctuation.
_TAG = regex.compile(
    rf"(?:^|(?<=\s))[#＃]((?!\ufe0f)[^\s{_INVISIBLE}]*[^\d\s\p{{P}}{_INVISIBLE}]+[^\s{_INVISIBLE}]*)"
)
_TRAILING_PUNCTUATION = regex.compile(r"\p{P}+$")
_URL_TRAILING = ".,:;!?'\""


def find_facets(text: str, resolve: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """Links, mentions (resolved to DIDs by `resolve`) and hashtags, with UTF-8 byte offsets."""
    spans: list[tuple[int, int, dict[str, Any]]] = []
    for match in _LINK.finditer(text):
        end = _trim_url(text, match.start(), match.end())
        spans.append((match.start(), end, {"$type": f"{FACET}#link", "uri": text[match.start() : end]}))
    for match in _MENTION.finditer(text):
        spans.append((match.start(), match.end(), {"$type": f"{FACET}#mention", "handle": match.group(1)}))
    for match in _TAG.finditer(text):
        tag = _TRAILING_PUNCTUATION.sub("", match.group(1))
        if tag and graphemes.count(tag) <= TAG_MAX_GRAPHEMES:
            spans.append((match.start(), match.start(1) + len(tag), {"$type": f"{FACET}#tag", "tag": tag}))
    spans.sort(key=lambda span: (span[0], -span[1]))
    facets: list[dict[str, Any]] = []
    taken_until = -1
    for start, end, feature in spans:
        if start < taken_until:
            continue  # overlaps an earlier facet (a `#` or `@` inside a link)
        if feature["$type"].endswith("#mention"):
            did = resolve(feature.pop("handle"))
            if did is None:
                continue  # an unknown handle stays plain text rather than a broken mention
            feature["did"] = did
        taken_until = end
        facets.append({"index": byte_span(text, start, end), "features": [feature]})
    return facets


def byte_span(text: str, start: int, end: int) -> dict[str, int]:
    """Character offsets → the UTF-8 byte offsets atproto facets use."""
    byte_start = len(text[:start].encode("utf-8"))
    return {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode("utf-8"))}


def _trim_url(text: str, start: int, end: int) -> int:
    # Sentence punctuation after a link is not part of it; a closing bracket is only when opened.
    while end > start:
        last = text[end - 1]
        if last in _URL_TRAILING:
            end -= 1
        elif last == ")" and text.count("(", start, end) < text.count(")", start, end):
            end -= 1
        else:
            break
    return end


# --- images ------------------------------------------------------------------------------------

_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF markers (not DHT/JPG/DAC)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF or JPEG header; None when the file does not say."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return (width, height) if width and height else None
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return (width, height) if width and height else None
    if data[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            index += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan began without a frame header
            return None
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _JPEG_FRAMES and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return (width, height) if width and height else None
        index += 2 + length
    return None


# --- the adapter -------------------------------------------------------------------------------


class BlueskyAdapter(BaseAdapter):
    platform: ClassVar[str] = "bluesky"
    # Videos go through a separate video service: not supported here, so images only.
    limits: ClassVar[Limits] = Limits(
        text_max=300, media_max=4, media_kinds=frozenset({"image"}), image_max_bytes=1_000_000
    )
    required: ClassVar[tuple[str, ...]] = ("handle", "app_password")
    optional: ClassVar[tuple[str, ...]] = ("service", "language")
    secrets: ClassVar[tuple[str, ...]] = ("app_password",)

    def __init__(self, account: Mapping[str, Any], http: requests.Session) -> None:
        super().__init__(account, http)
        self.service = str(account.get("service") or SERVICE).rstrip("/")
        self.handle = str(account.get("handle") or "").strip().lstrip("@")
        self.password = str(account.get("app_password") or "")
        self.sessions = TokenStore(self.state_dir, SESSION_FILE)
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def count_text(self, text: str) -> int:
        return graphemes.count(text)

    def check(self, message: Message) -> list[Problem]:
        text = compose(message)
        problems = check_limits(self.limits, self.count_text, dataclasses.replace(message, text=text))
        size = len(text.encode("utf-8"))
        if size > TEXT_MAX_BYTES:
            problems.append(Problem("text", f"is {size} bytes in UTF-8; the limit is {TEXT_MAX_BYTES}"))
        for index, item in enumerate(message.media):
            if item.kind == "image" and not (item.alt or "").strip():
                problems.append(Problem(f"media[{index}].alt", "is required on Bluesky: describe the image"))
        return problems

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, message: Message, job: Job) -> Receipt:
        saved = job.saved
        rkey = record_key(job.key)
        if saved.get("uri"):  # the answer was recorded: the record exists, send nothing
            return self._receipt(str(saved["uri"]), rkey)
        for index, item in enumerate(message.media):
            if item.kind != "image":  # `check` says so offline; never upload what cannot be posted
                raise Rejected(f"media[{index}]: {item.file} is {item.mime}; only images can be posted here")
        blobs = self._upload_images(message, job)
        did = self._did()
        created_at = job.saved.get("created_at")
        if created_at:
            # A create may have left on an earlier attempt: ask before sending it again.
            found = self._get_record(did, rkey)
            if found is not None:
                self._save(job, uri=found.platform_id)
                return found
        else:
            created_at = _timestamp(self.clock())
            self._save(job, created_at=created_at, rkey=rkey)

        text = compose(message)
        record: dict[str, Any] = {"$type": COLLECTION, "text": text, "createdAt": created_at}
        facets = find_facets(text, functools.cache(self._resolve_handle))
        if facets:
            record["facets"] = facets
        if self.account.get("language"):
            record["langs"] = [str(self.account["language"])]
        embed = self._embed(message, blobs)
        if embed is not None:
            record["embed"] = embed

        create = {"repo": did, "collection": COLLECTION, "rkey": rkey, "record": record}
        response = self._call("POST", "com.atproto.repo.createRecord", body=create)
        if response.status_code == 200:
            answer = json_or_empty(response)
            uri = answer.get("uri") if isinstance(answer, dict) else None
            uri = str(uri or f"at://{did}/{COLLECTION}/{rkey}")
            self._save(job, uri=uri)
            return self._receipt(uri, rkey)
        if response.status_code >= 500 or "exist" in _message(response).lower():
            # The record key is taken (or the server failed after writing): it is ours if it exists.
            found = self._get_record(did, rkey)
            if found is not None:
                self._save(job, uri=found.platform_id)
                return found
        raise self._error(response, "creating the post")

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        rkey = record_key(job.key)
        if job.saved.get("uri"):
            return self._receipt(str(job.saved["uri"]), rkey)
        return self._get_record(self._did(), rkey)

    def whoami(self) -> str:
        response = self._call("GET", "com.atproto.server.getSession")
        if response.status_code != 200:
            raise self._error(response, "reading the session")
        answer = json_or_empty(response)
        answer = answer if isinstance(answer, dict) else {}
        return f"{answer.get('handle', self.handle)} ({answer.get('did', '?')})"

    # --- steps ---------------------------------------------------------------------------------

    def _upload_images(self, message: Message, job: Job) -> list[dict[str, Any]]:
        # Copies: the checkpoint changes only through `save`, as it would in the database.
        entries: list[dict[str, Any] | None] = [dict(e) if e else None for e in job.saved.get("blobs") or []]
        entries = (entries + [None] * len(message.media))[: len(message.media)]
        for index, item in enumerate(message.media):
            entry = entries[index]
            if entry is not None and entry.get("file") == item.file:
                continue  # uploaded on an earlier attempt
            job.heartbeat()
            data = item.read()
            response = self._call("POST", "com.atproto.repo.uploadBlob", data=data, content_type=item.mime)
            if response.status_code != 200:
                raise self._error(response, f"uploading media[{index}]")
            answer = json_or_empty(response)
            blob = answer.get("blob") if isinstance(answer, dict) else None
            if not isinstance(blob, dict):
                raise Transient(f"uploading media[{index}]: the answer had no blob", http_status=200)
            size = image_size(data)
            entries[index] = {"file": item.file, "blob": blob, "size": list(size) if size else None}
            self._save(job, blobs=entries)
        return [entry for entry in entries if entry is not None]

    def _embed(self, message: Message, blobs: list[dict[str, Any]]) -> dict[str, Any] | None:
        if blobs:
            images = []
            for item, entry in zip(message.media, blobs):
                image: dict[str, Any] = {"alt": item.alt or "", "image": entry["blob"]}
                if entry.get("size"):
                    image["aspectRatio"] = {"width": entry["size"][0], "height": entry["size"][1]}
                images.append(image)
            return {"$type": "app.bsky.embed.images", "images": images}
        if message.link:
            external = {"uri": message.link, "title": message.title or message.link, "description": ""}
            return {"$type": "app.bsky.embed.external", "external": external}
        return None

    def _resolve_handle(self, handle: str) -> str | None:
        response = self._call("GET", "com.atproto.identity.resolveHandle", params={"handle": handle})
        if response.status_code == 200:
            answer = json_or_empty(response)
            did = answer.get("did") if isinstance(answer, dict) else None
            return str(did) if did else None
        if response.status_code == 400:
            return None  # "Unable to resolve handle": no such account
        raise self._error(response, f"resolving @{handle}")

    def _get_record(self, did: str, rkey: str) -> Receipt | None:
        params = {"repo": did, "collection": COLLECTION, "rkey": rkey}
        response = self._call("GET", "com.atproto.repo.getRecord", params=params)
        if response.status_code == 200:
            answer = json_or_empty(response)
            uri = answer.get("uri") if isinstance(answer, dict) else None
            return self._receipt(str(uri or f"at://{did}/{COLLECTION}/{rkey}"), rkey)
        if response.status_code == 400 and (
            _error_name(response) == "RecordNotFound" or "could not locate record" in _message(response).lower()
        ):
            return None  # older servers name it InvalidRequest, newer RecordNotFound
        raise self._error(response, "looking the post up")

    def _receipt(self, uri: str, rkey: str) -> Receipt:
        return Receipt(uri, f"https://bsky.app/profile/{self.handle}/post/{rkey}")

    # --- session -------------------------------------------------------------------------------

    def _did(self) -> str:
        session, _ = self._session()
        return str(session["identity"]["did"])

    def _session(self) -> tuple[dict[str, Any], bool]:
        """The stored session, or a new one; the flag says whether it was made just now."""
        try:
            stored = self.sessions.load()
        except ValueError:
            stored = {}  # a damaged session file: sign in again rather than fail every post
        identity = stored.get("identity") or {}
        # A session made for another handle (the account was re-pointed) must not be used.
        if stored.get("accessJwt") and stored.get("refreshJwt") and identity.get("login") == self.handle:
            return stored, False
        return self._create_session(), True

    def _create_session(self) -> dict[str, Any]:
        credentials = {"identifier": self.handle, "password": self.password}
        response = self._xrpc("POST", "com.atproto.server.createSession", body=credentials)
        if response.status_code != 200:
            error = self._error(response, "signing in")
            if isinstance(error, (Rejected, AuthExpired)):
                # Wrong password, revoked app password, taken-down account: a person must act.
                raise AuthExpired(str(error), http_status=response.status_code)
            raise error
        return self._store(json_or_empty(response))

    def _refresh_session(self, session: Mapping[str, Any]) -> dict[str, Any]:
        response = self._xrpc("POST", "com.atproto.server.refreshSession", token=str(session["refreshJwt"]))
        if response.status_code == 200:
            return self._store(json_or_empty(response))
        if _expired(response) or _session_refused(response):
            return self._create_session()  # the refresh token too has expired or was revoked
        raise self._error(response, "refreshing the session")

    def _store(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict) or not all(answer.get(k) for k in ("accessJwt", "refreshJwt", "did")):
            raise Transient("the session answer lacked its tokens", http_status=200)
        register_secret(answer["accessJwt"])
        register_secret(answer["refreshJwt"])
        # The DID and handle are public and appear in receipts and audit rows, so they are kept
        # nested: the token store masks every top-level string it holds.
        session = {
            "accessJwt": answer["accessJwt"],
            "refreshJwt": answer["refreshJwt"],
            "identity": {"did": answer["did"], "handle": answer.get("handle"), "login": self.handle},
        }
        self.sessions.save(session)
        return session

    # --- HTTP ----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        nsid: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        """An authenticated XRPC call, refreshing or replacing the session at most once."""
        session, fresh = self._session()

        def send(current: Mapping[str, Any]) -> requests.Response:
            token = str(current["accessJwt"])
            return self._xrpc(
                method, nsid, token=token, params=params, body=body, data=data, content_type=content_type
            )

        response = send(session)
        if _expired(response):
            response = send(self._refresh_session(session))
        elif _session_refused(response) and not fresh:
            response = send(self._create_session())
        if _expired(response) or _session_refused(response):
            raise self._error(response, f"calling {nsid}")
        return response

    def _xrpc(
        self,
        method: str,
        nsid: str,
        *,
        token: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        url = self.url(self.service, f"/xrpc/{nsid}")
        try:
            return request(
                self.http, method, url, timeout=self.timeout, headers=headers, params=params, json=body, data=data
            )
        except AdapterError as exc:
            exc.args = (self._scrub(str(exc)),)
            raise

    def _error(self, response: requests.Response, doing: str) -> AdapterError:
        """Map atproto's `{"error", "message"}` answers to the typed errors."""
        status = response.status_code
        name = _error_name(response)
        detail = self._scrub(f"{doing}: HTTP {status}: {name or 'error'}: {_message(response) or response.text[:200]}")
        now = self.clock().timestamp()
        if status == 429 or name == "RateLimitExceeded":
            wait = seconds_until_epoch(response.headers.get("ratelimit-reset"), now=now)
            if wait is None:
                wait = retry_after(response.headers, now=now)
            return RateLimited(detail, retry_after=wait, http_status=status)
        if status >= 500:
            return Transient(detail, retry_after=retry_after(response.headers, now=now), http_status=status)
        if status in (401, 403) or name in _SESSION_ERRORS or name in ("ExpiredToken", "AccountTakedown"):
            return AuthExpired(detail, http_status=status)
        return Rejected(detail, http_status=status)

    def _scrub(self, text: str) -> str:
        secrets = [self.password]
        try:
            stored = self.sessions.load()
        except (OSError, ValueError):
            stored = {}
        secrets += [str(stored.get("accessJwt") or ""), str(stored.get("refreshJwt") or "")]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    @staticmethod
    def _save(job: Job, **changes: Any) -> None:
        # `save` replaces the checkpoint: always write the whole of it, as plain JSON (what the
        # database keeps), so later changes to our own lists never leak into it unsaved.
        job.save(json.loads(json.dumps({**job.saved, **changes})))


# --- helpers -----------------------------------------------------------------------------------


def compose(message: Message) -> str:
    """The post text. A link goes in a card; with images (no card then) it joins the text."""
    text = message.text.strip()
    if message.link and message.media and message.link not in text:
        text = f"{text}\n\n{message.link}" if text else message.link
    return text


def _timestamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_name(response: requests.Response) -> str:
    body = json_or_empty(response)
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _message(response: requests.Response) -> str:
    body = json_or_empty(response)
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _expired(response: requests.Response) -> bool:
    return _error_name(response) == "ExpiredToken"


def _session_refused(response: requests.Response) -> bool:
    return response.status_code == 401 or _error_name(response) in _SESSION_ERRORS
