"""Mastodon adapter: the requests Mastodon documents, answered the way a Mastodon instance answers.

Mocked answers keep Mastodon's own shapes (Status, MediaAttachment, Account, Instance v2) and error
bodies (`{"error": …}`). The precise tests run under `assert_all_requests_are_fired` with matchers
on method, path, body, `Authorization` and `Idempotency-Key`. The crash tests use `FakeInstance`, a
small stateful stand-in that honours `Idempotency-Key` as Mastodon does (the same key within the
hour answers the same status), and assert its exact call log.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from adapters import mastodon
from adapters.base import (
    AuthExpired,
    Media,
    MaybeSent,
    MemoryJob,
    Message,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from adapters.mastodon import MastodonAdapter, mastodon_length
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES

INSTANCE = "https://mastodon.example.go.id"
HOST = "mastodon.example.go.id"
TOKEN = "Zt9x3nVqHj7Lw2Kp5Rc8Yb1Md4Fg6Sa0Te3Ux7WiQ"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 11, 25, 1, 0, 0, tzinfo=timezone.utc)
ACCOUNT_ID = "109384637163208501"
ACCOUNT = {
    "id": ACCOUNT_ID,
    "username": "humas",
    "acct": "humas",
    "display_name": "Humas Kota Palembang",
    "locked": False,
    "bot": False,
    "discoverable": True,
    "group": False,
    "created_at": "2022-11-20T00:00:00.000Z",
    "note": "<p>Akun resmi Bagian Humas Pemerintah Kota Palembang.</p>",
    "url": f"{INSTANCE}/@humas",
    "avatar": f"https://files.{HOST}/accounts/avatars/109/384/637/163/208/501/original/humas.png",
    "header": f"https://files.{HOST}/accounts/headers/109/384/637/163/208/501/original/header.png",
    "followers_count": 1204,
    "following_count": 12,
    "statuses_count": 881,
    "last_status_at": "2026-11-24",
    "emojis": [],
    "fields": [],
}
INSTANCE_V2 = {
    "domain": HOST,
    "title": "Mastodon Pemerintah Daerah",
    "version": "4.3.2",
    "source_url": "https://github.com/mastodon/mastodon",
    "description": "Instans untuk akun resmi pemerintah daerah.",
    "usage": {"users": {"active_month": 1520}},
    "thumbnail": {"url": f"https://files.{HOST}/site_uploads/files/000/000/001/@1x/thumbnail.png"},
    "languages": ["id", "en"],
    "configuration": {
        "urls": {"streaming": f"wss://{HOST}", "status": None},
        "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
        "statuses": {"max_characters": 1000, "max_media_attachments": 6, "characters_reserved_per_url": 23},
        "media_attachments": {
            "supported_mime_types": ["image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4"],
            "description_limit": 1500,
            "image_size_limit": 16777216,
            "image_matrix_limit": 33177600,
            "video_size_limit": 103809024,
            "video_frame_rate_limit": 120,
            "video_matrix_limit": 8294400,
        },
        "polls": {"max_options": 4, "max_characters_per_option": 50, "min_expiration": 300, "max_expiration": 2629746},
        "translation": {"enabled": False},
    },
    "registrations": {"enabled": False, "approval_required": True, "message": None},
    "contact": {"email": "humas@example.go.id", "account": None},
    "rules": [],
}


# --- what a Mastodon instance sends ------------------------------------------------------------


_ENTITY = re.compile(
    r"(?P<url>https?://[^\s<>\"]+[^\s<>\".,:;!?'])"
    r"|(?<![=/\w])@(?P<user>[a-z0-9_]+)(?:@(?P<domain>[\w.-]+\w))?"
    r"|(?<![\w/])#(?P<tag>\w+)",
    re.IGNORECASE,
)


def render(text: str) -> str:
    """Plain text → the HTML `content` Mastodon's TextFormatter makes of it."""

    def entity(match: re.Match[str]) -> str:
        if match.group("url"):
            url = match.group("url")
            scheme, rest = url.split("://", 1)
            shown, hidden = rest[:30], rest[30:]
            return (
                f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
                f'<span class="invisible">{scheme}://</span><span class="{"ellipsis" if hidden else ""}">'
                f'{html.escape(shown)}</span><span class="invisible">{html.escape(hidden)}</span></a>'
            )
        if match.group("user"):
            user, domain = match.group("user"), match.group("domain") or HOST
            return (
                f'<span class="h-card" translate="no"><a href="https://{domain}/@{user}" class="u-url mention">'
                f"@<span>{user}</span></a></span>"
            )
        tag = match.group("tag")
        return f'<a href="{INSTANCE}/tags/{tag.lower()}" class="mention hashtag" rel="tag">#<span>{tag}</span></a>'

    paragraphs = []
    for paragraph in text.split("\n\n"):
        out, position = [], 0
        for match in _ENTITY.finditer(paragraph):
            out.append(html.escape(paragraph[position : match.start()]))
            out.append(entity(match))
            position = match.end()
        out.append(html.escape(paragraph[position:]))
        paragraphs.append("<p>" + "".join(out).replace("\n", "<br />") + "</p>")
    return "".join(paragraphs)


def media_json(media_id: str, file: str, *, processing: bool = False, description: str | None = "alt text") -> dict[str, Any]:
    kind = "video" if file.endswith(".mp4") else "image"
    base = f"https://files.{HOST}/media_attachments/files/{media_id[:3]}/{media_id[3:6]}/{media_id[6:9]}"
    return {
        "id": media_id,
        "type": kind,
        "url": None if processing else f"{base}/original/{file}",
        "preview_url": f"{base}/small/{Path(file).stem}.png",
        "remote_url": None,
        "preview_remote_url": None,
        "text_url": None,
        "meta": {} if processing else {"original": {"width": 4, "height": 3, "size": "4x3", "aspect": 4 / 3}},
        "description": description,
        "blurhash": "UFBWY:8_0Jxv~q-;M{Rj%2xuRjWB00M{j[of",
    }


def status_json(status_id: str, text: str, *, media: list[dict[str, Any]] | None = None, created_at: str = "2026-11-25T01:00:00.512Z") -> dict[str, Any]:
    return {
        "id": status_id,
        "created_at": created_at,
        "in_reply_to_id": None,
        "in_reply_to_account_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "id",
        "uri": f"{INSTANCE}/users/humas/statuses/{status_id}",
        "url": f"{INSTANCE}/@humas/{status_id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": None,
        "content": render(text),
        "reblog": None,
        "application": {"name": "Siar", "website": None},
        "account": ACCOUNT,
        "media_attachments": media or [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def write_cache(adapter: MastodonAdapter, fetched_at: datetime = NOW, **values: int) -> Path:
    assert adapter.state_dir is not None
    adapter.state_dir.mkdir(parents=True, exist_ok=True)
    path = adapter.state_dir / mastodon.CACHE_FILE
    path.write_text(json.dumps({**mastodon.DEFAULT_LIMITS, **values, "fetched_at": fetched_at.isoformat()}))
    return path


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def build(make_adapter: Callable[..., Any]) -> Callable[..., MastodonAdapter]:
    """A fresh adapter (a restarted process) on the same account and state folder."""

    def new(**account: Any) -> MastodonAdapter:
        settings = {"instance": INSTANCE, "token": TOKEN, "visibility": "public", "language": "id", **account}
        adapter = make_adapter(MastodonAdapter, **settings)
        adapter.clock = lambda: NOW
        return adapter

    return new


@pytest.fixture
def adapter(build: Callable[..., MastodonAdapter]) -> MastodonAdapter:
    made = build()
    write_cache(made)  # fresh limits: publish has no reason to ask the instance for them
    return made


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def expect_status(rsps: responses.RequestsMock, sent: dict[str, Any], key: str, **answer: Any) -> None:
    """A status POST carrying exactly `sent`, the bearer token and the delivery's key."""
    rsps.post(
        f"{INSTANCE}/api/v1/statuses",
        match=[matchers.header_matcher({**AUTH, "Idempotency-Key": key}), matchers.json_params_matcher(sent)],
        **answer,
    )


# --- success, per kind of post -----------------------------------------------------------------

# (kind, link, media files as (file, upload answer status, polls answered 206 before 200), status text)
KINDS = [
    ("text", None, [], "Selamat Hari Guru Nasional!"),
    ("text-with-link", "https://example.go.id/hari-guru", [], "Selamat Hari Guru Nasional!\n\nhttps://example.go.id/hari-guru"),
    ("one-image", None, [("photo.png", 200, 0)], "Selamat Hari Guru Nasional!"),
    ("two-images", None, [("photo.png", 200, 0), ("photo.jpg", 200, 0)], "Selamat Hari Guru Nasional!"),
    ("video-processed-later", None, [("clip.mp4", 202, 2)], "Selamat Hari Guru Nasional!"),
]


@pytest.mark.parametrize(("kind", "link", "files", "status_text"), KINDS, ids=[k[0] for k in KINDS])
def test_each_kind_of_post_is_sent_as_mastodon_documents_it(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, make_media: Callable[..., Media], job: MemoryJob,
    kind: str, link: str | None, files: list[tuple[str, int, int]], status_text: str,
) -> None:
    media = tuple(make_media(file, alt=f"Foto {index}") for index, (file, _, _) in enumerate(files))
    media_ids = []
    for index, (file, answer_status, polls) in enumerate(files):
        media_id = f"11352038493{index:04d}"
        media_ids.append(media_id)
        item = media[index]
        mocked.post(
            f"{INSTANCE}/api/v2/media",
            status=answer_status,
            json=media_json(media_id, file, processing=answer_status == 202, description=item.alt),
            match=[
                matchers.header_matcher(AUTH),
                matchers.multipart_matcher({"file": (file, item.read(), item.mime)}, data={"description": item.alt}),
            ],
        )
        for _ in range(polls):
            mocked.get(f"{INSTANCE}/api/v1/media/{media_id}", status=206, json=media_json(media_id, file, processing=True), match=[matchers.header_matcher(AUTH)])
        if answer_status == 202:
            mocked.get(f"{INSTANCE}/api/v1/media/{media_id}", status=200, json=media_json(media_id, file), match=[matchers.header_matcher(AUTH)])
    body: dict[str, Any] = {"status": status_text, "visibility": "public", "language": "id"}
    if media_ids:
        body["media_ids"] = media_ids
    answer = status_json("113520384937261001", status_text, media=[media_json(i, f) for i, (f, _, _) in zip(media_ids, files)])
    expect_status(mocked, body, job.key, json=answer)

    receipt = adapter.publish(message(link=link, media=media), job)

    assert receipt == Receipt("113520384937261001", f"{INSTANCE}/@humas/113520384937261001")
    assert [entry["id"] for entry in job.saved.get("media", [])] == media_ids
    assert job.saved["status_id"] == "113520384937261001"
    assert job.saved["posting_at"] == NOW.isoformat()


def test_a_video_still_processing_after_every_poll_is_transient_and_keeps_its_upload(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, make_media: Callable[..., Media], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mastodon, "MEDIA_POLLS", 3)
    job = CrashingJob(key="k-video")
    clip = make_media("clip.mp4")
    auth = [matchers.header_matcher(AUTH)]
    mocked.post(f"{INSTANCE}/api/v2/media", status=202, json=media_json("113520384930001", "clip.mp4", processing=True), match=auth)
    mocked.get(f"{INSTANCE}/api/v1/media/113520384930001", status=206, json=media_json("113520384930001", "clip.mp4", processing=True), match=auth)
    waits: list[float] = []
    adapter.sleep = waits.append

    with pytest.raises(Transient) as info:
        adapter.publish(message(media=(clip,)), job)

    assert info.value.retry_after == 60
    assert job.saved["media"] == [{"file": "clip.mp4", "id": "113520384930001", "ready": False}]
    assert waits == [1.0, 2.0, 4.0]
    assert job.heartbeats >= 3  # the lease is renewed while waiting
    assert len(mocked.calls) == 4


# --- errors ------------------------------------------------------------------------------------

NGINX_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
RATE_HEADERS = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-25T01:04:30.250000Z"}

# (case id, HTTP status, body, headers, typed error, what the message must say)
ERRORS = [
    ("token-invalid", 401, {"error": "The access token is invalid"}, {}, AuthExpired, "The access token is invalid"),
    ("token-revoked", 401, {"error": "The access token was revoked"}, {}, AuthExpired, "revoked"),
    ("scope-missing", 403, {"error": "This action is outside the authorized scopes"}, {}, AuthExpired, "authorized scopes"),
    ("not-found", 404, {"error": "Record not found"}, {}, Rejected, "Record not found"),
    ("too-long", 422, {"error": "Validation failed: Text character limit of 500 exceeded"}, {}, Rejected, "character limit"),
    ("media-not-ready", 422, {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}, {}, Transient, "finished processing"),
    ("rate-limited", 429, {"error": "Too many requests"}, RATE_HEADERS, RateLimited, "Too many requests"),
    ("server-error", 500, {"error": "We're sorry, but something went wrong on our end."}, {}, Transient, "went wrong"),
    ("bad-gateway", 502, NGINX_502, {}, Transient, "502 Bad Gateway"),
    ("unavailable", 503, {"error": "Service Unavailable"}, {"Retry-After": "120"}, Transient, "Service Unavailable"),
]


@pytest.mark.parametrize(("case", "status", "body", "headers", "expected", "says"), ERRORS, ids=[e[0] for e in ERRORS])
def test_each_documented_error_becomes_its_typed_error_without_the_token(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, job: MemoryJob,
    case: str, status: int, body: Any, headers: dict[str, str], expected: type[Exception], says: str,
) -> None:
    answer: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"body": body, "content_type": "text/html"}
    expect_status(mocked, {"status": "Selamat Hari Guru Nasional!", "visibility": "public", "language": "id"}, job.key, status=status, headers=headers, **answer)

    with pytest.raises(expected) as info:
        adapter.publish(message(), job)

    assert type(info.value) is expected
    assert info.value.http_status == status
    assert says in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.args)
    if case == "rate-limited":
        assert info.value.retry_after == pytest.approx(270.25)
    if case == "unavailable":
        assert info.value.retry_after == 120


# (X-RateLimit-Reset as instances send it, seconds to wait from NOW)
RESETS = [
    ("2026-11-25T01:04:30.250000Z", 270.25),
    ("2026-11-25T01:05:00.000Z", 300.0),
    ("2026-11-25T01:05:00Z", 300.0),
    ("2026-11-25T08:05:00+07:00", 300.0),
    ("2026-11-25T00:59:00.000Z", 0.0),  # already past: go again now
]


@pytest.mark.parametrize(("reset", "wait"), RESETS, ids=[r[0] for r in RESETS])
def test_a_rate_limit_waits_exactly_until_the_iso_8601_reset_time(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, job: MemoryJob, reset: str, wait: float,
) -> None:
    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    keyed = matchers.header_matcher({**AUTH, "Idempotency-Key": job.key})
    mocked.post(f"{INSTANCE}/api/v1/statuses", status=429, json={"error": "Too many requests"}, headers=headers, match=[keyed])

    with pytest.raises(RateLimited) as info:
        adapter.publish(message(), job)

    assert info.value.retry_after == pytest.approx(wait)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_are_typed(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, job: MemoryJob, case: str, raise_: Callable[[], Exception], expected: type[Exception],
) -> None:
    mocked.post(f"{INSTANCE}/api/v1/statuses", body=raise_(), match=[matchers.header_matcher({**AUTH, "Idempotency-Key": job.key})])

    with pytest.raises(expected) as info:
        adapter.publish(message(), job)

    assert TOKEN not in str(info.value)
    assert job.saved["posting_at"] == NOW.isoformat()  # committed before the request left


# --- a stateful stand-in for the crash tests ---------------------------------------------------


class Crash(Exception):
    """The process died here (kill -9, power loss)."""


@dataclass
class CrashingJob(MemoryJob):
    """A job whose n-th `save` dies before it commits, and that counts lease renewals."""

    crash_at_save: int | None = None
    saves: int = 0
    heartbeats: int = 0

    def save(self, state: Any) -> None:
        self.saves += 1
        if self.saves == self.crash_at_save:
            raise Crash(f"killed before save #{self.saves} committed")
        super().save(state)

    def heartbeat(self) -> None:
        self.heartbeats += 1


class FakeInstance:
    """Just enough of a Mastodon instance: uploads, processing, statuses, `Idempotency-Key`."""

    def __init__(self, rsps: responses.RequestsMock, *, processing_polls: int = 1) -> None:
        self.processing_polls = processing_polls
        self.media: dict[str, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []  # newest first, as the API lists them
        self.keys: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.lose_answer_at: int | None = None  # the n-th request is carried out, its answer lost
        self._next = 113520384937261001
        auth = [matchers.header_matcher(AUTH)]
        rsps.add_callback("POST", f"{INSTANCE}/api/v2/media", self._upload, match=auth)
        rsps.add_callback("GET", re.compile(rf"{re.escape(INSTANCE)}/api/v1/media/\d+"), self._poll, match=auth)
        keyed = auth + [matchers.header_matcher({"Idempotency-Key": re.compile(r".+")})]
        rsps.add_callback("POST", f"{INSTANCE}/api/v1/statuses", self._create, match=keyed)
        rsps.add_callback("GET", f"{INSTANCE}/api/v1/accounts/verify_credentials", self._me, match=auth)
        rsps.add_callback("GET", f"{INSTANCE}/api/v1/accounts/{ACCOUNT_ID}/statuses", self._timeline, match=auth)

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    def _answer(self, request: requests.PreparedRequest, status: int, body: Any) -> Any:
        self.calls.append(f"{request.method} {request.path_url.split('?')[0]}")
        if len(self.calls) == self.lose_answer_at:
            return requests.ReadTimeout("read timed out")  # the work is done, the answer never arrives
        return (status, {"Content-Type": "application/json"}, json.dumps(body))

    def _upload(self, request: requests.PreparedRequest) -> Any:
        assert isinstance(request.body, bytes)
        file = re.search(rb'filename="([^"]+)"', request.body).group(1).decode()  # type: ignore[union-attr]
        description = re.search(rb'name="description"\r\n\r\n([^\r]*)\r\n', request.body)
        media_id = self._id()
        later = file.endswith(".mp4")
        self.media[media_id] = {"file": file, "polls": self.processing_polls if later else 0, "description": description.group(1).decode() if description else None}
        return self._answer(request, 202 if later else 200, media_json(media_id, file, processing=later))

    def _poll(self, request: requests.PreparedRequest) -> Any:
        media_id = request.path_url.rsplit("/", 1)[1]
        item = self.media[media_id]
        if item["polls"] > 0:
            item["polls"] -= 1
            return self._answer(request, 206, media_json(media_id, item["file"], processing=True))
        return self._answer(request, 200, media_json(media_id, item["file"]))

    def _create(self, request: requests.PreparedRequest) -> Any:
        key = request.headers["Idempotency-Key"]
        if key in self.keys:  # Mastodon: the same key within the hour answers the first status
            return self._answer(request, 200, self.keys[key])
        body = json.loads(request.body or b"{}")
        attached = []
        for media_id in body.get("media_ids", []):
            if self.media[media_id]["polls"] > 0:
                error = {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}
                return self._answer(request, 422, error)
            attached.append(media_json(media_id, self.media[media_id]["file"]))
        status = status_json(self._id(), body["status"], media=attached, created_at=NOW.isoformat().replace("+00:00", "Z"))
        self.statuses.insert(0, status)
        self.keys[key] = status
        return self._answer(request, 200, status)

    def _me(self, request: requests.PreparedRequest) -> Any:
        return self._answer(request, 200, {**ACCOUNT, "source": {"privacy": "public", "language": "id"}})

    def _timeline(self, request: requests.PreparedRequest) -> Any:
        return self._answer(request, 200, self.statuses[:40])


def settle(new_adapter: Callable[[], MastodonAdapter], post: Message, job: CrashingJob) -> Receipt:
    """What the dispatcher does: publish; after a crash or a lost answer, lookup, then resend."""
    try:
        return new_adapter().publish(post, job)
    except (Crash, MaybeSent):
        pass
    job.crash_at_save = None
    found = new_adapter().lookup(post, job)  # a restarted process reconciles with the same job
    if found is not None:
        return found
    return new_adapter().publish(post, job)


@pytest.fixture
def fresh(build: Callable[..., MastodonAdapter]) -> Callable[[], MastodonAdapter]:
    def new() -> MastodonAdapter:
        made = build()
        write_cache(made)
        return made

    return new


def test_a_lost_answer_is_settled_by_lookup_to_exactly_one_status(fresh: Callable[[], MastodonAdapter]) -> None:
    post = message("Selamat Hari Guru Nasional! #HariGuru", link="https://example.go.id/hari-guru")
    job = CrashingJob(key="k-hari-guru-2026-humas")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakeInstance(rsps)
        server.lose_answer_at = 1  # the status POST reaches the instance; its answer is lost

        with pytest.raises(MaybeSent):
            fresh().publish(post, job)
        found = fresh().lookup(post, job)

    assert len(server.statuses) == 1
    assert found == Receipt(server.statuses[0]["id"], server.statuses[0]["url"])
    assert server.calls == [
        "POST /api/v1/statuses",
        "GET /api/v1/accounts/verify_credentials",
        f"GET /api/v1/accounts/{ACCOUNT_ID}/statuses",
    ]


def test_a_resend_with_the_same_idempotency_key_answers_the_first_status(fresh: Callable[[], MastodonAdapter]) -> None:
    post = message("Selamat Hari Guru Nasional!")
    job = CrashingJob(key="k-hari-guru-2026-humas")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakeInstance(rsps)
        server.lose_answer_at = 1

        with pytest.raises(MaybeSent):
            fresh().publish(post, job)
        receipt = fresh().publish(post, job)  # a blind retry, within the hour

    assert server.calls == ["POST /api/v1/statuses", "POST /api/v1/statuses"]
    assert len(server.statuses) == 1
    assert receipt.platform_id == server.statuses[0]["id"]
    assert job.saved["status_id"] == receipt.platform_id


POSTS = {
    "media": lambda make_media: message("Foto kegiatan Hari Guru", media=(make_media("photo.png"), make_media("clip.mp4"))),
    "text": lambda make_media: message(
        "Selamat Hari Guru Nasional, @pgri@mastodon.example.id!\n\nInfo lengkap: https://example.go.id/berita/2026/11/hari-guru-nasional #HariGuru"
    ),
}


def clean_run(fresh: Callable[[], MastodonAdapter], post: Message) -> tuple[list[str], list[dict[str, Any]]]:
    """The requests and checkpoints of an uninterrupted publish."""
    states: list[dict[str, Any]] = []
    job = CrashingJob(key="k-clean", on_save=lambda state: states.append(dict(state)))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakeInstance(rsps)
        fresh().publish(post, job)
    return server.calls, states


@pytest.mark.parametrize("kind", sorted(POSTS))
def test_a_post_interrupted_after_any_step_resumes_to_exactly_one_status(
    fresh: Callable[[], MastodonAdapter], make_media: Callable[..., Media], kind: str,
) -> None:
    post = POSTS[kind](make_media)
    calls, states = clean_run(fresh, post)
    files = len(post.media)
    assert calls.count("POST /api/v1/statuses") == 1 and calls.count("POST /api/v2/media") == files

    uploads_at = [n for n, call in enumerate(calls, 1) if call == "POST /api/v2/media"]
    def ids_in(state: dict[str, Any]) -> int:
        return len([entry for entry in state.get("media", []) if entry])

    new_id_at = [n for n, state in enumerate(states, 1) if ids_in(state) > (ids_in(states[n - 2]) if n > 1 else 0)]
    assert new_id_at == list(range(1, files + 1))  # the first saves record the uploads, one each
    scenarios = [("answer lost", n) for n in range(1, len(calls) + 1)] + [("crash before save", n) for n in range(1, len(states) + 1)]
    for how, step in scenarios:
        job = CrashingJob(key=f"k-{kind}-{how}-{step}")
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            server = FakeInstance(rsps)
            if how == "answer lost":
                server.lose_answer_at = step
            else:
                job.crash_at_save = step
            receipt = settle(fresh, post, job)

        where = f"{kind}: {how} at step {step}"
        assert len(server.statuses) == 1, where
        status = server.statuses[0]
        assert receipt == Receipt(status["id"], status["url"]), where
        assert len(status["media_attachments"]) == files, where
        # An upload whose id was never saved is the only one ever repeated (left unattached).
        lost_an_id = (how == "answer lost" and step in uploads_at) or (how == "crash before save" and step in new_id_at)
        assert server.calls.count("POST /api/v2/media") == files + (1 if lost_an_id else 0), where
        assert len(server.keys) == 1 and job.key in server.keys, where


# --- lookup --------------------------------------------------------------------------------------


def test_lookup_answers_none_without_asking_when_no_status_request_ever_left(
    adapter: MastodonAdapter, mocked: responses.RequestsMock
) -> None:
    job = MemoryJob(key="k-1", state={"media": [{"file": "photo.png", "id": "1", "ready": True}]})

    assert adapter.lookup(message(), job) is None
    assert len(mocked.calls) == 0


def test_lookup_answers_the_recorded_status_without_asking(adapter: MastodonAdapter, mocked: responses.RequestsMock) -> None:
    job = MemoryJob(key="k-1", state={"posting_at": NOW.isoformat(), "status_id": "77", "status_url": f"{INSTANCE}/@humas/77"})

    assert adapter.lookup(message(), job) == Receipt("77", f"{INSTANCE}/@humas/77")
    assert adapter.publish(message(), job) == Receipt("77", f"{INSTANCE}/@humas/77")
    assert len(mocked.calls) == 0


def expect_timeline(rsps: responses.RequestsMock, statuses: list[dict[str, Any]]) -> None:
    rsps.get(f"{INSTANCE}/api/v1/accounts/verify_credentials", json=ACCOUNT, match=[matchers.header_matcher(AUTH)])
    rsps.get(
        f"{INSTANCE}/api/v1/accounts/{ACCOUNT_ID}/statuses",
        json=statuses,
        match=[matchers.header_matcher(AUTH), matchers.query_param_matcher({"limit": "40", "exclude_reblogs": "true"})],
    )


def test_lookup_matches_the_rendered_text_and_skips_an_older_status_with_the_same_text(
    adapter: MastodonAdapter, mocked: responses.RequestsMock
) -> None:
    text = "Hai @pgri@mastodon.example.id, baca https://example.go.id/berita/2026/11/hari-guru-nasional-kota-palembang\n\nSalam & hormat <3"
    last_week = status_json("113480000000000001", text, created_at="2026-11-18T01:00:00.000Z")
    ours = status_json("113520384937261002", text, created_at="2026-11-25T01:00:01.020Z")
    other = status_json("113520384937261003", "Pengumuman lain", created_at="2026-11-25T01:02:00.000Z")
    expect_timeline(mocked, [other, ours, last_week])
    job = MemoryJob(key="k-1", state={"posting_at": NOW.isoformat(), "first_posting_at": NOW.isoformat()})

    assert adapter.lookup(message(text), job) == Receipt("113520384937261002", f"{INSTANCE}/@humas/113520384937261002")


def test_lookup_answers_none_when_the_timeline_does_not_hold_the_post(adapter: MastodonAdapter, mocked: responses.RequestsMock) -> None:
    expect_timeline(mocked, [status_json("113520384937261003", "Pengumuman lain")])
    job = MemoryJob(key="k-1", state={"posting_at": NOW.isoformat(), "first_posting_at": NOW.isoformat()})

    assert adapter.lookup(message(), job) is None


def test_lookup_matches_a_media_post_by_its_uploaded_media_ids(adapter: MastodonAdapter, mocked: responses.RequestsMock) -> None:
    ours = status_json("113520384937261002", "Teks yang diubah setelahnya", media=[media_json("5001", "photo.png")])
    expect_timeline(mocked, [ours])
    job = MemoryJob(key="k-1", state={"media": [{"file": "photo.png", "id": "5001", "ready": True}], "posting_at": NOW.isoformat()})

    assert adapter.lookup(message("Foto kegiatan"), job) == Receipt("113520384937261002", f"{INSTANCE}/@humas/113520384937261002")


@pytest.mark.parametrize("on_timeline", [True, False], ids=["found", "not-found"])
def test_publish_past_the_idempotency_window_looks_at_the_timeline_before_resending(
    adapter: MastodonAdapter, mocked: responses.RequestsMock, on_timeline: bool
) -> None:
    two_hours_ago = (NOW - timedelta(hours=2)).isoformat()
    job = MemoryJob(key="k-1", state={"posting_at": two_hours_ago, "first_posting_at": two_hours_ago})
    ours = status_json("113520000000000009", "Selamat Hari Guru Nasional!", created_at="2026-11-24T23:00:00.300Z")
    expect_timeline(mocked, [ours] if on_timeline else [])
    if not on_timeline:
        body = {"status": "Selamat Hari Guru Nasional!", "visibility": "public", "language": "id"}
        expect_status(mocked, body, "k-1", json=status_json("113520384937261001", "Selamat Hari Guru Nasional!"))

    receipt = adapter.publish(message(), job)

    assert receipt.platform_id == ("113520000000000009" if on_timeline else "113520384937261001")
    assert job.saved["posting_at"] == (two_hours_ago if on_timeline else NOW.isoformat())
    assert job.saved["first_posting_at"] == two_hours_ago


# --- counting and offline checks -----------------------------------------------------------------

COUNTS = [
    ("Selamat Hari Guru Nasional!", 27),
    ("Info: https://example.go.id/pengumuman/hari-guru-nasional-2026-kota-palembang", 6 + 23),
    ("https://a.id", 23),  # short links count 23 too
    ("Lihat https://example.go.id/a.", 6 + 23 + 1),  # the full stop is not part of the link
    ("(https://example.go.id/a)", 1 + 23 + 1),
    ("Hai @humas@mastodon.example.go.id!", 4 + 6 + 1),  # a remote mention counts as @user
    ("Hai @humas!", 4 + 6 + 1),
    ("Surel info@example.go.id", 6 + 18),  # an e-mail address is not a mention
    ("ꦱꦸꦒꦼꦁ 🇮🇩 🎉", 2 + 1 + 1 + 1 + 1),
    ("@pgri@mastodon.example.id https://example.go.id/x 👨\u200d👩\u200d👧", 5 + 1 + 23 + 1 + 1),
]


@pytest.mark.parametrize(("text", "expected"), COUNTS, ids=[c[0] for c in COUNTS])
def test_text_is_counted_as_mastodon_counts_it(text: str, expected: int) -> None:
    assert mastodon_length(text) == expected


def test_urls_count_as_the_instances_reserved_length(adapter: MastodonAdapter) -> None:
    write_cache(adapter, characters_reserved_per_url=30)
    assert adapter.count_text("Lihat https://a.id") == 6 + 30


LIMIT_CASES = [
    # (case id, cached limits or None, account max_characters, text length, problems expected)
    ("defaults-500-over", None, None, 501, ["text: is 501 characters long; the limit is 500"]),
    ("defaults-500-exact", None, None, 500, []),
    ("account-key-without-cache", None, 700, 650, []),
    ("cache-wins-over-account-key", {"max_characters": 1000}, 700, 900, []),
    ("cache-lower-than-default", {"max_characters": 300}, None, 301, ["text: is 301 characters long; the limit is 300"]),
]


@pytest.mark.parametrize(("case", "cached", "configured", "length", "expected"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_check_uses_the_cached_instance_limits_else_the_account_key_else_the_defaults(
    build: Callable[..., MastodonAdapter], case: str, cached: dict[str, int] | None, configured: int | None, length: int, expected: list[str],
) -> None:
    adapter = build(**({"max_characters": configured} if configured else {}))
    if cached is not None:
        write_cache(adapter, **cached)

    problems = adapter.check(message("ꦱꦸ" * length))

    assert [f"{p.field}: {p.message}" for p in problems] == expected


def test_check_counts_the_appended_link_and_the_instance_media_rules(adapter: MastodonAdapter, make_media: Callable[..., Media]) -> None:
    write_cache(adapter, max_media_attachments=1, description_limit=10)
    post = message("a" * 476, link="https://example.go.id/hari-guru", media=(make_media("photo.png", alt="x" * 11), make_media("photo.jpg")))

    problems = {p.field: p.message for p in adapter.check(post)}

    assert problems == {
        "text": "is 501 characters long; the limit is 500",  # 476 + two newlines + 23 for the link
        "media": "has 2 files; the limit is 1",
        "media[0].alt": "is 11 characters; the limit is 10",
    }


def test_account_settings_are_checked_offline() -> None:
    problems = MastodonAdapter.account_problems({"instance": INSTANCE, "token": TOKEN, "visibility": "everyone", "max_characters": "lots", "lang": "id"})

    assert {p.field for p in problems} == {"visibility", "max_characters", "lang"}


# --- whoami and the limits cache -------------------------------------------------------------------


def test_whoami_names_the_account_and_caches_the_instance_limits(build: Callable[..., MastodonAdapter], mocked: responses.RequestsMock) -> None:
    adapter = build()
    mocked.get(f"{INSTANCE}/api/v1/accounts/verify_credentials", json=ACCOUNT, match=[matchers.header_matcher(AUTH)])
    mocked.get(f"{INSTANCE}/api/v2/instance", json=INSTANCE_V2, match=[matchers.header_matcher(AUTH)])

    assert adapter.whoami() == "@humas@mastodon.example.go.id"

    assert adapter.state_dir is not None
    cached = json.loads((adapter.state_dir / mastodon.CACHE_FILE).read_text())
    assert cached["max_characters"] == 1000 and cached["max_media_attachments"] == 6 and cached["fetched_at"] == NOW.isoformat()
    assert build().check(message("a" * 1000)) == []  # another process, offline, uses the cache


@pytest.mark.parametrize(("age", "refetched"), [(timedelta(hours=23), False), (timedelta(hours=25), True)], ids=["fresh", "a-day-old"])
def test_the_limits_cache_is_refreshed_once_a_day(build: Callable[..., MastodonAdapter], mocked: responses.RequestsMock, age: timedelta, refetched: bool) -> None:
    adapter = build()
    write_cache(adapter, fetched_at=NOW - age, max_characters=600)
    mocked.get(f"{INSTANCE}/api/v1/accounts/verify_credentials", json=ACCOUNT, match=[matchers.header_matcher(AUTH)])
    if refetched:
        mocked.get(f"{INSTANCE}/api/v2/instance", json=INSTANCE_V2, match=[matchers.header_matcher(AUTH)])

    adapter.whoami()

    assert adapter.instance_limits()["max_characters"] == (1000 if refetched else 600)


def test_a_failed_limits_refresh_never_fails_a_status_that_went_out(build: Callable[..., MastodonAdapter], mocked: responses.RequestsMock, job: MemoryJob) -> None:
    adapter = build()  # no cache yet: publish refreshes it after the status is created
    expect_status(mocked, {"status": "Selamat Hari Guru Nasional!", "visibility": "public", "language": "id"}, job.key, json=status_json("9", "Selamat Hari Guru Nasional!"))
    mocked.get(f"{INSTANCE}/api/v2/instance", status=503, json={"error": "Service Unavailable"}, match=[matchers.header_matcher(AUTH)])

    assert adapter.publish(message(), job).platform_id == "9"
    assert adapter.instance_limits() == dict(mastodon.DEFAULT_LIMITS)


def test_api_base_replaces_the_instance_host_on_every_request(build: Callable[..., MastodonAdapter], mocked: responses.RequestsMock, job: MemoryJob) -> None:
    adapter = build(api_base="http://127.0.0.1:8080")
    write_cache(adapter)
    mocked.post("http://127.0.0.1:8080/api/v1/statuses", json=status_json("9", "x"), match=[matchers.header_matcher({**AUTH, "Idempotency-Key": job.key})])

    assert adapter.publish(message(), job).platform_id == "9"
