"""Facebook Pages: each kind of post, every documented error, usage back-off, crashes at every
step of a multi-step post, duplicates on a retry, lookup after a crash, and the offline check.

Every mocked request checks its method, path, body and access token; every mock must be used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from adapters import facebook, graph
from adapters.base import AuthExpired, LeaseLost, MaybeSent, Media, RateLimited, Receipt, Rejected, Transient
from adapters.facebook import FacebookAdapter
from adapters.graph import Duplicate
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES
from tests.adapters.test_graph import FACEBOOK_ERRORS, CrashingJob, business_usage, graph_error
from tests.support import media as media_files

PAGE = "1234567890"
TOKEN = "EAAGm0PX4ZCpsBAJ-secret-page-token"
API = "https://graph.facebook.com/v21.0"
VIDEO_API = "https://graph-video.facebook.com/v21.0"
POST_ID = f"{PAGE}_122100000000000001"
PERMALINK = f"https://www.facebook.com/{PAGE}/posts/122100000000000001"
VIDEO_ID = "1398200000000001"
NOW = 1_795_000_000  # 2026-11-18 11:06:40 UTC, the adapter's clock in these tests
TEXT = "Selamat Hari Guru Nasional!"
CDN = "https://cdn.example.go.id/siar/"


def form(**fields: str) -> list[Any]:
    """The body of a form POST, access token included."""
    return [matchers.urlencoded_params_matcher({**fields, "access_token": TOKEN})]


def query(**params: str) -> list[Any]:
    """The query of a GET, access token included."""
    return [matchers.query_param_matcher({**params, "access_token": TOKEN})]


@pytest.fixture
def adapter(make_adapter: Callable[..., Any]) -> FacebookAdapter:
    built = make_adapter(FacebookAdapter, page_id=PAGE, token=TOKEN)
    built.clock = lambda: float(NOW)
    return built


@pytest.fixture
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def feed_form() -> list[Any]:
    """The plain text post's body."""
    return form(message=TEXT, fields="id,permalink_url")


def feed_post(rsps: Any, *, text: str = TEXT, **extra: str) -> Any:
    return rsps.post(f"{API}/{PAGE}/feed", match=form(message=text, fields="id,permalink_url", **extra),
                     json={"id": POST_ID, "permalink_url": PERMALINK})


def permalink_get(rsps: Any, object_id: str = POST_ID) -> Any:
    return rsps.get(f"{API}/{object_id}", match=query(fields="permalink_url"),
                    json={"permalink_url": PERMALINK, "id": object_id})


def search(rsps: Any, posts: list[dict[str, Any]], *, since: int = NOW) -> Any:
    return rsps.get(
        f"{API}/{PAGE}/published_posts",
        match=query(since=str(since - facebook.CLOCK_SKEW), fields="id,message,created_time,permalink_url", limit="25"),
        json={"data": posts, "paging": {"cursors": {"before": "QVFIUmx1", "after": "QVFIUnBz"}}},
    )


def found(text: str = TEXT) -> dict[str, Any]:
    return {"id": POST_ID, "message": text, "created_time": "2026-11-18T11:06:43+0000", "permalink_url": PERMALINK}


# --- each kind of post -------------------------------------------------------------------------


def test_a_text_post_goes_to_the_page_feed_with_the_token_as_a_form_field(adapter, job, mocked):
    call = feed_post(mocked)
    assert adapter.publish(message(TEXT), job) == Receipt(POST_ID, PERMALINK)
    assert call.call_count == 1
    assert job.saved == {"since": NOW, "post_id": POST_ID}


def test_a_link_post_sends_the_link_beside_the_message(adapter, job, mocked):
    feed_post(mocked, link="https://example.go.id/hari-guru")
    receipt = adapter.publish(message(TEXT, link="https://example.go.id/hari-guru"), job)
    assert receipt.platform_id == POST_ID


def test_a_link_without_text_is_a_post_of_its_own(adapter, job, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=form(link="https://example.go.id/", fields="id,permalink_url"),
                json={"id": POST_ID})
    permalink_get(mocked)
    assert adapter.publish(message("", link="https://example.go.id/"), job) == Receipt(POST_ID, PERMALINK)


def test_one_served_photo_is_posted_by_url_with_its_caption_and_alt_text(adapter, job, mocked, make_media):
    photo = mocked.post(
        f"{API}/{PAGE}/photos",
        match=form(url=CDN + "photo.jpg", caption=f"{TEXT}\n\nhttps://example.go.id/", alt_text_custom="Guru mengajar"),
        json={"id": "122100000000000099", "post_id": POST_ID},
    )
    permalink_get(mocked)
    post = message(TEXT, link="https://example.go.id/", media=(make_media("photo.jpg", alt="Guru mengajar"),))
    assert adapter.publish(post, job) == Receipt(POST_ID, PERMALINK)
    assert photo.call_count == 1


def test_one_local_photo_is_uploaded_as_multipart_source(adapter, job, mocked, make_media, media_dir):
    item = make_media("photo.png", alt=None, url_base=None)
    mocked.post(
        f"{API}/{PAGE}/photos",
        match=[matchers.multipart_matcher(
            files={"source": ("photo.png", (media_dir / "photo.png").read_bytes(), "image/png")},
            data={"caption": TEXT, "access_token": TOKEN},
        )],
        json={"id": "122100000000000099", "post_id": POST_ID},
    )
    permalink_get(mocked)
    assert adapter.publish(message(TEXT, media=(item,)), job).platform_id == POST_ID


def album_mocks(rsps: Any, *, feed_status: int = 200, feed_body: Any = None) -> dict[str, Any]:
    calls = {
        "first": rsps.post(f"{API}/{PAGE}/photos", match=form(url=CDN + "photo.jpg", alt_text_custom="alt text", published="false"),
                           json={"id": "501"}),
        "second": rsps.post(f"{API}/{PAGE}/photos", match=form(url=CDN + "second.jpg", alt_text_custom="alt text", published="false"),
                            json={"id": "502"}),
    }
    attached = json.dumps([{"media_fbid": "501"}, {"media_fbid": "502"}], separators=(",", ":"))
    calls["feed"] = rsps.post(f"{API}/{PAGE}/feed", match=form(message=TEXT, attached_media=attached, fields="id,permalink_url"),
                              status=feed_status, json=feed_body or {"id": POST_ID, "permalink_url": PERMALINK})
    return calls


def test_several_photos_are_uploaded_unpublished_then_attached_to_one_post(adapter, job, mocked, make_media):
    calls = album_mocks(mocked)
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("second.jpg")))
    assert adapter.publish(post, job) == Receipt(POST_ID, PERMALINK)
    assert [c.call_count for c in calls.values()] == [1, 1, 1]
    assert job.saved["photos"] == [{"file": "photo.jpg", "id": "501"}, {"file": "second.jpg", "id": "502"}]


def video_status(state: str, **extra: Any) -> dict[str, Any]:
    phases = {"uploading_phase": {"status": "complete"}, "processing_phase": {"status": "in_progress"}}
    return {"status": {"video_status": state, **phases}, "id": VIDEO_ID, **extra}


def video_mocks(rsps: Any, *answers: dict[str, Any], upload: bool = True) -> dict[str, Any]:
    calls = {}
    if upload:
        calls["upload"] = rsps.post(f"{VIDEO_API}/{PAGE}/videos", match=form(file_url=CDN + "clip.mp4", description=TEXT),
                                    json={"id": VIDEO_ID})
    calls["status"] = [rsps.get(f"{API}/{VIDEO_ID}", match=query(fields="status,permalink_url"), json=a) for a in answers]
    return calls


def test_a_video_is_fetched_by_url_on_the_video_host_and_polled_until_ready(adapter, job, mocked, make_media):
    sleeps: list[float] = []
    adapter.sleep = sleeps.append
    ready = video_status("ready", permalink_url=f"/{PAGE}/videos/{VIDEO_ID}/")
    calls = video_mocks(mocked, video_status("processing"), video_status("processing"), ready)
    receipt = adapter.publish(message(TEXT, media=(make_media("clip.mp4"),)), job)
    assert receipt == Receipt(VIDEO_ID, f"https://www.facebook.com/{PAGE}/videos/{VIDEO_ID}/")
    assert calls["upload"].call_count == 1
    assert sleeps == [facebook.POLL_INTERVAL] * 2
    assert job.saved["video_id"] == VIDEO_ID


def test_a_video_facebook_cannot_process_is_rejected_and_forgotten(adapter, job, mocked, make_media):
    failed = {"status": {"video_status": "error", "processing_phase": {"status": "error", "errors": [
        {"code": 1363008, "message": "Video file is corrupt or has an unsupported format"}]}}, "id": VIDEO_ID}
    video_mocks(mocked, failed)
    with pytest.raises(Rejected, match="unsupported format"):
        adapter.publish(message(TEXT, media=(make_media("clip.mp4"),)), job)
    assert job.saved == {}


def test_video_polling_is_bounded_and_a_retry_polls_on_without_uploading_again(adapter, mocked, make_media):
    job = CrashingJob()
    calls = video_mocks(mocked, video_status("processing"))
    post = message(TEXT, media=(make_media("clip.mp4"),))
    with pytest.raises(Transient, match="still processing"):
        adapter.publish(post, job)
    assert job.heartbeats == facebook.POLL_ATTEMPTS
    # Facebook has finished by the time the retry comes.
    mocked.remove(calls["status"][0])
    mocked.get(f"{API}/{VIDEO_ID}", match=query(fields="status,permalink_url"),
               json=video_status("ready", permalink_url=f"/{PAGE}/videos/{VIDEO_ID}/"))
    assert adapter.publish(post, job.resume()).platform_id == VIDEO_ID
    assert calls["upload"].call_count == 1


def test_whoami_names_the_page(adapter, mocked):
    mocked.get(f"{API}/{PAGE}", match=query(fields="name"), json={"name": "Pemerintah Kota Palembang", "id": PAGE})
    assert adapter.whoami() == f"Pemerintah Kota Palembang ({PAGE})"


# --- errors on the first request ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "expected"), FACEBOOK_ERRORS)
def test_each_facebook_error_on_the_first_request_raises_its_typed_error(adapter, job, mocked, status, body, expected):
    if isinstance(body, dict):
        mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=status, json=body)
    else:
        mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=status, body=body, content_type="text/html")
    with pytest.raises(expected) as info:
        adapter.publish(message(TEXT), job)
    assert type(info.value) is expected
    assert info.value.http_status == status
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_are_classified(adapter, job, mocked, case, raise_, expected):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(message(TEXT), job)
    assert TOKEN not in str(info.value)


def test_a_token_graph_echoes_back_is_not_in_the_error(adapter, job, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=400, json=graph_error(190, None, f"Malformed access token {TOKEN}"))
    with pytest.raises(AuthExpired) as info:
        adapter.publish(message(TEXT), job)
    assert TOKEN not in str(info.value)


def test_a_page_rate_limit_waits_as_long_as_meta_estimates(adapter, job, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=400, headers=business_usage(100, 12),
                json=graph_error(32, None, "(#32) Page request limit reached", transient=True))
    with pytest.raises(RateLimited) as info:
        adapter.publish(message(TEXT), job)
    assert info.value.retry_after == 12 * 60


def test_high_usage_after_a_post_holds_the_next_post_before_it_is_sent(adapter, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(),
                headers={"X-App-Usage": json.dumps({"call_count": 93, "total_cputime": 20, "total_time": 25})},
                json={"id": POST_ID, "permalink_url": PERMALINK})
    adapter.publish(message(TEXT), CrashingJob())
    with pytest.raises(RateLimited) as info:
        adapter.publish(message("Another post"), CrashingJob())
    assert info.value.retry_after == pytest.approx(graph.NEAR_LIMIT_WAIT)
    assert len(mocked.calls) == 1


# --- interrupted multi-step posts --------------------------------------------------------------

# Saves of an album post: 1 first photo id, 2 second photo id, 3 "sending the post", 4 post id.
# committed: the save reached the database before the stop (a kill right after the commit);
# not committed: `save` raised (a lost lease) and the state is as it was before it.
ALBUM_CRASHES = [
    # crash_at, committed, uploads of (first, second), search finds the post?, permalink GETs
    pytest.param(1, True, (1, 1), None, 0, id="after the first photo id is saved"),
    pytest.param(2, True, (1, 1), None, 0, id="after the second photo id is saved"),
    pytest.param(3, True, (1, 1), False, 0, id="after saving that the post is being sent"),
    pytest.param(4, True, (1, 1), None, 1, id="after the post id is saved"),
    pytest.param(1, False, (2, 1), None, 0, id="when saving the first photo id fails"),
    pytest.param(3, False, (1, 1), None, 0, id="when saving that the post is being sent fails"),
    pytest.param(4, False, (1, 1), True, 0, id="when saving the post id fails"),
]


@pytest.mark.parametrize(("crash_at", "committed", "uploads", "search_finds", "permalinks"), ALBUM_CRASHES)
def test_an_album_stopped_at_any_step_and_resumed_posts_exactly_once(
    adapter, mocked, make_media, crash_at, committed, uploads, search_finds, permalinks
):
    calls = album_mocks(mocked)
    if search_finds is not None:
        calls["search"] = search(mocked, [found()] if search_finds else [])
    if permalinks:
        calls["permalink"] = permalink_get(mocked)
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("second.jpg")))
    job = CrashingJob(crash_at, committed=committed)
    with pytest.raises(LeaseLost):
        adapter.publish(post, job)
    assert adapter.publish(post, job.resume()) == Receipt(POST_ID, PERMALINK)
    assert (calls["first"].call_count, calls["second"].call_count) == uploads
    assert calls["feed"].call_count == 1
    if "search" in calls:
        assert calls["search"].call_count == 1
    assert job.saved["post_id"] == POST_ID


def page_videos(rsps: Any, videos: list[dict[str, Any]]) -> Any:
    return rsps.get(
        f"{API}/{PAGE}/videos",
        match=query(since=str(NOW - facebook.CLOCK_SKEW), fields="id,description,created_time,permalink_url", limit="25"),
        json={"data": videos},
    )


VIDEO_PERMALINK = f"https://www.facebook.com/{PAGE}/videos/{VIDEO_ID}/"
A_PAGE_VIDEO = {"id": VIDEO_ID, "description": TEXT, "created_time": "2026-11-18T11:06:44+0000",
                "permalink_url": f"/{PAGE}/videos/{VIDEO_ID}/"}

# Saves of a video post: 1 "uploading", 2 video id, 3 post id (once processed).
VIDEO_CRASHES = [
    # crash_at, committed, the Page's videos are searched (and list it?), status polls in all
    pytest.param(1, True, False, 1, id="after saving that the video is being uploaded"),
    pytest.param(2, True, None, 1, id="after the video id is saved"),
    pytest.param(3, True, None, 1, id="after the processed video is saved"),
    pytest.param(2, False, True, 0, id="when saving the video id fails"),
]


@pytest.mark.parametrize(("crash_at", "committed", "listed", "polls"), VIDEO_CRASHES)
def test_a_video_stopped_at_any_step_and_resumed_is_uploaded_exactly_once(
    adapter, mocked, make_media, crash_at, committed, listed, polls
):
    ready = video_status("ready", permalink_url=f"/{PAGE}/videos/{VIDEO_ID}/")
    calls = video_mocks(mocked, *([ready] if polls else []))
    if listed is not None:
        page_videos(mocked, [A_PAGE_VIDEO] if listed else [])
    if crash_at == 3:  # the resumed attempt only completes the receipt
        mocked.get(f"{API}/{VIDEO_ID}", match=query(fields="permalink_url"),
                   json={"permalink_url": f"/{PAGE}/videos/{VIDEO_ID}/", "id": VIDEO_ID})
    post = message(TEXT, media=(make_media("clip.mp4"),))
    job = CrashingJob(crash_at, committed=committed)
    with pytest.raises(LeaseLost):
        adapter.publish(post, job)
    assert adapter.publish(post, job.resume()) == Receipt(VIDEO_ID, VIDEO_PERMALINK)
    assert calls["upload"].call_count == 1
    assert sum(c.call_count for c in calls["status"]) == polls


def test_a_post_that_went_out_despite_a_server_error_is_found_not_sent_again(adapter, mocked):
    feed = mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=500,
                       json=graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True))
    finder = search(mocked, [found()])
    job = CrashingJob()
    with pytest.raises(Transient):
        adapter.publish(message(TEXT), job)
    assert adapter.publish(message(TEXT), job.resume()) == Receipt(POST_ID, PERMALINK)
    assert feed.call_count == 1 and finder.call_count == 1


def test_a_duplicate_on_a_retry_is_settled_as_published(adapter, mocked):
    error = graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True)
    duplicate = graph_error(506, 1366051, "Duplicate status message", title="Duplicate Status Update",
                            user_msg="This status update is identical to the last one you posted.")
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=500, json=error)
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=400, json=duplicate)
    # The post is not listed yet when the retry starts, and is by the time Facebook calls it a duplicate.
    search(mocked, [])
    search(mocked, [found(TEXT + "\r\n")])
    job = CrashingJob()
    with pytest.raises(Transient):
        adapter.publish(message(TEXT), job)
    assert adapter.publish(message(TEXT), job.resume()) == Receipt(POST_ID, PERMALINK)
    # Two requests, neither of which made a second post: the 500 and the refused duplicate.
    assert len([c for c in mocked.calls if c.request.url.endswith("/feed")]) == 2


def test_a_duplicate_on_a_first_attempt_is_a_rejection_and_nothing_is_searched(adapter, job, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=400, json=graph_error(506, 1366051, "Duplicate status message"))
    with pytest.raises(Duplicate):
        adapter.publish(message(TEXT), job)
    assert len(mocked.calls) == 1


def test_a_duplicate_on_a_retry_that_cannot_be_found_is_left_for_reconciliation(adapter, mocked):
    job = CrashingJob(attempt=2)
    job.state = {"since": NOW}
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), status=400, json=graph_error(506, 1366051, "Duplicate status message"))
    search(mocked, [found("Some other post")])
    with pytest.raises(MaybeSent, match="duplicate"):
        adapter.publish(message(TEXT), job)


# --- lookup after a crash ------------------------------------------------------------------------


def test_lookup_says_not_there_without_asking_when_the_post_was_never_sent(adapter, job, mocked):
    assert adapter.lookup(message(TEXT), job) is None
    assert len(mocked.calls) == 0


def test_lookup_finds_a_post_whose_answer_was_lost(adapter, mocked):
    mocked.post(f"{API}/{PAGE}/feed", match=feed_form(), body=requests.ReadTimeout("read timed out"))
    search(mocked, [{**found("Older post"), "id": f"{PAGE}_1"}, found()])
    job = CrashingJob()
    with pytest.raises(MaybeSent):
        adapter.publish(message(TEXT), job)
    assert adapter.lookup(message(TEXT), job) == Receipt(POST_ID, PERMALINK)
    assert job.saved["post_id"] == POST_ID


def test_lookup_follows_the_pages_of_published_posts(adapter, mocked):
    job = CrashingJob()
    job.state = {"since": NOW}
    first = {"data": [found("Older post")], "paging": {"cursors": {"before": "QQ", "after": "QVFIUnBz"},
                                                       "next": f"{API}/{PAGE}/published_posts?after=QVFIUnBz"}}
    params = {"since": str(NOW - facebook.CLOCK_SKEW), "fields": "id,message,created_time,permalink_url", "limit": "25"}
    mocked.get(f"{API}/{PAGE}/published_posts", match=query(**params), json=first)
    mocked.get(f"{API}/{PAGE}/published_posts", match=query(**params, after="QVFIUnBz"), json={"data": [found()]})
    assert adapter.lookup(message(TEXT), job) == Receipt(POST_ID, PERMALINK)


def test_lookup_of_a_saved_post_id_answers_with_its_permalink(adapter, mocked):
    job = CrashingJob()
    job.state = {"since": NOW, "post_id": POST_ID}
    permalink_get(mocked)
    assert adapter.lookup(message(TEXT), job) == Receipt(POST_ID, PERMALINK)


def test_lookup_of_an_uploaded_video_settles_it_while_facebook_processes_it(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"since": NOW, "video_id": VIDEO_ID}
    video_mocks(mocked, video_status("processing", permalink_url=f"/{PAGE}/videos/{VIDEO_ID}/"), upload=False)
    receipt = adapter.lookup(message(TEXT, media=(make_media("clip.mp4"),)), job)
    assert receipt == Receipt(VIDEO_ID, f"https://www.facebook.com/{PAGE}/videos/{VIDEO_ID}/")


def test_a_video_whose_upload_answer_was_lost_is_searched_among_the_page_videos(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"since": NOW}
    page_videos(mocked, [A_PAGE_VIDEO])
    assert adapter.lookup(message(TEXT, media=(make_media("clip.mp4"),)), job).platform_id == VIDEO_ID


# --- the offline check -------------------------------------------------------------------------


def big_jpeg(media_dir: Any, size: int) -> Media:
    path = media_files.write(media_dir, "big.jpg", media_files.jpeg_bytes(pad_to=size))
    return Media(file="big.jpg", path=path, url=CDN + "big.jpg")


def test_a_clean_post_has_no_problems(adapter, make_media):
    assert adapter.check(message(TEXT, media=(make_media("photo.jpg"), make_media("photo.png")))) == []


@pytest.mark.parametrize(
    ("build", "field", "says"),
    [
        pytest.param(lambda mk, d: message("x" * 63_207), "text", ["63207", "63206"], id="text over 63,206"),
        pytest.param(lambda mk, d: message("x" * 63_190, link="https://example.go.id/hari-guru", media=(mk("photo.jpg"),)),
                     "text", ["63223", "63206"], id="a link counts inside a photo caption"),
        pytest.param(lambda mk, d: message(TEXT, media=(big_jpeg(d, 4 * 1024 * 1024 + 1),)),
                     "media[0]", ["4194305", "4194304"], id="photo over 4 MB"),
        pytest.param(lambda mk, d: message(TEXT, media=tuple(mk("photo.jpg") for _ in range(11))),
                     "media", ["11", "10"], id="eleven photos"),
        pytest.param(lambda mk, d: message(TEXT, media=(Media(file="anim.gif", path=d / "photo.png", url=CDN + "anim.gif"),)),
                     "media[0]", ["image/gif", "JPG or PNG"], id="a GIF"),
        pytest.param(lambda mk, d: message(TEXT, media=(mk("clip.mp4", url_base=None),)),
                     "media[0]", ["clip.mp4", "public URL"], id="a video without a public URL"),
        pytest.param(lambda mk, d: message(TEXT, media=(mk("clip.mp4"), mk("photo.jpg"))),
                     "media", ["1 video(s)", "1 photo(s)"], id="a video with a photo"),
        pytest.param(lambda mk, d: message("  "), "text", ["nothing to post"], id="nothing to post"),
    ],
)
def test_check_reports_each_limit_with_the_limit_and_the_counted_value(adapter, make_media, media_dir, build, field, says):
    problems = adapter.check(build(make_media, media_dir))
    mine = [p for p in problems if p.field == field]
    assert mine, problems
    assert all(word in mine[0].message for word in says), mine[0].message
