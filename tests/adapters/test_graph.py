"""The shared Graph plumbing: every documented error number, usage headers, redaction, versions.

The error tables here are also run end to end through the Facebook and Instagram adapters
(`FACEBOOK_ERRORS`, `INSTAGRAM_ERRORS`), with the bodies and HTTP statuses Meta sends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from adapters import graph
from adapters.base import AuthExpired, ConfigError, LeaseLost, MemoryJob, RateLimited, Rejected, Transient
from adapters.facebook import FacebookAdapter
from adapters.graph import ContainerExpired, Duplicate

TRACE = "AbCdEfGhIjKlMnOpQrStUv1"


def graph_error(
    code: int, subcode: int | None = None, message: str = "", *, title: str = "", user_msg: str = "",
    transient: bool = False,
) -> dict[str, Any]:
    """An error body in the shape Graph sends: {"error": {message, type, code, error_subcode, …}}."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = transient
    if title:
        error["error_user_title"] = title
        error["error_user_msg"] = user_msg
    error["fbtrace_id"] = TRACE
    return {"error": error}


def case(status: int, body: Any, expected: type[Exception], name: str) -> Any:
    return pytest.param(status, body, expected, id=name)


_AUTH_SUBCODES = [
    (458, "Error validating access token: The user has not authorized application 123456789."),
    (459, "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given."),
    (460, "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."),
    (463, "Error validating access token: Session has expired on Tuesday, 24-Nov-26 23:00:00 PST. The current time is Wednesday, 25-Nov-26 01:00:00 PST."),
    (464, "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed user."),
    (467, "Error validating access token: The session is invalid because the user logged out."),
]

# Codes Graph shares across platforms (PLATFORMS.md, Facebook section and "At a glance").
COMMON_ERRORS = [
    case(500, graph_error(1, None, "An unknown error occurred", transient=True), Transient, "1 unknown error"),
    case(500, graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True), Transient, "2 service unavailable"),
    case(400, graph_error(4, None, "(#4) Application request limit reached", transient=True), RateLimited, "4 app rate limit"),
    case(400, graph_error(17, None, "(#17) User request limit reached", transient=True), RateLimited, "17 user rate limit"),
    case(400, graph_error(32, None, "(#32) Page request limit reached", transient=True), RateLimited, "32 page rate limit"),
    case(400, graph_error(613, None, "(#613) Calls to this api have exceeded the rate limit.", transient=True), RateLimited, "613 custom rate limit"),
    *[
        case(400, graph_error(code, None, f"(#{code}) There have been too many calls from this Page. Wait a bit and try again.", transient=True), RateLimited, f"{code} business use case rate limit")
        for code in [*range(80000, 80010), 80014]
    ],
    case(400, graph_error(341, None, "(#341) Application limit reached", transient=True), Transient, "341 application limit"),
    case(400, graph_error(368, None, "(#368) The action attempted has been deemed abusive or is otherwise disallowed"), Transient, "368 temporarily blocked"),
    case(400, graph_error(190, None, "Invalid OAuth access token - Cannot parse access token"), AuthExpired, "190 invalid token"),
    *[case(400, graph_error(190, sub, text), AuthExpired, f"190/{sub} token") for sub, text in _AUTH_SUBCODES],
    case(400, graph_error(102, None, "Session key invalid or no longer valid"), AuthExpired, "102 session expired"),
    case(403, graph_error(10, None, "(#10) Application does not have permission for this action"), AuthExpired, "10 permission"),
    case(403, graph_error(200, None, "(#200) The user hasn't authorized the application to perform this action"), AuthExpired, "200 permission"),
    case(403, graph_error(230, None, "(#230) Requires pages_manage_posts permission"), AuthExpired, "230 permission"),
    case(403, graph_error(299, None, "(#299) Requires extended permission: pages_read_engagement"), AuthExpired, "299 permission"),
    case(400, graph_error(100, None, "(#100) Invalid parameter"), Rejected, "100 invalid parameter"),
    case(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", Transient, "502 without a Graph body"),
    case(503, "", Transient, "503 empty body"),
]

FACEBOOK_ERRORS = [
    *COMMON_ERRORS,
    case(400, graph_error(506, 1366051, "Duplicate status message", title="Duplicate Status Update",
                          user_msg="This status update is identical to the last one you posted. Try posting something different, or delete your previous update."),
         Duplicate, "506/1366051 duplicate"),
    case(400, graph_error(506, None, "(#506) Duplicate status message"), Duplicate, "506 duplicate"),
    case(400, graph_error(1609005, None, "Error Posting Link"), Rejected, "1609005 link fetch"),
    case(400, graph_error(100, 1609005, "(#100) Error posting link", title="Error Posting Link",
                          user_msg="There was a problem scraping data from the provided link."),
         Rejected, "100/1609005 link fetch"),
    case(400, graph_error(368, 1346003, "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
                          title="Content Not Allowed", user_msg="This content isn't allowed on Facebook."),
         Rejected, "368/1346003 policy"),
    case(400, graph_error(368, 1404102, "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
                          title="Blocked", user_msg="Your post couldn't be shared because it goes against our Community Standards."),
         Rejected, "368/1404102 policy"),
    case(400, graph_error(100, 1366046, "(#100) Invalid image", title="Photo Too Large",
                          user_msg="The photo you uploaded is too large. Please upload a photo smaller than 4MB."),
         Rejected, "100/1366046 photo too large"),
    case(400, graph_error(368, 1404078, "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
                          title="Page Publishing Authorization Required",
                          user_msg="To publish for this Page, an admin must complete Page Publishing Authorization."),
         AuthExpired, "368/1404078 page publishing authorization"),
    case(400, graph_error(368, 1390008, "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
                          title="You Can't Use This Feature Right Now",
                          user_msg="It looks like you were misusing this feature by going too fast. You've been temporarily blocked from using it."),
         RateLimited, "368/1390008 posting too fast"),
]

# Instagram's table (Meta's "Error Codes" reference: HTTP 400, code / subcode).
INSTAGRAM_ERRORS = [
    case(400, graph_error(190, None, "Error validating access token: Session has expired on Tuesday, 24-Nov-26 23:00:00 PST."), AuthExpired, "190 token"),
    case(400, graph_error(4, None, "(#4) Application request limit reached", transient=True), RateLimited, "4 app rate limit"),
    case(500, graph_error(2, None, "An unexpected error has occurred. Please retry your request later.", transient=True), Transient, "2 service unavailable"),
    case(400, graph_error(-2, 2207003, "It takes too long to download the media.", transient=True), Transient, "2207003 download timeout"),
    case(400, graph_error(-1, 2207032, "Create media fail, please try to re-create media", transient=True), Transient, "2207032 create failed"),
    case(400, graph_error(9004, 2207052, "Media could not be fetched from this uri"), Transient, "2207052 fetch failed"),
    case(400, graph_error(-1, 2207053, "unknown upload error", transient=True), Transient, "2207053 unknown upload error"),
    case(400, graph_error(-1, 2207082, "Instagram server error. Try again.", transient=True), Transient, "2207082 try again"),
    case(400, graph_error(9007, 2207027, "Media ID is not available", title="Media Not Ready For Publishing",
                          user_msg="The media is not ready for publishing, please wait for a moment"), Transient, "2207027 not ready"),
    case(400, graph_error(36000, 2207004, "The image size is too large.", title="Image size too large",
                          user_msg="The image is too large to download. It should be less than 8 MiB."), Rejected, "2207004 too large"),
    case(400, graph_error(36001, 2207005, "The image format is not supported.", title="Unsupported format",
                          user_msg="The image format is not supported. Supported formats are: JPEG"), Rejected, "2207005 format"),
    case(400, graph_error(36003, 2207009, "The aspect ratio is not supported.", title="Invalid aspect ratio",
                          user_msg="The submitted image with aspect ratio ('719/194',) cannot be published. Please submit an image with a valid aspect ratio."), Rejected, "2207009 aspect"),
    case(400, graph_error(36003, None, "The aspect ratio is not supported."), Rejected, "36003 aspect"),
    case(400, graph_error(36004, 2207010, "The caption is too long.", title="Caption too long",
                          user_msg="The caption was too long. It should be less than 2200 characters."), Rejected, "2207010 caption too long"),
    case(400, graph_error(352, 2207026, "The video format is not supported. Please check spec for supported format"), Rejected, "2207026 video format"),
    case(400, graph_error(100, 2207028, "Carousels need at least 2 photos/videos and no more than 10 photos/videos."), Rejected, "2207028 carousel"),
    case(400, graph_error(25, 2207050, "The Instagram account is restricted.", title="Restricted account",
                          user_msg="The app user's Instagram Professional account is inactive, checkpointed, or restricted."), Rejected, "2207050 restricted"),
    # Code 4 alone is a rate limit: the subcode, looked up first, says this is a block instead.
    case(400, graph_error(4, 2207051, "Application request limit reached", title="Action is blocked",
                          user_msg="We restrict certain activity to protect our community. Tell us if you think we made a mistake."), Rejected, "4/2207051 restricted"),
    case(400, graph_error(9, 2207042, "Application request limit reached", title="Maximum number of posts reached",
                          user_msg="You reached maximum number of posts that is allowed to be published by Content Publishing API."), RateLimited, "9/2207042 daily cap"),
    case(400, graph_error(-2, 2207020, "The media you are trying to access has expired. Please try to upload again."), ContainerExpired, "2207020 container expired"),
]


def classify(status: int, body: Any, table: graph.ErrorTable) -> Exception:
    """As the adapters call it: the parsed JSON (if any) and the raw text of the answer."""
    payload = body if isinstance(body, dict) else {}
    text = body if isinstance(body, str) else json.dumps(body)
    return graph.classify(status, {}, payload, table, text=text)


@pytest.mark.parametrize(("status", "body", "expected"), FACEBOOK_ERRORS)
def test_every_facebook_error_number_maps_to_its_typed_error(status, body, expected):
    error = classify(status, body, graph.FACEBOOK)
    assert type(error) is expected
    assert error.http_status == status


@pytest.mark.parametrize(("status", "body", "expected"), INSTAGRAM_ERRORS)
def test_every_instagram_error_number_maps_to_its_typed_error(status, body, expected):
    error = classify(status, body, graph.INSTAGRAM)
    assert type(error) is expected
    assert error.http_status == status


def test_the_error_message_names_the_platform_the_numbers_and_meta_s_own_words():
    body = graph_error(506, 1366051, "Duplicate status message", title="Duplicate Status Update",
                       user_msg="This status update is identical to the last one you posted.")
    error = graph.classify(400, {}, body, graph.FACEBOOK)
    assert str(error) == (
        "Facebook HTTP 400 error 506/1366051 (duplicate of a recent post): "
        f"This status update is identical to the last one you posted. [fbtrace_id {TRACE}]"
    )


def test_a_subcode_decides_before_its_code():
    too_fast = graph.classify(400, {}, graph_error(368, 1390008), graph.FACEBOOK)
    blocked = graph.classify(400, {}, graph_error(368), graph.FACEBOOK)
    assert type(too_fast) is RateLimited and type(blocked) is Transient


def test_posting_too_fast_waits_an_hour_and_the_daily_cap_waits_hours():
    too_fast = graph.classify(400, {}, graph_error(368, 1390008), graph.FACEBOOK)
    capped = graph.classify(400, {}, graph_error(9, 2207042), graph.INSTAGRAM)
    assert isinstance(too_fast, RateLimited) and too_fast.retry_after == graph.POSTING_TOO_FAST_WAIT
    assert isinstance(capped, RateLimited) and capped.retry_after == graph.DAILY_CAP_WAIT


def test_an_unknown_number_goes_by_http_status_and_is_transient():
    assert type(graph.classify(500, {}, graph_error(987654), graph.FACEBOOK)) is Transient
    assert type(graph.classify(400, {}, graph_error(987654, transient=True), graph.FACEBOOK)) is Transient
    assert type(graph.classify(429, {}, {}, graph.FACEBOOK)) is RateLimited
    assert type(graph.classify(401, {}, {}, graph.FACEBOOK)) is AuthExpired
    assert type(graph.classify(400, {}, graph_error(987654), graph.FACEBOOK)) is Rejected


def test_threads_can_build_its_table_on_the_shared_codes():
    threads = graph.GRAPH.extend("Threads", subcodes={4279013: graph.Rule(graph.Outcome.REJECTED, "policy")})
    assert type(graph.classify(400, {}, graph_error(100, 4279013), threads)) is Rejected
    assert type(graph.classify(400, {}, graph_error(190), threads)) is AuthExpired
    assert str(graph.classify(400, {}, graph_error(100), threads)).startswith("Threads HTTP 400")


# --- usage headers -------------------------------------------------------------------------------


def business_usage(call_count: int, minutes: int, kind: str = "pages") -> dict[str, str]:
    usage = {"1234567890": [{"type": kind, "call_count": call_count, "total_cputime": 12, "total_time": 14,
                             "estimated_time_to_regain_access": minutes}]}
    return {"X-Business-Use-Case-Usage": json.dumps(usage)}


def app_usage(call_count: int, cputime: int = 5, time_: int = 5) -> dict[str, str]:
    return {"X-App-Usage": json.dumps({"call_count": call_count, "total_cputime": cputime, "total_time": time_})}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({}, None, id="no headers"),
        pytest.param(app_usage(28), None, id="app usage low"),
        pytest.param(app_usage(12, cputime=91), graph.NEAR_LIMIT_WAIT, id="app cpu time near the limit"),
        pytest.param(app_usage(100), graph.AT_LIMIT_WAIT, id="app usage at the limit"),
        pytest.param(business_usage(40, 0), None, id="business usage low"),
        pytest.param(business_usage(100, 0), graph.AT_LIMIT_WAIT, id="business usage full without an estimate"),
        pytest.param(business_usage(100, 7), 420.0, id="business usage with an estimate in minutes"),
        pytest.param({**app_usage(100), **business_usage(100, 2)}, 120.0, id="meta's estimate wins"),
        pytest.param({"X-App-Usage": "not json"}, None, id="malformed header"),
    ],
)
def test_usage_headers_give_the_wait_before_meta_throttles(headers, wait):
    assert graph.usage_wait(headers) == wait


def test_a_rate_limit_waits_as_long_as_the_business_usage_header_says():
    error = graph.classify(400, business_usage(100, 9), graph_error(80001), graph.FACEBOOK)
    assert isinstance(error, RateLimited) and error.retry_after == 9 * 60


def test_a_rate_limit_without_headers_leaves_the_wait_to_the_dispatcher():
    error = graph.classify(400, {}, graph_error(4), graph.FACEBOOK)
    assert isinstance(error, RateLimited) and error.retry_after is None


# --- secrets -------------------------------------------------------------------------------------

TOKEN = "EAAGm0PX4ZCpsBAJ-secret-page-token"


def test_a_token_echoed_by_graph_never_reaches_the_error_message():
    body = graph_error(190, None, f"Malformed access token {TOKEN}")
    error = graph.classify(400, {}, body, graph.FACEBOOK, secrets=[TOKEN])
    assert TOKEN not in str(error) and "***" in str(error)


def test_an_access_token_query_parameter_in_any_text_is_masked():
    assert graph.redact("GET /v21.0/me?fields=id&access_token=abc123&x=1") == "GET /v21.0/me?fields=id&access_token=***&x=1"


# --- the adapter base ----------------------------------------------------------------------------


def facebook(**account: Any) -> FacebookAdapter:
    return FacebookAdapter({"name": "fb", "page_id": "1234567890", "token": TOKEN, **account}, requests.Session())


def test_the_graph_version_defaults_to_v21_and_an_account_may_choose_another():
    assert facebook().graph_url("1234567890/feed") == "https://graph.facebook.com/v21.0/1234567890/feed"
    assert facebook(graph_version="v23.0").graph_url("me") == "https://graph.facebook.com/v23.0/me"


def test_api_base_replaces_every_graph_host():
    adapter = facebook(api_base="http://127.0.0.1:8080")
    assert adapter.graph_url("1234567890/feed") == "http://127.0.0.1:8080/v21.0/1234567890/feed"
    assert adapter.graph_url("1/videos", "https://graph-video.facebook.com") == "http://127.0.0.1:8080/v21.0/1/videos"


def test_a_malformed_graph_version_is_a_configuration_error():
    with pytest.raises(ConfigError):
        facebook(graph_version="21")
    problems = FacebookAdapter.account_problems({"platform": "facebook", "page_id": "1", "token": "t", "graph_version": "latest"})
    assert [p.field for p in problems] == ["graph_version"]


def test_an_account_without_its_token_is_a_configuration_error():
    with pytest.raises(ConfigError, match="token"):
        FacebookAdapter({"page_id": "1"}, requests.Session())


@responses.activate
def test_high_usage_on_one_answer_holds_the_next_call_without_sending_it():
    adapter = facebook()
    now = [1_800_000_000.0]
    adapter.clock = lambda: now[0]
    responses.get(
        "https://graph.facebook.com/v21.0/1234567890",
        match=[matchers.query_param_matcher({"fields": "name", "access_token": TOKEN})],
        json={"name": "Pemkot Palembang", "id": "1234567890"},
        headers=business_usage(96, 3),
    )
    assert adapter.whoami() == "Pemkot Palembang (1234567890)"
    with pytest.raises(RateLimited) as info:
        adapter.whoami()
    assert info.value.retry_after == pytest.approx(180)
    assert len(responses.calls) == 1
    now[0] += 181
    responses.get(
        "https://graph.facebook.com/v21.0/1234567890",
        match=[matchers.query_param_matcher({"fields": "name", "access_token": TOKEN})],
        json={"name": "Pemkot Palembang", "id": "1234567890"},
    )
    assert adapter.whoami() == "Pemkot Palembang (1234567890)"


def test_saved_item_ids_are_reused_only_while_the_files_still_match(make_media):
    saved = [{"file": "photo.jpg", "id": "501"}, {"file": "second.jpg", "id": "502"}]
    same = (make_media("photo.jpg"), make_media("second.jpg"))
    edited = (make_media("photo.jpg"), make_media("clip.mp4"), make_media("second.jpg"))
    assert graph.still_valid(saved, same) == saved
    assert graph.still_valid(saved, edited) == saved[:1]
    assert graph.still_valid(None, same) == []


def test_checkpoint_keeps_what_was_saved_and_drops_what_is_named():
    job = MemoryJob(key="k", state={"since": 1, "container": "c1", "children": []})
    graph.checkpoint(job, drop=("container", "children"), media_id="m1")
    assert job.saved == {"since": 1, "media_id": "m1"}


# --- a job that stops where a crash would ------------------------------------------------------


class CrashingJob(MemoryJob):
    """A job whose `crash_at`-th save stops the attempt, as a crash or a lost lease would.

    `committed`: the save reached the database before the stop (a kill right after the commit);
    otherwise it did not (a lost lease: `save` raises and nothing is kept).
    """

    def __init__(self, crash_at: int | None = None, *, committed: bool = True, attempt: int = 1) -> None:
        super().__init__(key="k-0123456789abcdef0123456789abcdef", attempt=attempt)
        self.crash_at = crash_at
        self.committed = committed
        self.saves = 0
        self.heartbeats = 0

    def save(self, state: Any) -> None:
        self.saves += 1
        if self.saves == self.crash_at:
            if self.committed:
                super().save(state)
            raise LeaseLost("stopped here")
        super().save(state)

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def resume(self) -> CrashingJob:
        """The next attempt of the same delivery: what was saved, and no more crashing."""
        self.crash_at = None
        self.attempt += 1
        return self
