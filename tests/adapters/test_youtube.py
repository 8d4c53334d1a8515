"""YouTube adapter: resumable upload, resume after every interruption, error mapping, checks.

Mocked answers follow Google's documented wire format: the `Location` session URI, `308` with
`Range: bytes=0-N`, the video resource on completion, and `{"error":{"code","message","errors"}}`.
"""

from __future__ import annotations

import json
import stat
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from adapters.base import (
    AuthExpired,
    ConfigError,
    LeaseLost,
    MaybeSent,
    MemoryJob,
    RateLimited,
    Rejected,
    Transient,
)
from adapters.youtube import YouTubeAdapter, seconds_until_quota_reset, tags_length
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES, refused, reset_mid_answer
from tests.adapters.test_google import (
    ACCESS,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_FORM,
    REFRESH_TOKEN,
    token_answer,
)
from tests.support import media as media_files

TOKEN_URL = "https://oauth2.googleapis.com/token"
API = "https://www.googleapis.com"
UPLOAD_URL = f"{API}/upload/youtube/v3/videos"
UPLOAD_QUERY = {"uploadType": "resumable", "part": "snippet,status"}
UPLOAD_ID = "AEnB2UqTestUploadSessionId-0123456789"
SESSION = f"{UPLOAD_URL}?uploadType=resumable&part=snippet,status&upload_id={UPLOAD_ID}"
VIDEO_ID = "Ks-_Mh1QhMc"
ACCOUNT = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, ACCESS, UPLOAD_ID)
CHUNK = 256 * 1024
TEXT = "Selamat Hari Guru Nasional!\nTerima kasih untuk seluruh guru di Kota Palembang."


def video_resource(video_id: str = VIDEO_ID) -> dict:
    """The `video` resource Google answers when an upload completes (parts snippet,status)."""
    return {
        "kind": "youtube#video",
        "etag": "Qh2lXl8bGZ7kNiXtSTsl0Zk2gZQ",
        "id": video_id,
        "snippet": {
            "publishedAt": "2026-11-25T01:00:03Z",
            "channelId": "UC4kPq5Xr0bR1mZy0kKj3l2Q",
            "title": "Selamat Hari Guru Nasional!",
            "description": TEXT,
            "categoryId": "22",
            "liveBroadcastContent": "none",
            "localized": {"title": "Selamat Hari Guru Nasional!", "description": TEXT},
        },
        "status": {
            "uploadStatus": "uploaded",
            "privacyStatus": "private",
            "license": "youtube",
            "embeddable": True,
            "publicStatsViewable": True,
            "selfDeclaredMadeForKids": False,
        },
    }


def google_error(code: int, reason: str, message: str, domain: str = "youtube.video", **extra) -> dict:
    """Google's error envelope, as the YouTube Data API sends it."""
    item = {"message": message, "domain": domain, "reason": reason, **extra}
    return {"error": {"code": code, "message": message, "errors": [item]}}


QUOTA = google_error(
    403,
    "quotaExceeded",
    "The request cannot be completed because you have exceeded your "
    '<a href="/youtube/v3/getting-started#quota">quota</a>.',
    domain="youtube.quota",
)
AUTH_ERROR = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        "errors": [
            {
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }
        ],
        "status": "UNAUTHENTICATED",
    }
}
BACKEND_503 = {
    "error": {
        "code": 503,
        "message": "The service is currently unavailable.",
        "errors": [{"message": "The service is currently unavailable.", "domain": "global", "reason": "backendError"}],
        "status": "UNAVAILABLE",
    }
}


def metadata(title: str = "Selamat Hari Guru Nasional!", description: str = TEXT, **snippet) -> dict:
    return {
        "snippet": {"title": title, "description": description, "categoryId": "22", **snippet},
        "status": {"privacyStatus": "private", "selfDeclaredMadeForKids": False},
    }


def body_is(expected: bytes):
    """A responses matcher on the exact bytes sent."""

    def match(request):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        return body == expected, f"body is {len(body)} bytes, expected exactly {len(expected)}"

    return match


def bearer(token: str = ACCESS) -> dict:
    return {"Authorization": f"Bearer {token}"}


def mock_token(access: str = ACCESS, base: str = "https://oauth2.googleapis.com") -> None:
    responses.post(
        f"{base}/token", json=token_answer(access), match=[matchers.urlencoded_params_matcher(REFRESH_FORM)]
    )


def mock_open(size: int, meta: dict | None = None, *, base: str = API, status: int = 200, json_body=None,
              token: str = ACCESS) -> None:
    headers = {"Location": SESSION} if status == 200 else {}
    responses.post(
        f"{base}/upload/youtube/v3/videos",
        status=status,
        headers=headers,
        body="" if json_body is None else json.dumps(json_body),
        content_type="text/html; charset=UTF-8" if json_body is None else "application/json; charset=UTF-8",
        match=[
            matchers.query_param_matcher(UPLOAD_QUERY),
            matchers.header_matcher(
                {
                    **bearer(token),
                    "X-Upload-Content-Length": str(size),
                    "X-Upload-Content-Type": "video/mp4",
                    "Content-Type": "application/json; charset=UTF-8",
                }
            ),
            matchers.json_params_matcher(meta or metadata()),
        ],
    )


def session_query() -> dict:
    return {**UPLOAD_QUERY, "upload_id": UPLOAD_ID}


def mock_chunk(content: bytes, start: int, end: int, *, status: int, range_end: int | None = None,
               json_body=None, base: str = API) -> None:
    headers = {"Range": f"bytes=0-{range_end}"} if range_end is not None else {}
    responses.put(
        f"{base}/upload/youtube/v3/videos",
        status=status,
        headers=headers,
        json=json_body,
        match=[
            matchers.query_param_matcher(session_query()),
            matchers.header_matcher(
                {**bearer(), "Content-Range": f"bytes {start}-{end}/{len(content)}", "Content-Type": "video/mp4"}
            ),
            body_is(content[start : end + 1]),
        ],
    )


def mock_probe(size: int, *, status: int, range_end: int | None = None, json_body=None, base: str = API) -> None:
    headers = {"Range": f"bytes=0-{range_end}"} if range_end is not None else {}
    responses.put(
        f"{base}/upload/youtube/v3/videos",
        status=status,
        headers=headers,
        json=json_body,
        match=[
            matchers.query_param_matcher(session_query()),
            matchers.header_matcher({**bearer(), "Content-Range": f"bytes */{size}"}),
            body_is(b""),
        ],
    )


@pytest.fixture
def video(media_dir, make_media):
    """A 600,000-byte MP4: three chunks of 256 KiB, 256 KiB and the rest."""
    media_files.write(media_dir, "long.mp4", media_files.mp4_bytes(600_000))
    return make_media("long.mp4", url_base=None)


@pytest.fixture
def youtube(make_adapter):
    def build(**extra) -> YouTubeAdapter:
        return make_adapter(YouTubeAdapter, **{**ACCOUNT, "chunk_size": CHUNK, **extra})

    return build


def assert_no_secrets(error: BaseException) -> None:
    for secret in SECRETS:
        assert secret not in str(error)


# --- success -------------------------------------------------------------------------------------


@responses.activate(assert_all_requests_are_fired=True)
def test_a_small_video_uploads_in_one_chunk_and_returns_the_watch_url(youtube, make_media, job, tmp_path):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    mock_token()
    mock_open(len(content))
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource())

    adapter = youtube()
    receipt = adapter.publish(message(TEXT, media=(clip,)), job)

    assert receipt.platform_id == VIDEO_ID
    assert receipt.url == f"https://www.youtube.com/watch?v={VIDEO_ID}"
    assert job.saved["session"] == SESSION
    assert job.saved["video"] == VIDEO_ID
    token_file = adapter.state_dir / "google-token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert ACCESS in token_file.read_text()


@responses.activate(assert_all_requests_are_fired=True)
def test_a_large_video_goes_up_in_chunks_following_each_308_range(youtube, video, job):
    content = video.read()
    mock_token()
    mock_open(len(content))
    mock_chunk(content, 0, CHUNK - 1, status=308, range_end=CHUNK - 1)
    mock_chunk(content, CHUNK, 2 * CHUNK - 1, status=308, range_end=2 * CHUNK - 1)
    mock_chunk(content, 2 * CHUNK, len(content) - 1, status=201, json_body=video_resource())

    beats: list[int] = []
    job.heartbeat = lambda: beats.append(1)  # type: ignore[method-assign]
    receipt = youtube().publish(message(TEXT, media=(video,)), job)

    assert receipt.platform_id == VIDEO_ID
    assert len(beats) == 3  # one lease renewal before each chunk


@responses.activate(assert_all_requests_are_fired=True)
def test_when_the_server_keeps_less_than_a_chunk_the_next_put_starts_at_its_range(youtube, video, job):
    content = video.read()
    mock_token()
    mock_open(len(content))
    mock_chunk(content, 0, CHUNK - 1, status=308, range_end=99_999)  # only 100,000 bytes kept
    mock_chunk(content, 100_000, 100_000 + CHUNK - 1, status=308, range_end=100_000 + CHUNK - 1)
    mock_chunk(content, 100_000 + CHUNK, len(content) - 1, status=200, json_body=video_resource())

    assert youtube().publish(message(TEXT, media=(video,)), job).platform_id == VIDEO_ID


@responses.activate(assert_all_requests_are_fired=True)
def test_title_tags_category_privacy_and_made_for_kids_come_from_the_account(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    mock_token()
    meta = {
        "snippet": {
            "title": "Hari Guru 2026",
            "description": f"{TEXT}\n\nhttps://example.go.id/hari-guru",
            "categoryId": "25",
            "tags": ["Hari Guru", "Palembang"],
        },
        "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": True},
    }
    mock_open(len(content), meta)
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource())

    adapter = youtube(privacy="unlisted", category=25, made_for_kids=True, tags=["Hari Guru", "Palembang"])
    post = message(TEXT, title="Hari Guru 2026", link="https://example.go.id/hari-guru", media=(clip,))
    assert adapter.publish(post, job).platform_id == VIDEO_ID


@responses.activate(assert_all_requests_are_fired=True)
def test_every_url_including_the_session_uri_is_rebased_onto_api_base(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    base = "http://127.0.0.1:8080"
    mock_token(base=base)
    mock_open(len(content), base=base)
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource(), base=base)

    adapter = youtube(api_base=base)
    assert adapter.publish(message(TEXT, media=(clip,)), job).platform_id == VIDEO_ID
    # The session URI is kept as YouTube gave it; the rebase applies when it is used.
    assert job.saved["session"] == SESSION


@responses.activate(assert_all_requests_are_fired=True)
def test_an_expired_access_token_is_refreshed_once_and_the_request_sent_again(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    mock_token("ya29.stale")
    mock_open(len(content), status=401, json_body=AUTH_ERROR, token="ya29.stale")
    mock_token(ACCESS)
    mock_open(len(content))
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource())

    adapter = youtube()
    assert adapter.publish(message(TEXT, media=(clip,)), job).platform_id == VIDEO_ID
    assert ACCESS in (adapter.state_dir / "google-token.json").read_text()


@responses.activate(assert_all_requests_are_fired=True)
def test_a_second_401_after_a_fresh_token_pauses_the_account(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    size = clip.size
    mock_token("ya29.stale")
    mock_open(size, status=401, json_body=AUTH_ERROR, token="ya29.stale")
    mock_token(ACCESS)
    mock_open(size, status=401, json_body=AUTH_ERROR)

    with pytest.raises(AuthExpired) as info:
        youtube().publish(message(TEXT, media=(clip,)), job)
    assert_no_secrets(info.value)
    assert "session" not in job.saved


@responses.activate(assert_all_requests_are_fired=True)
def test_a_revoked_refresh_token_pauses_the_account_before_any_upload(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    responses.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        match=[matchers.urlencoded_params_matcher(REFRESH_FORM)],
    )
    with pytest.raises(AuthExpired) as info:
        youtube().publish(message(TEXT, media=(clip,)), job)
    assert "invalid_grant" in str(info.value)
    assert_no_secrets(info.value)


# --- errors --------------------------------------------------------------------------------------

# (case, HTTP status, body, typed error) — each answered to the session-opening POST.
OPEN_ERRORS = [
    ("quota-exceeded", 403, QUOTA, RateLimited),
    (
        "upload-limit-exceeded",
        400,
        google_error(400, "uploadLimitExceeded", "The user has exceeded the number of videos they may upload."),
        RateLimited,
    ),
    (
        "rate-limit-exceeded",
        403,
        google_error(403, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits"),
        RateLimited,
    ),
    (
        "user-rate-limit-exceeded",
        403,
        google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded", "usageLimits"),
        RateLimited,
    ),
    ("backend-error", 500, google_error(500, "backendError", "Backend Error", "global"), Transient),
    ("service-unavailable", 503, BACKEND_503, Transient),
    (
        "invalid-title",
        400,
        google_error(400, "invalidTitle", "The request metadata specifies an invalid video title."),
        Rejected,
    ),
    (
        "invalid-description",
        400,
        google_error(400, "invalidDescription", "The request metadata specifies an invalid video description."),
        Rejected,
    ),
    (
        "invalid-tags",
        400,
        google_error(400, "invalidTags", "The request metadata specifies invalid video keywords."),
        Rejected,
    ),
    (
        "invalid-category",
        400,
        google_error(
            400,
            "invalidCategoryId",
            "The snippet.categoryId property specifies an invalid category ID. "
            "Use the videoCategories.list method to retrieve supported categories.",
        ),
        Rejected,
    ),
    (
        "invalid-publish-at",
        400,
        google_error(400, "invalidPublishAt", "The request metadata specifies an invalid scheduled publishing time."),
        Rejected,
    ),
    ("forbidden", 403, google_error(403, "forbidden", "Forbidden"), Rejected),
    (
        "signup-required",
        401,
        google_error(401, "youtubeSignupRequired", "Unauthorized", "youtube.header", location="Authorization",
                     locationType="header"),
        Rejected,
    ),
    (
        "insufficient-scope",
        403,
        {
            "error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "errors": [
                    {"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}
                ],
                "status": "PERMISSION_DENIED",
            }
        },
        AuthExpired,
    ),
]


@pytest.mark.parametrize(("case", "status", "body", "expected"), OPEN_ERRORS, ids=[c[0] for c in OPEN_ERRORS])
@responses.activate(assert_all_requests_are_fired=True)
def test_youtube_errors_on_opening_the_session_map_to_typed_errors(
    youtube, make_media, job, case, status, body, expected
):
    clip = make_media("clip.mp4", url_base=None)
    mock_token()
    mock_open(clip.size, status=status, json_body=body)

    with pytest.raises(expected) as info:
        youtube().publish(message(TEXT, media=(clip,)), job)

    assert type(info.value) is expected
    assert info.value.http_status == status
    assert_no_secrets(info.value)
    assert "session" not in job.saved  # no session was opened, so nothing to resume


@responses.activate(assert_all_requests_are_fired=True)
def test_quota_exceeded_waits_until_the_next_midnight_in_california(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    mock_token()
    mock_open(clip.size, status=403, json_body=QUOTA)
    adapter = youtube()
    # 08:00 in Jakarta = 17:00 the day before in Los Angeles (PST): 7 hours to midnight there.
    adapter.clock = lambda: datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc).timestamp()

    with pytest.raises(RateLimited) as info:
        adapter.publish(message(TEXT, media=(clip,)), job)
    assert info.value.retry_after == 7 * 3600


@responses.activate(assert_all_requests_are_fired=True)
def test_upload_limit_exceeded_waits_a_day(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    mock_token()
    mock_open(clip.size, status=400, json_body=OPEN_ERRORS[1][2])
    with pytest.raises(RateLimited) as info:
        youtube().publish(message(TEXT, media=(clip,)), job)
    assert info.value.retry_after == 24 * 3600


def test_the_quota_reset_is_counted_in_real_seconds_across_a_daylight_saving_change():
    # 01:00 PST on 8 March 2026; clocks go forward at 02:00, so the next midnight is 22 h away.
    now = datetime(2026, 3, 8, 9, 0, tzinfo=timezone.utc).timestamp()
    assert seconds_until_quota_reset(now) == 22 * 3600
    # 01:00 PDT on 1 November 2026; clocks go back at 02:00: 24 h to the next midnight.
    now = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc).timestamp()
    assert seconds_until_quota_reset(now) == 24 * 3600


@responses.activate(assert_all_requests_are_fired=True)
def test_a_server_error_mid_upload_keeps_the_session_for_the_retry(youtube, video, job):
    content = video.read()
    mock_token()
    mock_open(len(content))
    mock_chunk(content, 0, CHUNK - 1, status=308, range_end=CHUNK - 1)
    mock_chunk(content, CHUNK, 2 * CHUNK - 1, status=503, json_body=BACKEND_503)

    with pytest.raises(Transient) as info:
        youtube().publish(message(TEXT, media=(video,)), job)
    assert_no_secrets(info.value)
    assert job.saved["session"] == SESSION


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@responses.activate
def test_transport_failures_on_the_first_request_map_to_typed_errors(youtube, make_media, job, case, raise_, expected):
    clip = make_media("clip.mp4", url_base=None)
    responses.post(TOKEN_URL, body=raise_())
    with pytest.raises(expected) as info:
        youtube().publish(message(TEXT, media=(clip,)), job)
    assert type(info.value) is expected
    assert_no_secrets(info.value)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@responses.activate
def test_transport_failures_on_opening_the_session_map_to_typed_errors(
    youtube, make_media, job, case, raise_, expected
):
    clip = make_media("clip.mp4", url_base=None)
    adapter = youtube()
    adapter.google.cache(ACCESS, 3600)  # a cached token: the session POST is the first request
    responses.post(UPLOAD_URL, body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(message(TEXT, media=(clip,)), job)
    assert type(info.value) is expected
    assert_no_secrets(info.value)
    assert adapter.lookup(message(TEXT, media=(clip,)), job) is None  # no session: nothing went out


# --- resuming a saved session --------------------------------------------------------------------


def saved_job(size: int, **extra) -> MemoryJob:
    return MemoryJob(key="k-resume", attempt=2, state={"session": SESSION, "size": size, "file": "long.mp4", **extra})


@responses.activate(assert_all_requests_are_fired=True)
def test_a_retry_resumes_the_saved_session_from_the_servers_range_without_a_new_session(youtube, video):
    content = video.read()
    job = saved_job(len(content))
    mock_token()
    mock_probe(len(content), status=308, range_end=CHUNK - 1)
    mock_chunk(content, CHUNK, 2 * CHUNK - 1, status=308, range_end=2 * CHUNK - 1)
    mock_chunk(content, 2 * CHUNK, len(content) - 1, status=200, json_body=video_resource())

    assert youtube().publish(message(TEXT, media=(video,)), job).platform_id == VIDEO_ID
    assert not [c for c in responses.calls if c.request.method == "POST" and "upload" in c.request.url]


@responses.activate(assert_all_requests_are_fired=True)
def test_a_retry_whose_session_has_no_bytes_yet_starts_at_byte_zero(youtube, video):
    content = video.read()
    job = saved_job(len(content))
    mock_token()
    mock_probe(len(content), status=308)  # no Range header: nothing received
    mock_chunk(content, 0, CHUNK - 1, status=308, range_end=CHUNK - 1)
    mock_chunk(content, CHUNK, 2 * CHUNK - 1, status=308, range_end=2 * CHUNK - 1)
    mock_chunk(content, 2 * CHUNK, len(content) - 1, status=200, json_body=video_resource())

    assert youtube().publish(message(TEXT, media=(video,)), job).platform_id == VIDEO_ID


@responses.activate(assert_all_requests_are_fired=True)
def test_a_retry_after_the_upload_completed_returns_the_video_without_sending_bytes(youtube, video):
    job = saved_job(video.size, final=True)
    mock_token()
    mock_probe(video.size, status=200, json_body=video_resource())

    receipt = youtube().publish(message(TEXT, media=(video,)), job)
    assert receipt.platform_id == VIDEO_ID
    assert job.saved["video"] == VIDEO_ID


@responses.activate(assert_all_requests_are_fired=True)
def test_a_retry_whose_session_expired_before_the_last_bytes_opens_a_new_one(youtube, make_media):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    job = saved_job(len(content))
    mock_token()
    mock_probe(len(content), status=404)
    mock_open(len(content))
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource())

    assert youtube().publish(message(TEXT, media=(clip,)), job).platform_id == VIDEO_ID


@responses.activate(assert_all_requests_are_fired=True)
def test_a_session_gone_after_its_last_bytes_were_sent_is_never_uploaded_again(youtube, video):
    job = saved_job(video.size, final=True)
    mock_token()
    mock_probe(video.size, status=410)

    with pytest.raises(MaybeSent) as info:
        youtube().publish(message(TEXT, media=(video,)), job)
    assert_no_secrets(info.value)


@responses.activate(assert_all_requests_are_fired=True)
def test_a_retry_with_a_recorded_video_id_makes_no_request(youtube, video):
    job = saved_job(video.size, final=True, video=VIDEO_ID)
    assert youtube().publish(message(TEXT, media=(video,)), job).platform_id == VIDEO_ID
    assert not responses.calls


@responses.activate(assert_all_requests_are_fired=True)
def test_an_upload_the_server_stops_accepting_gives_up_for_now_and_keeps_the_session(youtube, video, job):
    content = video.read()
    mock_token()
    mock_open(len(content))
    for _ in range(3):  # the server keeps answering that it holds nothing
        mock_chunk(content, 0, CHUNK - 1, status=308)
    with pytest.raises(Transient):
        youtube().publish(message(TEXT, media=(video,)), job)
    assert job.saved["session"] == SESSION


@responses.activate(assert_all_requests_are_fired=True)
def test_a_session_holding_every_byte_but_unfinished_is_retried_later_not_resent(youtube, video):
    job = saved_job(video.size, final=True)
    mock_token()
    mock_probe(video.size, status=308, range_end=video.size - 1)
    with pytest.raises(Transient):
        youtube().publish(message(TEXT, media=(video,)), job)


# --- lookup --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "range_end", "body", "final", "expected"),
    [
        ("completed", 200, None, video_resource(), False, VIDEO_ID),
        ("completed-201", 201, None, video_resource(), True, VIDEO_ID),
        ("partial", 308, CHUNK - 1, None, False, None),
        ("nothing-received", 308, None, None, False, None),
        ("expired-before-the-end", 404, None, None, False, None),
    ],
)
@responses.activate(assert_all_requests_are_fired=True)
def test_lookup_reports_the_saved_sessions_status(youtube, video, case, status, range_end, body, final, expected):
    job = saved_job(video.size, final=final)
    mock_token()
    mock_probe(video.size, status=status, range_end=range_end, json_body=body)
    receipt = youtube().lookup(message(TEXT, media=(video,)), job)
    assert (receipt.platform_id if receipt else None) == expected


@responses.activate(assert_all_requests_are_fired=True)
def test_lookup_cannot_tell_when_the_session_expired_after_its_last_bytes(youtube, video):
    job = saved_job(video.size, final=True)
    mock_token()
    mock_probe(video.size, status=404)
    with pytest.raises(MaybeSent):
        youtube().lookup(message(TEXT, media=(video,)), job)


def test_lookup_without_a_saved_session_makes_no_request(youtube, video, job):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        assert youtube().lookup(message(TEXT, media=(video,)), job) is None
        assert not rsps.calls


# --- interrupted after every step, then resumed with the same job --------------------------------


class Crash(Exception):
    """The process dying: nothing in the adapter may catch it."""


class FakeYouTube:
    """A stateful stand-in for Google's token endpoint and resumable upload server.

    It keeps each session's bytes and refuses (fails the test on) any chunk that does not start
    exactly where the server's copy ends: a client that resends kept bytes or skips some is caught.
    """

    def __init__(self, rsps: responses.RequestsMock, content: bytes, fail_at: int | None, how: str | None) -> None:
        self.content = content
        self.sessions: dict[str, bytearray] = {}
        self.completed: dict[str, str] = {}
        self.step = 0
        self.fail_at, self.how = fail_at, how
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        rsps.add_callback(responses.POST, UPLOAD_URL, callback=self.open,
                          match=[matchers.query_param_matcher(UPLOAD_QUERY)])
        rsps.add_callback(responses.PUT, UPLOAD_URL, callback=self.put)

    def _answer(self, process):
        self.step += 1
        if self.step == self.fail_at:
            if self.how == "refused":
                return refused()
            if self.how == "server-error":
                return 503, {}, json.dumps(BACKEND_503)
            process()  # "lost-answer": the server acted, the answer never arrived
            return reset_mid_answer()
        return process()

    def token(self, request):
        assert parse_qs(request.body) == {k: [v] for k, v in REFRESH_FORM.items()}
        return self._answer(lambda: (200, {}, json.dumps(token_answer())))

    def open(self, request):
        assert request.headers["Authorization"] == f"Bearer {ACCESS}"
        assert request.headers["X-Upload-Content-Length"] == str(len(self.content))
        assert json.loads(request.body) == metadata()

        def process():
            upload_id = f"session-{len(self.sessions) + 1}"
            self.sessions[upload_id] = bytearray()
            return 200, {"Location": f"{UPLOAD_URL}?uploadType=resumable&part=snippet,status&upload_id={upload_id}"}, ""

        return self._answer(process)

    def put(self, request):
        assert request.headers["Authorization"] == f"Bearer {ACCESS}"
        upload_id = parse_qs(urlsplit(request.url).query)["upload_id"][0]
        span, total = request.headers["Content-Range"].removeprefix("bytes ").split("/")
        assert int(total) == len(self.content)
        body = request.body or b""

        def process():
            if upload_id not in self.sessions:
                return 404, {}, "Not Found"
            kept = self.sessions[upload_id]
            if span != "*":
                start, end = (int(x) for x in span.split("-"))
                assert start == len(kept), f"chunk starts at {start}; the server holds {len(kept)} bytes"
                assert len(body) == end - start + 1
                kept.extend(body)
            if len(kept) == len(self.content):
                self.completed.setdefault(upload_id, VIDEO_ID)
                return 200, {}, json.dumps(video_resource())
            return 308, ({"Range": f"bytes=0-{len(kept) - 1}"} if kept else {}), ""

        return self._answer(process)


def settle(adapter: YouTubeAdapter, post, job: MemoryJob, errors: list[BaseException]):
    """What the dispatcher does: retry on Transient, reconcile with lookup on MaybeSent or a crash."""
    for attempt in range(1, 8):
        job.attempt = attempt
        try:
            return adapter.publish(post, job)
        except (MaybeSent, Crash) as exc:
            errors.append(exc)
            try:
                found = adapter.lookup(post, job)
            except Crash as again:
                errors.append(again)
                continue
            if found is not None:
                return found
        except Transient as exc:
            errors.append(exc)
    raise AssertionError("never settled")


INTERRUPTIONS = [(step, how) for step in range(1, 6) for how in ("refused", "server-error", "lost-answer")]


@pytest.mark.parametrize(("step", "how"), INTERRUPTIONS, ids=[f"request{s}-{h}" for s, h in INTERRUPTIONS])
def test_an_upload_interrupted_at_any_request_resumes_without_a_second_session_or_resent_bytes(
    youtube, video, step, how
):
    content = video.read()
    job = MemoryJob(key="k-interrupted")
    sessions_when_saved: list[int] = []
    errors: list[BaseException] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeYouTube(rsps, content, fail_at=step, how=how)
        job.on_save = lambda state: sessions_when_saved.append(len(fake.sessions)) if "session" in state else None
        receipt = settle(youtube(), message(TEXT, media=(video,)), job, errors)

    assert receipt.platform_id == VIDEO_ID
    assert errors, "the interruption was seen"
    for error in errors:
        assert_no_secrets(error)
    completed = [uid for uid in fake.completed]
    assert len(completed) == 1 and bytes(fake.sessions[completed[0]]) == content
    # Once a session URI was saved, no other session was ever opened.
    assert len(fake.sessions) == sessions_when_saved[0]
    # Only a session whose URI never reached us (its answer was lost) may be left behind, empty.
    abandoned = [uid for uid in fake.sessions if uid not in fake.completed]
    assert all(not fake.sessions[uid] for uid in abandoned)
    assert len(abandoned) == (1 if (step, how) == (2, "lost-answer") else 0)


@pytest.mark.parametrize("crash_at_save", [1, 2, 3])
def test_a_crash_right_after_any_checkpoint_resumes_the_same_session(youtube, video, crash_at_save):
    content = video.read()
    saves = [0]

    def die_after_commit(_state) -> None:
        saves[0] += 1
        if saves[0] == crash_at_save:
            raise Crash("killed right after the checkpoint was committed")

    job = MemoryJob(key="k-crash", on_save=die_after_commit)
    errors: list[BaseException] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeYouTube(rsps, content, fail_at=None, how=None)
        receipt = settle(youtube(), message(TEXT, media=(video,)), job, errors)

    assert receipt.platform_id == VIDEO_ID
    assert [type(e) for e in errors] == [Crash]
    assert len(fake.sessions) == 1 and bytes(next(iter(fake.sessions.values()))) == content


def test_a_lost_lease_stops_the_upload_before_the_next_chunk(youtube, video):
    content = video.read()
    job = MemoryJob(key="k-lease")
    beats = [0]

    def heartbeat() -> None:
        beats[0] += 1
        if beats[0] == 2:
            raise LeaseLost("taken by another worker")

    job.heartbeat = heartbeat  # type: ignore[method-assign]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeYouTube(rsps, content, fail_at=None, how=None)
        with pytest.raises(LeaseLost):
            youtube().publish(message(TEXT, media=(video,)), job)
    assert len(next(iter(fake.sessions.values()))) == CHUNK  # the second chunk never left


# --- whoami --------------------------------------------------------------------------------------


@responses.activate(assert_all_requests_are_fired=True)
def test_whoami_names_the_channel_of_the_token(youtube):
    mock_token()
    responses.get(
        f"{API}/youtube/v3/channels",
        json={
            "kind": "youtube#channelListResponse",
            "etag": "e1",
            "pageInfo": {"totalResults": 1, "resultsPerPage": 5},
            "items": [
                {
                    "kind": "youtube#channel",
                    "etag": "e2",
                    "id": "UC4kPq5Xr0bR1mZy0kKj3l2Q",
                    "snippet": {"title": "Pemkot Palembang", "description": "", "publishedAt": "2015-02-01T00:00:00Z"},
                }
            ],
        },
        match=[matchers.query_param_matcher({"part": "snippet", "mine": "true"}), matchers.header_matcher(bearer())],
    )
    assert youtube().whoami() == "YouTube channel Pemkot Palembang (UC4kPq5Xr0bR1mZy0kKj3l2Q)"


@responses.activate(assert_all_requests_are_fired=True)
def test_whoami_without_a_channel_pauses_the_account(youtube):
    mock_token()
    responses.get(
        f"{API}/youtube/v3/channels",
        json={
            "kind": "youtube#channelListResponse",
            "etag": "e1",
            "pageInfo": {"totalResults": 0, "resultsPerPage": 5},
        },
        match=[matchers.query_param_matcher({"part": "snippet", "mine": "true"}), matchers.header_matcher(bearer())],
    )
    with pytest.raises(AuthExpired):
        youtube().whoami()


# --- offline checks and settings -----------------------------------------------------------------


def test_check_accepts_one_video_with_a_title_from_the_first_line(youtube, make_media):
    assert youtube().check(message(TEXT, media=(make_media("clip.mp4"),))) == []


@pytest.mark.parametrize(
    ("case", "post", "field", "severity"),
    [
        ("no-media", lambda m: message(TEXT), "media", "error"),
        ("an-image", lambda m: message(TEXT, media=(m("photo.jpg"),)), "media[0]", "error"),
        ("two-videos", lambda m: message(TEXT, media=(m("clip.mp4"), m("clip.mp4"))), "media", "error"),
        ("long-title", lambda m: message(TEXT, title="T" * 101, media=(m("clip.mp4"),)), "title", "error"),
        ("angle-in-title", lambda m: message(TEXT, title="Nilai <5>", media=(m("clip.mp4"),)), "title", "error"),
        ("angle-in-text", lambda m: message("Judul\nnilai < 5", media=(m("clip.mp4"),)), "text", "error"),
        ("empty", lambda m: message("", media=(m("clip.mp4"),)), "title", "error"),
        ("long-first-line", lambda m: message("kata " * 30, media=(m("clip.mp4"),)), "title", "warning"),
        # 2,000 characters but 6,000 bytes: the description limit is in bytes.
        ("description-bytes", lambda m: message("Judul\n" + "ꦗ" * 2000, media=(m("clip.mp4"),)), "text", "error"),
    ],
)
def test_check_reports_what_youtube_would_refuse(youtube, make_media, case, post, field, severity):
    problems = youtube().check(post(make_media))
    assert (field, severity) in [(p.field, p.severity) for p in problems], problems


@responses.activate(assert_all_requests_are_fired=True)
def test_a_long_first_line_becomes_a_shortened_title_at_a_word_boundary(youtube, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    content = clip.read()
    text = (
        "Pemerintah Kota Palembang mengucapkan Selamat Hari Guru Nasional kepada seluruh guru "
        "yang telah mendidik generasi"
    )
    title = "Pemerintah Kota Palembang mengucapkan Selamat Hari Guru Nasional kepada seluruh guru yang telah…"
    assert len(title) <= 100
    mock_token()
    mock_open(len(content), metadata(title=title, description=text))
    mock_chunk(content, 0, len(content) - 1, status=200, json_body=video_resource())
    assert youtube().publish(message(text, media=(clip,)), job).platform_id == VIDEO_ID


def test_publish_refuses_what_the_check_refuses_without_any_request(youtube, make_media, job):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        with pytest.raises(Rejected):
            youtube().publish(message("Nilai <5>", media=(make_media("clip.mp4"),)), job)
        assert not rsps.calls


def test_a_video_file_that_cannot_be_read_is_rejected_without_any_request(youtube, media_dir, make_media, job):
    clip = make_media("clip.mp4", url_base=None)
    (media_dir / "clip.mp4").unlink()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        with pytest.raises(Rejected, match="clip.mp4"):
            youtube().publish(message(TEXT, media=(clip,)), job)
        assert not rsps.calls


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("privacy", "secret"),
        ("category", "news"),
        ("made_for_kids", "no"),
        ("chunk_size", 1_000_000),
        ("tags", ["x" * 501]),
        ("tags", ["<b>"]),
    ],
)
def test_bad_account_settings_are_configuration_errors(make_adapter, setting, value):
    with pytest.raises(ConfigError, match=setting):
        make_adapter(YouTubeAdapter, **ACCOUNT, **{setting: value})


def test_unknown_and_missing_account_keys_are_reported():
    problems = YouTubeAdapter.account_problems({"client_id": CLIENT_ID, "privcy": "public"})
    fields = {p.field for p in problems}
    assert {"client_secret", "refresh_token", "privcy"} <= fields


def test_tags_are_counted_with_commas_and_quotes_around_tags_with_spaces():
    assert tags_length(["Hari Guru", "Palembang"]) == len('"Hari Guru",Palembang')
