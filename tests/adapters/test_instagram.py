"""Instagram: image, carousel and Reel through container → status → media_publish; every
documented error; crashes at every step; container states on a retry; lookup; the offline check;
and the Instagram-login token refresh.

Every mocked request checks its method, path, body and access token; every mock must be used.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from adapters import graph, instagram
from adapters.base import AuthExpired, ConfigError, LeaseLost, MaybeSent, Media, RateLimited, Receipt, Rejected, Transient
from adapters.instagram import InstagramAdapter
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES
from tests.adapters.test_graph import INSTAGRAM_ERRORS, CrashingJob, graph_error
from tests.support import media as media_files

IG = "17841400000000001"
TOKEN = "EAAGm0PX4ZCpsBAJ-secret-ig-token"
API = "https://graph.facebook.com/v21.0"
CONTAINER = "17900000000000001"
MEDIA_ID = "17950000000000001"
PERMALINK = "https://www.instagram.com/p/DCx1Yz2Abc9/"
NOW = 1_795_000_000  # 2026-11-18 11:06:40 UTC, the adapter's clock in these tests
TEXT = "Selamat Hari Guru Nasional! #HariGuru"
CDN = "https://cdn.example.go.id/siar/"


def form(token: str = TOKEN, **fields: str) -> list[Any]:
    return [matchers.urlencoded_params_matcher({**fields, "access_token": token})]


def query(token: str = TOKEN, **params: str) -> list[Any]:
    return [matchers.query_param_matcher({**params, "access_token": token})]


def iso(epoch: float) -> str:
    """A timestamp as Graph writes it."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


@pytest.fixture
def build(make_adapter: Callable[..., Any]) -> Callable[..., InstagramAdapter]:
    def make(**account: Any) -> InstagramAdapter:
        adapter = make_adapter(InstagramAdapter, **{"ig_user_id": IG, "token": TOKEN, **account})
        adapter.clock = lambda: float(NOW)
        return adapter

    return make


@pytest.fixture
def adapter(build: Callable[..., InstagramAdapter]) -> InstagramAdapter:
    return build()


@pytest.fixture
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def create(rsps: Any, container: str = CONTAINER, **fields: str) -> Any:
    return rsps.post(f"{API}/{IG}/media", match=form(**fields), json={"id": container})


def statuses(rsps: Any, container: str, *codes: str, status: str = "") -> list[Any]:
    """Answers to the container's status polls, in order (the last one repeats)."""
    answers = []
    for code in codes:
        body = {"status_code": code, "id": container}
        if status:
            body["status"] = status
        answers.append(rsps.get(f"{API}/{container}", match=query(fields="status_code,status"), json=body))
    return answers


def media_publish(rsps: Any, container: str = CONTAINER, **kwargs: Any) -> Any:
    answer = kwargs if ("json" in kwargs or "body" in kwargs) else {"json": {"id": MEDIA_ID}, **kwargs}
    return rsps.post(f"{API}/{IG}/media_publish", match=form(creation_id=container), **answer)


def permalink(rsps: Any, media_id: str = MEDIA_ID) -> Any:
    return rsps.get(f"{API}/{media_id}", match=query(fields="permalink"), json={"permalink": PERMALINK, "id": media_id})


def recent_media(rsps: Any, *items: dict[str, Any]) -> Any:
    return rsps.get(f"{API}/{IG}/media", match=query(fields="id,caption,timestamp,permalink", limit="50"),
                    json={"data": list(items), "paging": {"cursors": {"before": "QVFIU", "after": "QVFIU2"}}})


def posted(caption: str = TEXT, *, media_id: str = MEDIA_ID, at: float = NOW + 30) -> dict[str, Any]:
    return {"id": media_id, "caption": caption, "timestamp": iso(at), "permalink": PERMALINK}


def image_mocks(rsps: Any, container: str = CONTAINER, **publish: Any) -> dict[str, Any]:
    return {
        "create": create(rsps, container, image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT),
        "status": statuses(rsps, container, "FINISHED"),
        "publish": media_publish(rsps, container, **publish),
    }


def photo(make_media: Callable[..., Media]) -> Any:
    return message(TEXT, media=(make_media("photo.jpg", alt="Guru mengajar"),))


# --- each kind of post -------------------------------------------------------------------------


def test_an_image_is_a_container_then_a_status_check_then_media_publish(adapter, job, mocked, make_media):
    calls = image_mocks(mocked)
    permalink(mocked)
    assert adapter.publish(photo(make_media), job) == Receipt(MEDIA_ID, PERMALINK)
    assert calls["publish"].call_count == 1
    assert job.saved == {"container": CONTAINER, "since": NOW, "media_id": MEDIA_ID}


def test_a_carousel_creates_its_children_then_the_parent_and_publishes_once(adapter, job, mocked, make_media):
    first = create(mocked, "17900000000000011", image_url=CDN + "photo.jpg", alt_text="alt text", is_carousel_item="true")
    second = create(mocked, "17900000000000012", media_type="VIDEO", video_url=CDN + "clip.mp4", is_carousel_item="true")
    statuses(mocked, "17900000000000012", "IN_PROGRESS", "FINISHED")  # a video child is processed first
    parent = create(mocked, CONTAINER, media_type="CAROUSEL", children="17900000000000011,17900000000000012", caption=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    publish = media_publish(mocked)
    permalink(mocked)
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("clip.mp4")))
    assert adapter.publish(post, job) == Receipt(MEDIA_ID, PERMALINK)
    assert [c.call_count for c in (first, second, parent, publish)] == [1, 1, 1, 1]


def test_a_reel_is_polled_while_in_progress_then_published(adapter, mocked, make_media):
    sleeps: list[float] = []
    adapter.sleep = sleeps.append
    create(mocked, media_type="REELS", video_url=CDN + "clip.mp4", caption=TEXT)
    statuses(mocked, CONTAINER, "IN_PROGRESS", "IN_PROGRESS", "FINISHED")
    media_publish(mocked)
    permalink(mocked)
    job = CrashingJob()
    assert adapter.publish(message(TEXT, media=(make_media("clip.mp4"),)), job) == Receipt(MEDIA_ID, PERMALINK)
    assert sleeps == [instagram.POLL_INTERVAL] * 2
    assert job.heartbeats == 3


def test_a_link_joins_the_caption(adapter, job, mocked, make_media):
    create(mocked, image_url=CDN + "photo.jpg", alt_text="alt text", caption=f"{TEXT}\n\nhttps://example.go.id/hari-guru")
    statuses(mocked, CONTAINER, "FINISHED")
    media_publish(mocked)
    permalink(mocked)
    post = message(TEXT, link="https://example.go.id/hari-guru", media=(make_media("photo.jpg"),))
    assert adapter.publish(post, job).platform_id == MEDIA_ID


def test_whoami_names_the_instagram_account(adapter, mocked):
    mocked.get(f"{API}/{IG}", match=query(fields="username"), json={"username": "pemkotpalembang", "id": IG})
    assert adapter.whoami() == f"@pemkotpalembang ({IG})"


# --- polling ---------------------------------------------------------------------------------------


def test_polling_is_bounded_and_a_retry_polls_the_same_container(adapter, mocked, make_media):
    made = create(mocked, image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT)
    [busy] = statuses(mocked, CONTAINER, "IN_PROGRESS")
    job = CrashingJob()
    with pytest.raises(Transient, match="still processing"):
        adapter.publish(photo(make_media), job)
    assert job.heartbeats == instagram.POLL_ATTEMPTS
    mocked.remove(busy)
    statuses(mocked, CONTAINER, "FINISHED")
    publish = media_publish(mocked)
    permalink(mocked)
    assert adapter.publish(photo(make_media), job.resume()).platform_id == MEDIA_ID
    assert made.call_count == 1 and publish.call_count == 1


def test_a_lost_lease_while_polling_stops_before_anything_is_published(adapter, mocked, make_media):
    class Taken(CrashingJob):
        def heartbeat(self) -> None:
            raise LeaseLost("taken over")

    create(mocked, image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT)
    with pytest.raises(LeaseLost):
        adapter.publish(photo(make_media), Taken())
    assert [c.request.method for c in mocked.calls] == ["POST"]


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "expected"), INSTAGRAM_ERRORS)
def test_each_instagram_error_on_the_first_request_raises_its_typed_error(adapter, job, mocked, make_media, status, body, expected):
    mocked.post(f"{API}/{IG}/media", match=form(image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT),
                status=status, json=body)
    with pytest.raises(expected) as info:
        adapter.publish(photo(make_media), job)
    assert type(info.value) is expected
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_are_classified(adapter, job, mocked, make_media, case, raise_, expected):
    mocked.post(f"{API}/{IG}/media", match=form(image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT), body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(photo(make_media), job)
    assert TOKEN not in str(info.value)


def test_the_daily_cap_waits_long_and_the_retry_publishes_the_same_container(adapter, mocked, make_media):
    capped = graph_error(9, 2207042, "Application request limit reached", title="Maximum number of posts reached",
                         user_msg="You reached maximum number of posts that is allowed to be published by Content Publishing API.")
    calls = image_mocks(mocked, status=400, json=capped)
    job = CrashingJob()
    with pytest.raises(RateLimited) as info:
        adapter.publish(photo(make_media), job)
    assert info.value.retry_after == graph.DAILY_CAP_WAIT
    mocked.remove(calls["publish"])
    again = media_publish(mocked)
    permalink(mocked)
    assert adapter.publish(photo(make_media), job.resume()).platform_id == MEDIA_ID
    assert calls["create"].call_count == 1 and again.call_count == 1


# --- interrupted posts -----------------------------------------------------------------------------

# Saves of an image post: 1 container id, 2 media id. See CrashingJob for `committed`.
IMAGE_CRASHES = [
    # crash_at, committed, containers created, the retry finds it PUBLISHED
    pytest.param(1, True, 1, False, id="after the container id is saved"),
    pytest.param(2, True, 1, None, id="after the media id is saved"),
    pytest.param(1, False, 2, False, id="when saving the container id fails"),
    pytest.param(2, False, 1, True, id="when saving the media id fails"),
]


@pytest.mark.parametrize(("crash_at", "committed", "containers", "published"), IMAGE_CRASHES)
def test_an_image_stopped_at_any_step_and_resumed_publishes_exactly_once(
    adapter, mocked, make_media, crash_at, committed, containers, published
):
    made = create(mocked, image_url=CDN + "photo.jpg", alt_text="Guru mengajar", caption=TEXT)
    [finished] = statuses(mocked, CONTAINER, "FINISHED")
    publish = media_publish(mocked)
    job = CrashingJob(crash_at, committed=committed)
    with pytest.raises(LeaseLost):
        adapter.publish(photo(make_media), job)
    if published:
        mocked.remove(finished)
        statuses(mocked, CONTAINER, "PUBLISHED")
        recent_media(mocked, posted())
    else:
        permalink(mocked)
    assert adapter.publish(photo(make_media), job.resume()) == Receipt(MEDIA_ID, PERMALINK)
    assert made.call_count == containers
    assert publish.call_count == 1
    assert job.saved["media_id"] == MEDIA_ID


# Saves of a two-image carousel: 1 first child, 2 second child, 3 parent container, 4 media id.
CAROUSEL_CRASHES = [
    pytest.param(1, (1, 1, 1), id="after the first child is saved"),
    pytest.param(2, (1, 1, 1), id="after the second child is saved"),
    pytest.param(3, (1, 1, 1), id="after the parent container is saved"),
    pytest.param(4, (1, 1, 1), id="after the media id is saved"),
]


@pytest.mark.parametrize(("crash_at", "creates"), CAROUSEL_CRASHES)
def test_a_carousel_stopped_at_any_step_and_resumed_publishes_exactly_once(adapter, mocked, make_media, crash_at, creates):
    first = create(mocked, "17900000000000011", image_url=CDN + "photo.jpg", alt_text="alt text", is_carousel_item="true")
    second = create(mocked, "17900000000000012", image_url=CDN + "second.jpg", alt_text="alt text", is_carousel_item="true")
    parent = create(mocked, CONTAINER, media_type="CAROUSEL", children="17900000000000011,17900000000000012", caption=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    publish = media_publish(mocked)
    permalink(mocked)
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("second.jpg")))
    job = CrashingJob(crash_at)
    with pytest.raises(LeaseLost):
        adapter.publish(post, job)
    assert adapter.publish(post, job.resume()) == Receipt(MEDIA_ID, PERMALINK)
    assert (first.call_count, second.call_count, parent.call_count) == creates
    assert publish.call_count == 1


def test_a_publish_that_failed_on_the_server_but_went_out_is_settled_from_the_container(adapter, mocked, make_media):
    error = graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True)
    calls = image_mocks(mocked, status=500, json=error)
    job = CrashingJob()
    with pytest.raises(Transient):
        adapter.publish(photo(make_media), job)
    mocked.remove(calls["status"][0])
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent_media(mocked, posted("Another post", media_id="17950000000000000"), posted())
    assert adapter.publish(photo(make_media), job.resume()) == Receipt(MEDIA_ID, PERMALINK)
    assert calls["publish"].call_count == 1


def test_settling_skips_an_older_post_with_the_same_caption(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent_media(mocked, posted(media_id=MEDIA_ID, at=NOW + 5), posted(media_id="17950000000000000", at=NOW - 7 * 86400))
    assert adapter.publish(photo(make_media), job).platform_id == MEDIA_ID


def test_a_published_container_whose_post_cannot_be_named_still_settles(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent_media(mocked, posted("An edited caption"))
    assert adapter.publish(photo(make_media), job) == Receipt(CONTAINER)


def test_an_expired_container_on_a_retry_is_created_again(adapter, mocked, make_media):
    job = CrashingJob(attempt=2)
    job.state = {"container": "17900000000000000", "since": NOW - 90_000}
    statuses(mocked, "17900000000000000", "EXPIRED")
    calls = image_mocks(mocked)
    permalink(mocked)
    assert adapter.publish(photo(make_media), job).platform_id == MEDIA_ID
    assert calls["publish"].call_count == 1
    assert job.saved["container"] == CONTAINER


def test_a_container_that_expires_at_publish_is_created_again_at_once(adapter, mocked, make_media):
    expired = graph_error(-2, 2207020, "The media you are trying to access has expired. Please try to upload again.")
    old = image_mocks(mocked, "17900000000000000", status=400, json=expired)
    new = image_mocks(mocked)
    permalink(mocked)
    assert adapter.publish(photo(make_media), CrashingJob()).platform_id == MEDIA_ID
    assert old["publish"].call_count == 1 and new["publish"].call_count == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("Error: Media upload has failed with error code 2207026", Rejected, id="2207026 video format"),
        pytest.param("Error: Media upload has failed with error code 2207052", Transient, id="2207052 fetch failed"),
        pytest.param("Error: something went wrong", Transient, id="an error without a code"),
    ],
)
def test_a_container_in_error_is_classified_by_its_subcode_and_forgotten(adapter, mocked, make_media, status, expected):
    create(mocked, media_type="REELS", video_url=CDN + "clip.mp4", caption=TEXT)
    statuses(mocked, CONTAINER, "ERROR", status=status)
    job = CrashingJob()
    with pytest.raises(expected) as info:
        adapter.publish(message(TEXT, media=(make_media("clip.mp4"),)), job)
    assert type(info.value) is expected
    assert "container" not in job.saved


# --- lookup after a crash ------------------------------------------------------------------------


def test_lookup_says_not_there_without_asking_when_no_container_was_saved(adapter, job, mocked, make_media):
    assert adapter.lookup(photo(make_media), job) is None
    assert len(mocked.calls) == 0


def test_lookup_finds_a_post_whose_publish_answer_was_lost(adapter, mocked, make_media):
    calls = image_mocks(mocked, body=requests.ReadTimeout("read timed out"))
    job = CrashingJob()
    with pytest.raises(MaybeSent):
        adapter.publish(photo(make_media), job)
    mocked.remove(calls["status"][0])
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent_media(mocked, posted())
    assert adapter.lookup(photo(make_media), job) == Receipt(MEDIA_ID, PERMALINK)
    assert job.saved["media_id"] == MEDIA_ID


def test_lookup_of_a_finished_but_unpublished_container_says_not_there(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "FINISHED")
    assert adapter.lookup(photo(make_media), job) is None


def test_lookup_of_a_saved_media_id_answers_with_its_permalink(adapter, mocked, make_media):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "media_id": MEDIA_ID}
    permalink(mocked)
    assert adapter.lookup(photo(make_media), job) == Receipt(MEDIA_ID, PERMALINK)


# --- the offline check -------------------------------------------------------------------------


def sized(media_dir: Any, size: int) -> Media:
    path = media_files.write(media_dir, "big.jpg", media_files.jpeg_bytes(pad_to=size))
    return Media(file="big.jpg", path=path, url=CDN + "big.jpg")


def test_a_clean_post_has_no_problems(adapter, make_media):
    assert adapter.check(message(TEXT, media=(make_media("photo.jpg"), make_media("clip.mp4")))) == []


@pytest.mark.parametrize(
    ("build_message", "field", "severity", "says"),
    [
        pytest.param(lambda mk, d: message(TEXT), "media", "error", ["no text-only"], id="text only"),
        pytest.param(lambda mk, d: message(TEXT, media=(mk("photo.jpg", url_base=None),)),
                     "media[0]", "error", ["photo.jpg", "no public URL", "media_url"], id="media without a public URL"),
        pytest.param(lambda mk, d: message("x" * 2_201, media=(mk("photo.jpg"),)),
                     "text", "error", ["2201", "2200"], id="caption over 2,200"),
        pytest.param(lambda mk, d: message("x" * 2_170, link="https://example.go.id/hari-guru", media=(mk("photo.jpg"),)),
                     "text", "error", ["2203", "2200"], id="a link counts inside the caption"),
        pytest.param(lambda mk, d: message(" ".join(f"#tag{i}" for i in range(31)), media=(mk("photo.jpg"),)),
                     "text", "warning", ["31 hashtags", "30"], id="31 hashtags"),
        pytest.param(lambda mk, d: message(TEXT, media=(mk("photo.png"),)),
                     "media[0]", "error", ["image/png", "JPEG"], id="a PNG"),
        pytest.param(lambda mk, d: message(TEXT, media=(sized(d, 8 * 1024 * 1024 + 1),)),
                     "media[0]", "error", ["8388609", "8388608"], id="JPEG over 8 MB"),
        pytest.param(lambda mk, d: message(TEXT, media=tuple(mk("photo.jpg") for _ in range(11))),
                     "media", "error", ["11", "10"], id="eleven carousel items"),
    ],
)
def test_check_reports_each_limit_with_the_limit_and_the_counted_value(
    adapter, make_media, media_dir, build_message, field, severity, says
):
    problems = [p for p in adapter.check(build_message(make_media, media_dir)) if p.field == field]
    assert problems
    assert problems[0].severity == severity
    assert all(word in problems[0].message for word in says), problems[0].message


# --- Instagram-login tokens ----------------------------------------------------------------------

INSTAGRAM_API = "https://graph.instagram.com"
OLD = "IGAAOld-secret-long-lived-token"
NEW = "IGAANew-secret-refreshed-token"


def refresh(rsps: Any, token: str = OLD, **answer: Any) -> Any:
    body = answer or {"json": {"access_token": NEW, "token_type": "bearer", "expires_in": 5_183_944}}
    return rsps.get(f"{INSTAGRAM_API}/refresh_access_token",
                    match=[matchers.query_param_matcher({"grant_type": "ig_refresh_token", "access_token": token})], **body)


def who(rsps: Any, token: str) -> Any:
    return rsps.get(f"{INSTAGRAM_API}/v21.0/{IG}", match=query(token, fields="username"),
                    json={"username": "pemkotpalembang", "id": IG})


def test_an_instagram_login_token_is_refreshed_and_kept_in_a_private_file(build, mocked):
    adapter = build(token=OLD, login="instagram")
    refreshed = refresh(mocked)
    who(mocked, NEW)
    adapter.whoami()
    kept = adapter.tokens.path
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    record = json.loads(kept.read_text())
    assert record["access_token"] == NEW and record["expires_at"] == NOW + 5_183_944
    # A restarted daemon uses the kept token and does not refresh it again for weeks.
    build(token=OLD, login="instagram").whoami()
    assert refreshed.call_count == 1


def test_a_refresh_that_fails_keeps_the_current_token_and_is_tried_again_a_day_later(build, mocked):
    adapter = build(token=OLD, login="instagram")
    refused = refresh(mocked, status=400, json=graph_error(190, None, "Session has not been valid for 24 hours"))
    who(mocked, OLD)
    adapter.whoami()
    adapter.whoami()
    assert refused.call_count == 1
    adapter.clock = lambda: float(NOW + instagram.REFRESH_RETRY + 1)
    adapter.whoami()
    assert refused.call_count == 2


def test_a_new_token_in_the_configuration_replaces_the_kept_one(build, mocked):
    build(token=OLD, login="instagram").tokens.save(
        {"source": "sha256-of-an-older-token", "access_token": "IGAAStale-token", "expires_at": NOW + 40 * 86400}
    )
    refresh(mocked)
    who(mocked, NEW)
    build(token=OLD, login="instagram").whoami()


def test_a_refreshed_token_never_appears_in_an_error(build, mocked):
    adapter = build(token=OLD, login="instagram")
    refresh(mocked)
    mocked.get(f"{INSTAGRAM_API}/v21.0/{IG}", match=query(NEW, fields="username"), status=400,
               json=graph_error(190, None, f"Malformed access token {NEW}"))
    with pytest.raises(AuthExpired) as info:
        adapter.whoami()
    assert NEW not in str(info.value) and OLD not in str(info.value)


def test_an_unknown_login_is_a_configuration_error(make_adapter):
    with pytest.raises(ConfigError, match="login"):
        make_adapter(InstagramAdapter, ig_user_id=IG, token=TOKEN, login="threads")
    problems = InstagramAdapter.account_problems({"platform": "instagram", "ig_user_id": IG, "token": TOKEN, "login": "x"})
    assert [p.field for p in problems] == ["login"]
