"""Threads: text, image, video and carousel through container → status → threads_publish; every
documented error; transport failures; crashes at every step; container states on a retry;
lookup; the token refresh; the offline check and Threads' way of counting text.

Every mocked request checks its method, path, body or query and access token; every mock must be
used. Answers follow Meta's Threads API pages and what clients logged from production (cited
where a case comes from there).
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

from adapters import graph, threads
from adapters.base import (
    AuthExpired,
    ConfigError,
    LeaseLost,
    MaybeSent,
    Media,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from adapters.threads import ThreadsAdapter
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES
from tests.adapters.test_graph import CrashingJob, graph_error
from tests.support import media as media_files

USER = "25371883452465491"
TOKEN = "THAAGm0PX4ZCpsBAJ-secret-threads-token"
API = "https://graph.threads.net/v1.0"
CONTAINER = "17889615691921648"
CHILD_1 = "17889615691921601"
CHILD_2 = "17889615691921602"
MEDIA_ID = "18038697281071593"
PERMALINK = "https://www.threads.net/@pemkotpalembang/post/DCx1Yz2Abc9"
NOW = 1_795_000_000  # 2026-11-18 11:06:40 UTC, the adapter's clock in these tests
DAY = 24 * 3600
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
def build(make_adapter: Callable[..., Any]) -> Callable[..., ThreadsAdapter]:
    """An adapter whose token is kept with 45 days left (no refresh due), unless `kept=False`."""

    def make(*, kept: bool = True, **account: Any) -> ThreadsAdapter:
        adapter = make_adapter(ThreadsAdapter, **{"user_id": USER, "token": TOKEN, **account})
        adapter.clock = lambda: float(NOW)
        if kept:
            adapter.keep_token(str(adapter.account["token"]), NOW + 45 * DAY)
        return adapter

    return make


@pytest.fixture
def adapter(build: Callable[..., ThreadsAdapter]) -> ThreadsAdapter:
    return build()


@pytest.fixture
def mocked() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


# --- what Threads answers ------------------------------------------------------------------------


def create(rsps: Any, container: str = CONTAINER, token: str = TOKEN, **fields: str) -> Any:
    return rsps.post(f"{API}/{USER}/threads", match=form(token, **fields), json={"id": container})


def statuses(rsps: Any, container: str, *codes: str, error: str = "") -> list[Any]:
    """Answers to the container's status polls, in order (the last one repeats)."""
    answers = []
    for code in codes:
        body = {"status": code, "id": container}
        if error:
            body["error_message"] = error
        answers.append(rsps.get(f"{API}/{container}", match=query(fields="status,error_message"), json=body))
    return answers


def threads_publish(rsps: Any, container: str = CONTAINER, token: str = TOKEN, **answer: Any) -> Any:
    answer = answer or {"json": {"id": MEDIA_ID}}
    return rsps.post(f"{API}/{USER}/threads_publish", match=form(token, creation_id=container), **answer)


def permalink(rsps: Any, media_id: str = MEDIA_ID, token: str = TOKEN) -> Any:
    return rsps.get(f"{API}/{media_id}", match=query(token, fields="permalink"),
                    json={"permalink": PERMALINK, "id": media_id})


def recent(rsps: Any, *items: dict[str, Any], since: int = NOW - threads.CLOCK_SKEW) -> Any:
    return rsps.get(
        f"{API}/{USER}/threads",
        match=query(fields="id,media_type,text,timestamp,permalink", limit="25", since=str(since)),
        json={"data": list(items), "paging": {"cursors": {"before": "QVFIUmx1", "after": "QVFIUmx2"}}},
    )


def posted(text: str = TEXT, *, media_type: str = "TEXT_POST", media_id: str = MEDIA_ID, at: float = NOW + 30) -> dict[str, Any]:
    item = {"id": media_id, "media_type": media_type, "timestamp": iso(at), "permalink": PERMALINK}
    if text:
        item["text"] = text  # Threads leaves the field out of a post without text
    return item


def text_post() -> Any:
    return message(TEXT)


def photo(make_media: Callable[..., Media]) -> Any:
    return message(TEXT, media=(make_media("photo.jpg", alt="Guru mengajar di kelas"),))


IMAGE_FIELDS = {"media_type": "IMAGE", "image_url": CDN + "photo.jpg", "alt_text": "Guru mengajar di kelas", "text": TEXT}


# --- each kind of post ---------------------------------------------------------------------------

# (files, containers created in order: (id, fields)); every container answers FINISHED.
KINDS = [
    pytest.param((), [(CONTAINER, {"media_type": "TEXT", "text": TEXT})], id="text"),
    pytest.param(("photo.jpg",), [(CONTAINER, {"media_type": "IMAGE", "image_url": CDN + "photo.jpg",
                                               "alt_text": "alt text", "text": TEXT})], id="image"),
    pytest.param(("clip.mp4",), [(CONTAINER, {"media_type": "VIDEO", "video_url": CDN + "clip.mp4",
                                              "alt_text": "alt text", "text": TEXT})], id="video"),
    pytest.param(
        ("photo.jpg", "clip.mp4"),
        [
            (CHILD_1, {"media_type": "IMAGE", "image_url": CDN + "photo.jpg", "alt_text": "alt text",
                       "is_carousel_item": "true"}),
            (CHILD_2, {"media_type": "VIDEO", "video_url": CDN + "clip.mp4", "alt_text": "alt text",
                       "is_carousel_item": "true"}),
            (CONTAINER, {"media_type": "CAROUSEL", "children": f"{CHILD_1},{CHILD_2}", "text": TEXT}),
        ],
        id="carousel",
    ),
]


@pytest.mark.parametrize(("files", "containers"), KINDS)
def test_each_kind_of_post_is_created_checked_and_published_once(adapter, job, mocked, make_media, files, containers):
    made = [create(mocked, container, **fields) for container, fields in containers]
    for container, _ in containers:
        statuses(mocked, container, "FINISHED")
    publish = threads_publish(mocked)
    permalink(mocked)
    post = message(TEXT, media=tuple(make_media(f) for f in files))
    assert adapter.publish(post, job) == Receipt(MEDIA_ID, PERMALINK)
    assert [m.call_count for m in made] == [1] * len(made)
    assert publish.call_count == 1
    assert job.saved["container"] == CONTAINER and job.saved["media_id"] == MEDIA_ID
    assert job.saved["since"] == NOW


def test_a_video_is_polled_while_in_progress_with_heartbeats_then_published(adapter, mocked, make_media):
    sleeps: list[float] = []
    adapter.sleep = sleeps.append
    create(mocked, media_type="VIDEO", video_url=CDN + "clip.mp4", text=TEXT)
    statuses(mocked, CONTAINER, "IN_PROGRESS", "IN_PROGRESS", "FINISHED")
    threads_publish(mocked)
    permalink(mocked)
    job = CrashingJob()
    post = message(TEXT, media=(make_media("clip.mp4", alt=None),))
    assert adapter.publish(post, job) == Receipt(MEDIA_ID, PERMALINK)
    assert sleeps == [threads.POLL_INTERVAL] * 2
    assert job.heartbeats == 3


def test_a_link_goes_at_the_end_of_the_text_so_threads_previews_it(adapter, job, mocked):
    create(mocked, media_type="TEXT", text=f"{TEXT}\n\nhttps://example.go.id/hari-guru")
    statuses(mocked, CONTAINER, "FINISHED")
    threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(message(TEXT, link="https://example.go.id/hari-guru"), job).platform_id == MEDIA_ID


def test_a_link_already_in_the_text_is_not_repeated(adapter, job, mocked):
    text = "Info lengkap: https://example.go.id/hari-guru #HariGuru"
    create(mocked, media_type="TEXT", text=text)
    statuses(mocked, CONTAINER, "FINISHED")
    threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(message(text, link="https://example.go.id/hari-guru"), job).platform_id == MEDIA_ID


def test_an_image_without_text_sends_no_text_field(adapter, job, mocked, make_media):
    create(mocked, media_type="IMAGE", image_url=CDN + "photo.jpg")
    statuses(mocked, CONTAINER, "FINISHED")
    threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(message("", media=(make_media("photo.jpg", alt=None),)), job).platform_id == MEDIA_ID


def test_a_permalink_that_cannot_be_read_does_not_fail_a_published_post(adapter, job, mocked):
    create(mocked, media_type="TEXT", text=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    threads_publish(mocked)
    mocked.get(f"{API}/{MEDIA_ID}", match=query(fields="permalink"), status=400,
               json=graph_error(24, 4279009, "The requested resource does not exist", title="Media Not Found",
                                user_msg=f"The media with id {MEDIA_ID} cannot be found."))
    assert adapter.publish(text_post(), job) == Receipt(MEDIA_ID)


def test_whoami_names_the_threads_profile(adapter, mocked):
    mocked.get(f"{API}/me", match=query(fields="username"), json={"username": "pemkotpalembang", "id": USER})
    assert adapter.whoami() == "@pemkotpalembang"


def test_whoami_refuses_a_token_of_another_profile(adapter, mocked):
    mocked.get(f"{API}/me", match=query(fields="username"), json={"username": "dinkes.kota", "id": "9990001112223334"})
    with pytest.raises(ConfigError, match="@dinkes.kota"):
        adapter.whoami()


def test_api_base_replaces_the_threads_host_for_every_request(build, job):
    adapter = build(api_base="http://127.0.0.1:8089")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.post(f"http://127.0.0.1:8089/v1.0/{USER}/threads", match=form(media_type="TEXT", text=TEXT), json={"id": CONTAINER})
        rsps.get(f"http://127.0.0.1:8089/v1.0/{CONTAINER}", match=query(fields="status,error_message"),
                 json={"status": "FINISHED", "id": CONTAINER})
        rsps.post(f"http://127.0.0.1:8089/v1.0/{USER}/threads_publish", match=form(creation_id=CONTAINER), json={"id": MEDIA_ID})
        rsps.get(f"http://127.0.0.1:8089/v1.0/{MEDIA_ID}", match=query(fields="permalink"), json={"permalink": PERMALINK})
        assert adapter.publish(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)


# --- polling -------------------------------------------------------------------------------------


def test_polling_is_bounded_and_a_retry_polls_the_same_container(adapter, mocked, make_media):
    made = create(mocked, media_type="VIDEO", video_url=CDN + "clip.mp4", text=TEXT)
    [busy] = statuses(mocked, CONTAINER, "IN_PROGRESS")
    job = CrashingJob()
    post = message(TEXT, media=(make_media("clip.mp4", alt=None),))
    with pytest.raises(Transient, match="still processing"):
        adapter.publish(post, job)
    assert job.heartbeats == threads.POLL_ATTEMPTS
    mocked.remove(busy)
    statuses(mocked, CONTAINER, "FINISHED")
    publish = threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(post, job.resume()).platform_id == MEDIA_ID
    assert made.call_count == 1 and publish.call_count == 1


def test_a_lost_lease_while_polling_stops_before_anything_is_published(adapter, mocked):
    class Taken(CrashingJob):
        def heartbeat(self) -> None:
            raise LeaseLost("taken over")

    create(mocked, media_type="TEXT", text=TEXT)
    with pytest.raises(LeaseLost):
        adapter.publish(text_post(), Taken())
    assert [c.request.method for c in mocked.calls] == ["POST"]


# --- errors --------------------------------------------------------------------------------------


def case(status: int, body: Any, expected: type[Exception], name: str) -> Any:
    return pytest.param(status, body, expected, id=name)


# PLATFORMS.md (Threads and "At a glance"): auth 190; permanent 2207051, 4279013; transient 1, 2,
# 5xx; rate limits as Graph's. Bodies in the shape Graph sends (see test_graph.graph_error).
THREADS_ERRORS = [
    case(400, graph_error(190, None, "Error validating access token: Session has expired on Tuesday, 24-Nov-26 "
                                     "23:00:00 PST. The current time is Wednesday, 25-Nov-26 01:00:00 PST."),
         AuthExpired, "190 session expired"),
    case(400, graph_error(190, None, "Invalid OAuth access token - Cannot parse access token"), AuthExpired, "190 cannot parse"),
    case(400, graph_error(190, 460, "Error validating access token: The session has been invalidated because the "
                                    "user changed their password or Facebook has changed the session for security reasons."),
         AuthExpired, "190/460 password changed"),
    case(403, graph_error(10, None, "(#10) Application does not have permission for this action"), AuthExpired, "10 permission"),
    case(500, graph_error(1, None, "An unknown error occurred", transient=True), Transient, "1 unknown error"),
    case(500, graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True),
         Transient, "2 service unavailable"),
    case(400, graph_error(4, None, "(#4) Application request limit reached", transient=True), RateLimited, "4 app rate limit"),
    case(400, graph_error(17, None, "(#17) User request limit reached", transient=True), RateLimited, "17 user rate limit"),
    case(400, graph_error(613, None, "(#613) Calls to this api have exceeded the rate limit.", transient=True),
         RateLimited, "613 custom rate limit"),
    # Code 4 alone is a rate limit: the subcode, looked up first, says this is a block instead.
    case(400, graph_error(4, 2207051, "Application request limit reached", title="Action is blocked",
                          user_msg="We restrict certain activity to protect our community. Tell us if you think we made a mistake."),
         Rejected, "4/2207051 restricted"),
    # Only the subcode is documented (PLATFORMS.md); its parent code and wording are not. Code 1
    # (transient on its own) shows that the subcode decides.
    case(400, graph_error(1, 4279013, "The action attempted has been deemed abusive or is otherwise disallowed"),
         Rejected, "4279013 blocked"),
    # As logged by LongevityWorldCup (PR 466) and trypost (PR 280) when publishing too early.
    case(400, graph_error(24, 4279009, "The requested resource does not exist", title="Media Not Found",
                          user_msg=f"The media with id {CONTAINER} cannot be found."),
         Transient, "24/4279009 not visible yet"),
    case(400, graph_error(100, None, "(#100) Invalid parameter"), Rejected, "100 invalid parameter"),
    case(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", Transient, "502 without a Graph body"),
    case(503, "", Transient, "503 empty body"),
]


def answer(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, **({"json": body} if isinstance(body, dict) else {"body": body})}


def refresh(rsps: Any, token: str = TOKEN, **reply: Any) -> Any:
    reply = reply or {"json": {"access_token": NEW, "token_type": "bearer", "expires_in": 5_183_944}}
    return rsps.get("https://graph.threads.net/refresh_access_token",
                    match=[matchers.query_param_matcher({"grant_type": "th_refresh_token", "access_token": token})], **reply)


EXPIRED = graph_error(190, None, "Error validating access token: Session has expired on Tuesday, 24-Nov-26 23:00:00 PST.")


@pytest.mark.parametrize(("status", "body", "expected"), THREADS_ERRORS)
def test_each_threads_error_on_the_first_request_raises_its_typed_error(adapter, job, mocked, status, body, expected):
    mocked.post(f"{API}/{USER}/threads", match=form(media_type="TEXT", text=TEXT), **answer(status, body))
    if expected is AuthExpired:
        refresh(mocked, status=400, json=EXPIRED)  # the one renewal a rejected token earns
    with pytest.raises(expected) as info:
        adapter.publish(text_post(), job)
    assert type(info.value) is expected
    assert info.value.http_status == status
    assert TOKEN not in str(info.value)
    assert "container" not in job.saved


@pytest.mark.parametrize(("status", "body", "expected"), THREADS_ERRORS)
def test_every_threads_error_number_maps_to_its_typed_error_in_the_shared_table(status, body, expected):
    payload = body if isinstance(body, dict) else {}
    error = graph.classify(status, {}, payload, graph.THREADS, text=body if isinstance(body, str) else json.dumps(body))
    assert type(error) is expected
    assert str(error).startswith(f"Threads HTTP {status}")


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_are_classified(adapter, job, mocked, case, raise_, expected):
    mocked.post(f"{API}/{USER}/threads", match=form(media_type="TEXT", text=TEXT), body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(text_post(), job)
    assert TOKEN not in str(info.value)


def test_publishing_too_early_waits_half_a_minute_and_the_retry_publishes_the_same_container(adapter, mocked):
    not_found = graph_error(24, 4279009, "The requested resource does not exist", title="Media Not Found",
                            user_msg=f"The media with id {CONTAINER} cannot be found.")
    made = create(mocked, media_type="TEXT", text=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    refused = threads_publish(mocked, status=400, json=not_found)
    job = CrashingJob()
    with pytest.raises(Transient) as info:
        adapter.publish(text_post(), job)
    assert info.value.retry_after == graph.THREADS_SETTLE_WAIT
    mocked.remove(refused)
    accepted = threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(text_post(), job.resume()).platform_id == MEDIA_ID
    assert made.call_count == 1 and accepted.call_count == 1


def test_a_publish_refused_with_an_error_but_gone_out_is_settled_from_the_container(adapter, mocked):
    # threads-go PR 30: threads_publish answered a 5xx with code 10 while the container was PUBLISHED.
    create(mocked, media_type="TEXT", text=TEXT)
    statuses(mocked, CONTAINER, "FINISHED", "PUBLISHED")
    publish = threads_publish(mocked, status=500, json=graph_error(10, None, "(#10) Application does not have permission for this action"))
    recent(mocked, posted("Another post", media_id="18038697281071500"), posted())
    job = CrashingJob()
    assert adapter.publish(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)
    assert publish.call_count == 1
    assert job.saved["media_id"] == MEDIA_ID


def test_a_daily_cap_at_publish_keeps_the_container_for_the_retry(adapter, mocked):
    made = create(mocked, media_type="TEXT", text=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    capped = threads_publish(mocked, status=400, json=graph_error(4, None, "(#4) Application request limit reached", transient=True))
    job = CrashingJob()
    with pytest.raises(RateLimited):
        adapter.publish(text_post(), job)
    assert job.saved["container"] == CONTAINER
    mocked.remove(capped)
    accepted = threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(text_post(), job.resume()).platform_id == MEDIA_ID
    assert made.call_count == 1 and accepted.call_count == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param("INVALID_ASPEC_RATIO", Rejected, id="INVALID_ASPEC_RATIO (Meta's spelling)"),
        pytest.param("INVALID_DURATION", Rejected, id="INVALID_DURATION"),
        pytest.param("FAILED_DOWNLOADING_VIDEO", Transient, id="FAILED_DOWNLOADING_VIDEO"),
        pytest.param("FAILED_PROCESSING_VIDEO", Transient, id="FAILED_PROCESSING_VIDEO"),
        pytest.param("UNKNOWN", Transient, id="UNKNOWN"),
        pytest.param("", Transient, id="no error message"),
    ],
)
def test_a_container_in_error_is_classified_by_its_message_and_forgotten(adapter, mocked, make_media, error, expected):
    create(mocked, media_type="VIDEO", video_url=CDN + "clip.mp4", text=TEXT)
    statuses(mocked, CONTAINER, "ERROR", error=error)
    job = CrashingJob()
    with pytest.raises(expected) as info:
        adapter.publish(message(TEXT, media=(make_media("clip.mp4", alt=None),)), job)
    assert type(info.value) is expected
    assert (error or "ERROR") in str(info.value)
    assert "container" not in job.saved


def test_a_carousel_item_in_error_forgets_the_whole_carousel(adapter, mocked, make_media):
    create(mocked, CHILD_1, media_type="IMAGE", image_url=CDN + "photo.jpg", is_carousel_item="true")
    create(mocked, CHILD_2, media_type="VIDEO", video_url=CDN + "clip.mp4", is_carousel_item="true")
    statuses(mocked, CHILD_1, "FINISHED")
    statuses(mocked, CHILD_2, "ERROR", error="FAILED_PROCESSING_AUDIO")
    job = CrashingJob()
    post = message(TEXT, media=(make_media("photo.jpg", alt=None), make_media("clip.mp4", alt=None)))
    with pytest.raises(Transient, match="FAILED_PROCESSING_AUDIO"):
        adapter.publish(post, job)
    assert "children" not in job.saved and "container" not in job.saved


def test_media_without_a_public_url_is_rejected_before_anything_is_sent(adapter, job, mocked, make_media):
    with pytest.raises(Rejected, match="no public URL"):
        adapter.publish(message(TEXT, media=(make_media("photo.jpg", url_base=None),)), job)
    assert len(mocked.calls) == 0


# --- interrupted posts ---------------------------------------------------------------------------

# Saves of a single post: 1 container id, 2 media id. See CrashingJob for `committed`.
SINGLE_CRASHES = [
    # crash_at, committed, containers created, the retry finds it PUBLISHED
    pytest.param(1, True, 1, False, id="after the container id is saved"),
    pytest.param(2, True, 1, None, id="after the media id is saved"),
    pytest.param(1, False, 2, False, id="when saving the container id fails"),
    pytest.param(2, False, 1, True, id="when saving the media id fails"),
]


@pytest.mark.parametrize("kind", ["text", "image"])
@pytest.mark.parametrize(("crash_at", "committed", "containers", "published"), SINGLE_CRASHES)
def test_a_post_stopped_at_any_step_and_resumed_publishes_exactly_once(
    adapter, mocked, make_media, kind, crash_at, committed, containers, published
):
    if kind == "text":
        post, fields, listed = text_post(), {"media_type": "TEXT", "text": TEXT}, "TEXT_POST"
    else:
        post, fields, listed = photo(make_media), IMAGE_FIELDS, "IMAGE"
    made = create(mocked, **fields)
    [finished] = statuses(mocked, CONTAINER, "FINISHED")
    publish = threads_publish(mocked)
    job = CrashingJob(crash_at, committed=committed)
    with pytest.raises(LeaseLost):
        adapter.publish(post, job)
    if published:
        mocked.remove(finished)
        statuses(mocked, CONTAINER, "PUBLISHED")
        recent(mocked, posted(media_type=listed))
    else:
        permalink(mocked)
    assert adapter.publish(post, job.resume()) == Receipt(MEDIA_ID, PERMALINK)
    assert made.call_count == containers
    assert publish.call_count == 1
    assert job.saved["media_id"] == MEDIA_ID


# Saves of a two-image carousel: 1 first item, 2 second item, 3 parent container, 4 media id.
CAROUSEL_CRASHES = [
    # crash_at, committed, (first item, second item, parent) creations, the retry finds it PUBLISHED
    pytest.param(1, True, (1, 1, 1), False, id="after the first item is saved"),
    pytest.param(2, True, (1, 1, 1), False, id="after the second item is saved"),
    pytest.param(3, True, (1, 1, 1), False, id="after the parent container is saved"),
    pytest.param(4, True, (1, 1, 1), False, id="after the media id is saved"),
    pytest.param(1, False, (2, 1, 1), False, id="when saving the first item fails"),
    pytest.param(3, False, (1, 1, 2), False, id="when saving the parent container fails"),
    pytest.param(4, False, (1, 1, 1), True, id="when saving the media id fails"),
]


@pytest.mark.parametrize(("crash_at", "committed", "creates", "published"), CAROUSEL_CRASHES)
def test_a_carousel_stopped_at_any_step_and_resumed_publishes_exactly_once(
    adapter, mocked, make_media, crash_at, committed, creates, published
):
    first = create(mocked, CHILD_1, media_type="IMAGE", image_url=CDN + "photo.jpg", alt_text="alt text", is_carousel_item="true")
    second = create(mocked, CHILD_2, media_type="IMAGE", image_url=CDN + "second.jpg", alt_text="alt text", is_carousel_item="true")
    parent = create(mocked, CONTAINER, media_type="CAROUSEL", children=f"{CHILD_1},{CHILD_2}", text=TEXT)
    statuses(mocked, CHILD_1, "FINISHED")
    statuses(mocked, CHILD_2, "FINISHED")
    [finished] = statuses(mocked, CONTAINER, "FINISHED")
    publish = threads_publish(mocked)
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("second.jpg")))
    job = CrashingJob(crash_at, committed=committed)
    with pytest.raises(LeaseLost):
        adapter.publish(post, job)
    if published:
        mocked.remove(finished)
        statuses(mocked, CONTAINER, "PUBLISHED")
        recent(mocked, posted(media_type="CAROUSEL_ALBUM"))
    else:
        permalink(mocked)
    assert adapter.publish(post, job.resume()) == Receipt(MEDIA_ID, PERMALINK)
    assert (first.call_count, second.call_count, parent.call_count) == creates
    assert publish.call_count == 1


def test_settling_picks_the_post_of_this_delivery_among_newer_ones_with_the_same_text(adapter, mocked):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent(mocked, posted(media_id="18038697281071599", at=NOW + 600), posted(media_type="IMAGE", media_id="18038697281071598"),
           posted(at=NOW + 20))
    assert adapter.publish(text_post(), job).platform_id == MEDIA_ID


def test_a_published_container_whose_post_cannot_be_named_still_settles(adapter, mocked):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent(mocked, posted("A text edited since"))
    assert adapter.publish(text_post(), job) == Receipt(CONTAINER)


def test_an_expired_container_on_a_retry_is_created_again(adapter, mocked):
    job = CrashingJob(attempt=2)
    job.state = {"container": "17889615691921000", "since": NOW - 90_000}
    statuses(mocked, "17889615691921000", "EXPIRED")
    made = create(mocked, media_type="TEXT", text=TEXT)
    statuses(mocked, CONTAINER, "FINISHED")
    publish = threads_publish(mocked)
    permalink(mocked)
    assert adapter.publish(text_post(), job).platform_id == MEDIA_ID
    assert made.call_count == 1 and publish.call_count == 1
    assert job.saved["container"] == CONTAINER


def test_an_expired_carousel_item_on_a_retry_starts_the_carousel_over(adapter, mocked, make_media):
    job = CrashingJob(attempt=2)
    job.state = {"children": [{"file": "photo.jpg", "id": CHILD_1}], "since": NOW - 90_000}
    statuses(mocked, CHILD_1, "EXPIRED")
    create(mocked, CHILD_2, media_type="IMAGE", image_url=CDN + "second.jpg", alt_text="alt text", is_carousel_item="true")
    post = message(TEXT, media=(make_media("photo.jpg"), make_media("second.jpg")))
    with pytest.raises(Transient, match="expire"):
        adapter.publish(post, job)
    assert "children" not in job.saved


# --- lookup after a crash ------------------------------------------------------------------------


def test_lookup_says_not_there_without_asking_when_no_container_was_saved(adapter, job, mocked):
    assert adapter.lookup(text_post(), job) is None
    assert len(mocked.calls) == 0


def test_lookup_finds_a_post_whose_publish_answer_was_lost(adapter, mocked):
    create(mocked, media_type="TEXT", text=TEXT)
    [finished] = statuses(mocked, CONTAINER, "FINISHED")
    publish = threads_publish(mocked, body=requests.ReadTimeout("read timed out"))
    job = CrashingJob()
    with pytest.raises(MaybeSent):
        adapter.publish(text_post(), job)
    mocked.remove(finished)
    statuses(mocked, CONTAINER, "PUBLISHED")
    recent(mocked, posted())
    assert adapter.lookup(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)
    assert job.saved["media_id"] == MEDIA_ID
    assert publish.call_count == 1


def test_lookup_of_a_finished_but_unpublished_container_says_not_there(adapter, mocked):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "FINISHED")
    assert adapter.lookup(text_post(), job) is None


def test_lookup_of_a_saved_media_id_answers_with_its_permalink(adapter, mocked):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "media_id": MEDIA_ID}
    permalink(mocked)
    assert adapter.lookup(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)


# --- the long-lived token ------------------------------------------------------------------------

NEW = "THAANew-secret-refreshed-threads-token"


def who(rsps: Any, token: str, **reply: Any) -> Any:
    reply = reply or {"json": {"username": "pemkotpalembang", "id": USER}}
    return rsps.get(f"{API}/me", match=query(token, fields="username"), **reply)


def test_a_token_near_its_expiry_is_refreshed_kept_private_and_used_by_a_new_adapter(build, mocked):
    adapter = build(kept=False)
    adapter.keep_token(TOKEN, NOW + 5 * DAY)
    refreshed = refresh(mocked)
    who(mocked, NEW)
    assert adapter.whoami() == "@pemkotpalembang"
    kept = adapter.tokens.path
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    record = json.loads(kept.read_text())
    assert record["access_token"] == NEW and record["expires_at"] == NOW + 5_183_944
    # A restarted daemon uses the kept token and does not refresh it again for weeks.
    build(kept=False).whoami()
    assert refreshed.call_count == 1


def test_a_token_just_pasted_in_is_refreshed_at_once_to_learn_its_expiry(build, mocked):
    refresh(mocked)
    who(mocked, NEW)
    adapter = build(kept=False)
    adapter.whoami()
    assert json.loads(adapter.tokens.path.read_text())["expires_at"] == NOW + 5_183_944


def test_a_token_with_weeks_left_is_not_refreshed(build, mocked):
    adapter = build(kept=False)
    adapter.keep_token(TOKEN, NOW + threads.REFRESH_BEFORE + DAY)
    who(mocked, TOKEN)
    adapter.whoami()


def test_a_refresh_that_fails_keeps_the_current_token_and_is_tried_again_a_day_later(build, mocked):
    adapter = build(kept=False)
    refused = refresh(mocked, status=400, json=graph_error(190, None, "Session has not been valid for 24 hours"))
    who(mocked, TOKEN)
    adapter.whoami()
    adapter.whoami()
    assert refused.call_count == 1
    adapter.clock = lambda: float(NOW + threads.REFRESH_RETRY + 1)
    adapter.whoami()
    assert refused.call_count == 2


def test_a_refresh_lost_in_transit_keeps_the_current_token(build, mocked):
    adapter = build(kept=False)
    refresh(mocked, body=requests.ConnectTimeout("connect timed out"))
    who(mocked, TOKEN)
    assert adapter.whoami() == "@pemkotpalembang"


def test_a_rejected_token_is_refreshed_once_and_the_request_sent_again(adapter, job, mocked):
    mocked.post(f"{API}/{USER}/threads", match=form(media_type="TEXT", text=TEXT), status=400, json=EXPIRED)
    refresh(mocked)
    made = create(mocked, token=NEW, media_type="TEXT", text=TEXT)
    mocked.get(f"{API}/{CONTAINER}", match=query(NEW, fields="status,error_message"), json={"status": "FINISHED", "id": CONTAINER})
    publish = threads_publish(mocked, token=NEW)
    permalink(mocked, token=NEW)
    assert adapter.publish(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)
    assert made.call_count == 1 and publish.call_count == 1
    assert json.loads(adapter.tokens.path.read_text())["access_token"] == NEW


def test_a_token_rejected_at_publish_is_renewed_and_publish_resent_only_after_the_container_shows_it_did_not_go_out(adapter, mocked):
    job = CrashingJob()
    job.state = {"container": CONTAINER, "since": NOW}
    statuses(mocked, CONTAINER, "FINISHED")  # the poll, then the check after the rejection
    refused = threads_publish(mocked, status=400, json=EXPIRED)
    refresh(mocked)
    accepted = threads_publish(mocked, token=NEW)
    permalink(mocked, token=NEW)
    assert adapter.publish(text_post(), job) == Receipt(MEDIA_ID, PERMALINK)
    assert refused.call_count == 1 and accepted.call_count == 1
    methods = [(c.request.method, c.request.url.split("?")[0].rsplit("/", 1)[-1]) for c in mocked.calls]
    assert methods == [
        ("GET", CONTAINER), ("POST", "threads_publish"), ("GET", CONTAINER),  # rejected, and not out
        ("GET", "refresh_access_token"), ("POST", "threads_publish"), ("GET", MEDIA_ID),
    ]


def test_a_token_rejected_again_after_the_refresh_is_auth_expired_without_either_token_in_the_message(adapter, job, mocked):
    mocked.post(f"{API}/{USER}/threads", match=form(media_type="TEXT", text=TEXT), status=400,
                json=graph_error(190, None, f"Malformed access token {TOKEN}"))
    refresh(mocked)
    mocked.post(f"{API}/{USER}/threads", match=form(NEW, media_type="TEXT", text=TEXT), status=400,
                json=graph_error(190, None, f"Malformed access token {NEW}"))
    with pytest.raises(AuthExpired) as info:
        adapter.publish(text_post(), job)
    assert NEW not in str(info.value) and TOKEN not in str(info.value)


def test_a_token_refreshed_by_another_process_is_picked_up_without_a_refresh(build, mocked):
    daemon, cli = build(), build()
    cli.keep_token(NEW, NOW + 59 * DAY)  # `siar accounts --verify` refreshed it meanwhile
    who(mocked, NEW)
    assert daemon.whoami() == "@pemkotpalembang"


def test_a_new_token_in_the_configuration_replaces_the_kept_one(build, mocked):
    build(token="THAAOld-configured-token").keep_token("THAAStale-kept-token", NOW + 40 * DAY)
    refresh(mocked)  # with the configured token, whose expiry is not known yet
    who(mocked, NEW)
    build(kept=False).whoami()


# --- the offline check and the count -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        pytest.param("Selamat pagi, Palembang!", 24, id="plain Indonesian"),
        pytest.param("Peringatan HUT ke-81 RI — Dirgahayu Republik Indonesia!", 55, id="a dash counts one, not its 3 bytes"),
        pytest.param("Pelayanan KTP-el di Kecamatan Ilir Barat I: Senin–Jumat, 08.00–15.00 WIB", 72, id="en dashes and digits"),
        pytest.param("Batik 👍", 10, id="an emoji counts its 4 bytes"),
        pytest.param("❤️", 6, id="an emoji with its variation selector"),
        pytest.param("👍🏽", 8, id="an emoji with a skin tone"),
        pytest.param("👨‍👩‍👧", 18, id="a joined family emoji counts all its bytes"),
        pytest.param("Dirgahayu 🇮🇩!", 19, id="a flag is two regional indicators"),
        pytest.param("1️⃣ Daftar", 14, id="a keycap"),
        pytest.param("Gotong royong 🤝🏽🙏", 14 + 8 + 4, id="Indonesian text with emoji"),
        pytest.param("", 0, id="nothing"),
    ],
)
def test_count_text_counts_characters_and_emoji_as_their_utf8_bytes(adapter, text, length):
    assert adapter.count_text(text) == length


def sized(media_dir: Any, name: str, data: bytes) -> Media:
    path = media_files.write(media_dir, name, data)
    return Media(file=name, path=path, url=CDN + name)


def test_a_clean_post_has_no_problems(adapter, make_media):
    assert adapter.check(message(TEXT, media=(make_media("photo.jpg"), make_media("photo.png"), make_media("clip.mp4")))) == []


def test_five_hundred_counted_characters_fit_and_one_more_does_not(adapter):
    assert adapter.check(message("a" * 496 + "👍")) == []
    [problem] = adapter.check(message("a" * 497 + "👍"))
    assert problem.field == "text" and "501" in problem.message and "500" in problem.message


@pytest.mark.parametrize(
    ("build_message", "field", "severity", "says"),
    [
        pytest.param(lambda mk, d: message("🇮🇩" * 63), "text", "error", ["504", "500"], id="63 flags are 504"),
        pytest.param(lambda mk, d: message("x" * 480, link="https://example.go.id/hari-guru"),
                     "text", "error", ["513", "500"], id="a link counts inside the text"),
        pytest.param(lambda mk, d: message(""), "text", "error", ["empty"], id="nothing to post"),
        pytest.param(lambda mk, d: message("#HariGuru #Palembang #Sumsel"), "text", "warning", ["3 hashtags", "topic tag"],
                     id="three hashtags"),
        pytest.param(lambda mk, d: message(TEXT, media=(mk("photo.jpg", url_base=None),)),
                     "media[0]", "error", ["photo.jpg", "no public URL", "media_url"], id="media without a public URL"),
        pytest.param(lambda mk, d: message(TEXT, media=(sized(d, "anim.gif", b"GIF89a" + b"\x00" * 10),)),
                     "media[0]", "error", ["image/gif", "JPEG or PNG"], id="a GIF"),
        pytest.param(lambda mk, d: message(TEXT, media=(sized(d, "clip.webm", b"\x1aE\xdf\xa3" + b"\x00" * 10),)),
                     "media[0]", "error", ["video/webm", "MP4 or MOV"], id="a WebM video"),
        pytest.param(lambda mk, d: message(TEXT, media=(sized(d, "big.jpg", media_files.jpeg_bytes(pad_to=8 * 1024 * 1024 + 1)),)),
                     "media[0]", "error", ["8388609", "8388608"], id="JPEG over 8 MB"),
        pytest.param(lambda mk, d: message(TEXT, media=tuple(mk("photo.jpg") for _ in range(21))),
                     "media", "error", ["21", "20"], id="21 carousel items"),
    ],
)
def test_check_reports_each_limit_with_the_limit_and_the_counted_value(
    adapter, make_media, media_dir, build_message, field, severity, says
):
    problems = [p for p in adapter.check(build_message(make_media, media_dir)) if p.field == field]
    assert problems
    assert problems[0].severity == severity
    assert all(word in problems[0].message for word in says), problems[0].message


def test_twenty_carousel_items_are_allowed(adapter, make_media):
    assert adapter.check(message(TEXT, media=tuple(make_media("photo.jpg") for _ in range(20)))) == []


# --- the account ---------------------------------------------------------------------------------


def test_an_account_without_its_user_id_is_a_configuration_error(make_adapter):
    with pytest.raises(ConfigError, match="user_id"):
        make_adapter(ThreadsAdapter, token=TOKEN)
    problems = ThreadsAdapter.account_problems({"platform": "threads", "token": TOKEN, "graph_version": "v1"})
    assert sorted(p.field for p in problems) == ["graph_version", "user_id"]


def test_the_threads_version_defaults_to_v1_and_the_token_is_a_secret(adapter):
    assert adapter.graph_url(f"{USER}/threads") == f"{API}/{USER}/threads"
    assert ThreadsAdapter.secrets == ("token",)
