"""The LinkedIn adapter against the Posts and Images APIs' real answers, mocked with `responses`.

Every mocked request checks method, path, body and the three headers LinkedIn's versioned API
requires; uploads are checked byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from responses import matchers

from adapters.base import AuthExpired, ConfigError, MaybeSent, RateLimited, Receipt, Rejected, Transient
from adapters.linkedin import (
    DEFAULT_VERSION,
    RESERVED,
    LinkedInAdapter,
    escape_little,
    unescape_little,
)
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES

TOKEN = "AQXsiarTestLinkedInToken-9f8e7d6c5b4a3210zyxw"
AUTHOR = "urn:li:organization:12345678"
API = "https://api.linkedin.com"
POSTS = f"{API}/rest/posts"
IMAGES = f"{API}/rest/images"
SHARE = "urn:li:share:7266712345678901234"
UGC = "urn:li:ugcPost:7266712345678905678"


def upload_url(image_id: str) -> str:
    return (
        f"https://www.linkedin.com/dms-uploads/sp/v2/{image_id}/uploaded-image/0"
        "?ca=vector_feedshare&cn=uploads&iri=B01-77&sync=0&v=beta&ut=2xKq9siarTest"
    )


def initialized(image_id: str) -> dict[str, Any]:
    """The answer of POST /rest/images?action=initializeUpload."""
    return {
        "value": {
            "uploadUrlExpiresAt": 1764212400000,
            "uploadUrl": upload_url(image_id),
            "image": f"urn:li:image:{image_id}",
        }
    }


def post_body(commentary: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "author": AUTHOR,
        "commentary": commentary,
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    if content is not None:
        body["content"] = content
    return body


def permalink(urn: str) -> str:
    return f"https://www.linkedin.com/feed/update/{urn}"


VERSIONED = matchers.header_matcher(
    {"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": DEFAULT_VERSION, "X-Restli-Protocol-Version": "2.0.0"}
)
DUPLICATE = {
    "errorDetailType": "com.linkedin.common.error.BadRequest",
    "message": f"com.linkedin.content.common.exception.BadRequestResponseException: Content is a duplicate of {SHARE}",
    "errorDetails": {"inputErrors": [{"description": "Duplicate post is detected", "input": {}, "code": "DUPLICATE_POST"}]},
    "status": 422,
}


@pytest.fixture(autouse=True)
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def adapter(make_adapter: Callable[..., Any]) -> LinkedInAdapter:
    return make_adapter(LinkedInAdapter, organization="12345678", token=TOKEN)


def body_is(data: bytes) -> Callable[[Any], tuple[bool, str]]:
    """A `responses` matcher for a raw upload body, compared byte for byte."""

    def match(request: Any) -> tuple[bool, str]:
        return (request.body == data, "" if request.body == data else "upload body differs")

    return match


def expect_upload(
    mocked: responses.RequestsMock, image_id: str, data: bytes, mime: str, *, base: str = API, upload_base: str | None = None
) -> None:
    mocked.post(
        f"{base}/rest/images",
        json=initialized(image_id),
        match=[
            matchers.query_param_matcher({"action": "initializeUpload"}),
            matchers.json_params_matcher({"initializeUploadRequest": {"owner": AUTHOR}}),
            VERSIONED,
        ],
    )
    put_url = upload_url(image_id)
    if upload_base:
        put_url = upload_base + put_url.split("linkedin.com", 1)[1]
    mocked.put(
        put_url,
        status=201,
        match=[body_is(data), matchers.header_matcher({"Authorization": f"Bearer {TOKEN}", "Content-Type": mime})],
    )


def expect_post(
    mocked: responses.RequestsMock, body: dict[str, Any], urn: str = SHARE, *, status: int = 201, answer: Any = None, base: str = API
) -> None:
    if status == 201:
        mocked.post(f"{base}/rest/posts", status=201, body="", headers={"x-restli-id": urn},
                    match=[matchers.json_params_matcher(body), VERSIONED])
    else:
        mocked.post(f"{base}/rest/posts", status=status, json=answer, match=[matchers.json_params_matcher(body), VERSIONED])


# --- success, one case per kind of post --------------------------------------------------------


def case_text(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    expect_post(mocked, post_body("Selamat Hari Guru Nasional!"))
    return message("Selamat Hari Guru Nasional!"), Receipt(SHARE, permalink(SHARE))


def case_link(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    content = {"article": {"source": "https://example.go.id/hari-guru", "title": "Hari Guru Nasional 2026"}}
    expect_post(mocked, post_body("Selamat Hari Guru!", content))
    msg = message("Selamat Hari Guru!", link="https://example.go.id/hari-guru", title="Hari Guru Nasional 2026")
    return msg, Receipt(SHARE, permalink(SHARE))


def case_link_without_title(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    content = {"article": {"source": "https://example.go.id/hari-guru", "title": "https://example.go.id/hari-guru"}}
    expect_post(mocked, post_body("Selamat Hari Guru!", content))
    return message("Selamat Hari Guru!", link="https://example.go.id/hari-guru"), Receipt(SHARE, permalink(SHARE))


def case_one_image(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    photo = media("photo.jpg", alt="Guru mengajar di kelas")
    expect_upload(mocked, "D4E10AQHsiarImg1", photo.read(), "image/jpeg")
    content = {"media": {"id": "urn:li:image:D4E10AQHsiarImg1", "altText": "Guru mengajar di kelas"}}
    expect_post(mocked, post_body("Selamat Hari Guru!", content), UGC)
    return message("Selamat Hari Guru!", media=(photo,)), Receipt(UGC, permalink(UGC))


def case_two_images(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    first, second = media("photo.jpg", alt="Upacara"), media("photo.png", alt=None)
    expect_upload(mocked, "D4E10AQHsiarImg1", first.read(), "image/jpeg")
    expect_upload(mocked, "D4E10AQHsiarImg2", second.read(), "image/png")
    content = {
        "multiImage": {
            "images": [{"id": "urn:li:image:D4E10AQHsiarImg1", "altText": "Upacara"}, {"id": "urn:li:image:D4E10AQHsiarImg2"}]
        }
    }
    expect_post(mocked, post_body("Dokumentasi", content), UGC)
    return message("Dokumentasi", media=(first, second)), Receipt(UGC, permalink(UGC))


def case_image_and_link(mocked: Any, media: Any) -> tuple[Any, Receipt]:
    photo = media("photo.jpg", alt="Guru")
    expect_upload(mocked, "D4E10AQHsiarImg1", photo.read(), "image/jpeg")
    content = {"media": {"id": "urn:li:image:D4E10AQHsiarImg1", "altText": "Guru"}}
    # No link card beside an image: the link joins the text, escaped like the rest of it.
    expect_post(mocked, post_body("Baca:\n\nhttps://example.go.id/hari\\_guru", content), UGC)
    msg = message("Baca:", link="https://example.go.id/hari_guru", media=(photo,))
    return msg, Receipt(UGC, permalink(UGC))


SUCCESS_CASES = [case_text, case_link, case_link_without_title, case_one_image, case_two_images, case_image_and_link]


@pytest.mark.parametrize("case", SUCCESS_CASES, ids=[c.__name__.removeprefix("case_") for c in SUCCESS_CASES])
def test_each_kind_of_post_is_created_as_the_posts_api_expects_and_yields_its_permalink(
    adapter, job, make_media, mocked, case
):
    msg, receipt = case(mocked, make_media)
    assert adapter.publish(msg, job) == receipt


@pytest.mark.parametrize("organization", ["12345678", "urn:li:organization:12345678", " 12345678 "])
def test_the_organization_may_be_a_bare_id_or_a_full_urn(make_adapter, job, mocked, organization):
    adapter = make_adapter(LinkedInAdapter, organization=organization, token=TOKEN)
    expect_post(mocked, post_body("Halo"))
    assert adapter.publish(message("Halo"), job).platform_id == SHARE


@pytest.mark.parametrize("organization", ["urn:li:person:abc", "pemkot", ""])
def test_an_organization_that_is_neither_is_a_configuration_error(make_adapter, organization):
    with pytest.raises(ConfigError):
        make_adapter(LinkedInAdapter, organization=organization, token=TOKEN)
    problems = LinkedInAdapter.account_problems({"platform": "linkedin", "organization": organization, "token": "x"})
    assert [p.field for p in problems] == ["organization"]


def test_a_pinned_version_is_sent_and_a_malformed_one_is_reported(make_adapter, job, mocked):
    adapter = make_adapter(LinkedInAdapter, organization="12345678", token=TOKEN, version="202609")
    mocked.post(
        POSTS,
        status=201,
        headers={"x-restli-id": SHARE},
        match=[matchers.header_matcher({"LinkedIn-Version": "202609", "Authorization": f"Bearer {TOKEN}"})],
    )
    adapter.publish(message("Halo"), job)
    problems = LinkedInAdapter.account_problems({"organization": "1", "token": "x", "version": "2026-09"})
    assert [p.field for p in problems] == ["version"]


def test_every_request_and_the_upload_go_to_api_base_when_one_is_set(make_adapter, job, make_media, mocked):
    base = "http://127.0.0.1:8080"
    adapter = make_adapter(LinkedInAdapter, organization="12345678", token=TOKEN, api_base=base)
    photo = make_media("photo.jpg", alt="Guru")
    expect_upload(mocked, "D4E10AQHsiarImg1", photo.read(), "image/jpeg", base=base, upload_base=base)
    content = {"media": {"id": "urn:li:image:D4E10AQHsiarImg1", "altText": "Guru"}}
    expect_post(mocked, post_body("Halo", content), UGC, base=base)
    assert adapter.publish(message("Halo", media=(photo,)), job).platform_id == UGC


# --- the little text format --------------------------------------------------------------------


@pytest.mark.parametrize("char", sorted(RESERVED))
def test_every_reserved_character_is_sent_escaped_once_and_reads_back_as_written(adapter, job, mocked, char):
    text = f"Hari Guru {char} Nasional {char}{char}"
    expect_post(mocked, post_body(f"Hari Guru \\{char} Nasional \\{char}\\{char}"))
    adapter.publish(message(text), job)
    sent = mocked.calls[0].request.body
    assert unescape_little(_json(sent)["commentary"]) == text


def test_a_text_with_all_reserved_characters_survives_the_round_trip(adapter, job, mocked):
    text = "Cek: a\\b|c{d}e@f[g]h(i)j<k>l#m*n_o~p, 100% ok!"
    expected = "Cek: a\\\\b\\|c\\{d\\}e\\@f\\[g\\]h\\(i\\)j\\<k\\>l\\#m\\*n\\_o\\~p, 100% ok!"
    expect_post(mocked, post_body(expected))
    adapter.publish(message(text), job)

    commentary = _json(mocked.calls[0].request.body)["commentary"]
    assert _read_little(commentary) == text  # each reserved character escaped exactly once
    assert escape_little(text) == expected and unescape_little(expected) == text


def _read_little(commentary: str) -> str:
    """Read commentary strictly: a backslash must escape a reserved character, and no reserved
    character may stand unescaped — so every one was escaped exactly once."""
    out, index = [], 0
    while index < len(commentary):
        char = commentary[index]
        if char == "\\":
            assert commentary[index + 1] in RESERVED, f"stray escape at {index}"
            out.append(commentary[index + 1])
            index += 2
        else:
            assert char not in RESERVED, f"unescaped {char!r} at {index}"
            out.append(char)
            index += 1
    return "".join(out)


def _json(body: Any) -> Any:
    import json

    return json.loads(body)


# --- errors ------------------------------------------------------------------------------------

# (case id, HTTP status, body LinkedIn sends, typed error)
ERROR_CASES = [
    ("token-revoked", 401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN",
                            "message": "The token used in the request has been revoked by the user"}, AuthExpired),
    ("token-invalid", 401, {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                            "message": "Invalid access token"}, AuthExpired),
    ("no-permission", 403, {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                            "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE.20260501"}, AuthExpired),
    ("version-retired", 426, {"status": 426, "code": "NONEXISTENT_VERSION",
                              "message": "Requested version 20240401 is not active"}, AuthExpired),
    ("validation", 422, {"errorDetailType": "com.linkedin.common.error.BadRequest",
                         "message": "ERROR :: /content/article/source :: invalid URL",
                         "errorDetails": {"inputErrors": [{"description": "invalid URL", "input": {"inputPath": {"fieldPath": "/content/article/source"}},
                                                           "code": "INVALID_VALUE"}]}, "status": 422}, Rejected),
    ("bad-request", 400, {"status": 400, "message": "Unpermitted fields present in REQUEST_BODY: Data Processing Exception while processing fields [/content]"}, Rejected),
    ("forbidden-other", 403, {"status": 403}, Rejected),
    ("throttled", 429, {"serviceErrorCode": 101, "message": "Resource level throttle limit for calls to this resource is reached.", "status": 429}, RateLimited),
    ("server-error", 500, {"message": "Internal Server Error", "status": 500}, Transient),
    ("unavailable", 503, {"message": "Service Unavailable", "status": 503}, Transient),
    ("gateway-timeout", 504, {"message": "Gateway Timeout", "status": 504}, Transient),
]


@pytest.mark.parametrize(("case", "status", "answer", "error"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_linkedin_error_becomes_its_typed_error(adapter, job, mocked, case, status, answer, error):
    expect_post(mocked, post_body("Halo"), status=status, answer=answer)
    with pytest.raises(error) as info:
        adapter.publish(message("Halo"), job)
    assert type(info.value) is error
    assert info.value.http_status == status
    assert TOKEN not in f"{info.value!s} {info.value!r}"


def test_a_throttle_without_headers_leaves_the_wait_to_the_dispatcher(adapter, job, mocked):
    answer = {"serviceErrorCode": 101, "message": "Resource level throttle limit for calls to this resource is reached.", "status": 429}
    expect_post(mocked, post_body("Halo"), status=429, answer=answer)
    with pytest.raises(RateLimited) as info:
        adapter.publish(message("Halo"), job)
    assert info.value.retry_after is None


def test_a_daily_throttle_waits_until_the_quota_resets_at_midnight_utc(adapter, job, mocked):
    answer = {"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
              "message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."}
    expect_post(mocked, post_body("Halo"), status=429, answer=answer)
    with pytest.raises(RateLimited) as info:
        adapter.publish(message("Halo"), job)
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 86400


def test_a_duplicate_post_answer_is_read_as_already_published_with_the_first_posts_urn(adapter, job, mocked):
    expect_post(mocked, post_body("Halo"), status=422, answer=DUPLICATE)
    assert adapter.publish(message("Halo"), job) == Receipt(SHARE, permalink(SHARE))


def test_a_retry_after_a_gateway_timeout_that_meets_duplicate_post_settles_on_the_first_post(adapter, mocked):
    from adapters.base import MemoryJob

    job = MemoryJob(key="k-retry", attempt=1)
    expect_post(mocked, post_body("Halo"), status=504, answer={"message": "Gateway Timeout", "status": 504})
    with pytest.raises(Transient):
        adapter.publish(message("Halo"), job)

    mocked.reset()
    job.attempt = 2
    expect_post(mocked, post_body("Halo"), status=422, answer=DUPLICATE)
    assert adapter.publish(message("Halo"), job) == Receipt(SHARE, permalink(SHARE))


def test_a_duplicate_answer_that_names_no_post_is_rejected(adapter, job, mocked):
    answer = {**DUPLICATE, "message": "Content is a duplicate"}
    expect_post(mocked, post_body("Halo"), status=422, answer=answer)
    with pytest.raises(Rejected):
        adapter.publish(message("Halo"), job)


def test_a_created_answer_without_the_post_urn_is_maybe_sent_never_resent(adapter, job, mocked):
    mocked.post(POSTS, status=201, body="", match=[VERSIONED])
    with pytest.raises(MaybeSent):
        adapter.publish(message("Halo"), job)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_map_to_the_shared_typed_errors(
    adapter, job, mocked, case, raise_, expected
):
    mocked.post(POSTS, body=raise_())
    with pytest.raises(expected) as info:
        adapter.publish(message("Halo"), job)
    assert TOKEN not in f"{info.value!s} {info.value!r}"


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_of_an_image_post_map_alike(
    adapter, job, make_media, mocked, case, raise_, expected
):
    mocked.post(IMAGES, body=raise_())
    with pytest.raises(expected):
        adapter.publish(message("Halo", media=(make_media("photo.jpg"),)), job)
    assert job.saved == {}


# --- images: interrupted after every step, resumed with the same job ---------------------------

# The steps of a two-image post, in order; an interruption is a 500 at one of them.
STEPS = ["init-1", "put-1", "init-2", "put-2", "post"]


@pytest.mark.parametrize("broken", STEPS)
def test_an_image_post_interrupted_at_any_step_resumes_without_uploading_or_posting_twice(
    adapter, job, make_media, mocked, broken
):
    first, second = make_media("photo.jpg", alt="Upacara"), make_media("photo.png", alt="Guru")
    msg = message("Dokumentasi", media=(first, second))
    content = {
        "multiImage": {
            "images": [{"id": "urn:li:image:D4E10AQHsiarImg1", "altText": "Upacara"}, {"id": "urn:li:image:D4E10AQHsiarImg2", "altText": "Guru"}]
        }
    }
    uploads = [("D4E10AQHsiarImg1", first.read(), "image/jpeg"), ("D4E10AQHsiarImg2", second.read(), "image/png")]
    failure = {"message": "Internal Server Error", "status": 500}

    def register(first_image: int, broken: str | None) -> None:
        """The calls from image `first_image` on; the step named `broken` answers 500 and ends it."""
        for number in range(first_image, 3):
            image_id, data, mime = uploads[number - 1]
            if broken == f"init-{number}":
                mocked.post(IMAGES, status=500, json=failure, match=[VERSIONED])
                return
            mocked.post(IMAGES, json=initialized(image_id), match=[VERSIONED])
            if broken == f"put-{number}":
                mocked.put(upload_url(image_id), status=500, json=failure)
                return
            mocked.put(upload_url(image_id), status=201, match=[body_is(data)])
        if broken == "post":
            expect_post(mocked, post_body("Dokumentasi", content), status=500, answer=failure)
        else:
            expect_post(mocked, post_body("Dokumentasi", content), UGC)

    register(1, broken)
    with pytest.raises(Transient):
        adapter.publish(msg, job)
    saved_before = len(job.saved.get("images", []))
    assert saved_before == {"init-1": 0, "put-1": 0, "init-2": 1, "put-2": 1, "post": 2}[broken]

    # Resumed: only what was not saved is registered; anything repeated would find no mock.
    mocked.reset()
    register(saved_before + 1, None)
    assert adapter.publish(msg, job) == Receipt(UGC, permalink(UGC))
    posts = [c for c in mocked.calls if c.request.url == POSTS]
    puts = [c for c in mocked.calls if c.request.method == "PUT"]
    assert len(posts) == 1
    assert len(puts) == 2 - saved_before


def test_a_saved_image_is_uploaded_again_when_the_file_changed_since(adapter, job, make_media, media_dir, mocked):
    photo = make_media("photo.jpg", alt="Guru")
    expect_upload(mocked, "D4E10AQHsiarImg1", photo.read(), "image/jpeg")
    mocked.post(POSTS, status=500, json={"message": "Internal Server Error", "status": 500})
    with pytest.raises(Transient):
        adapter.publish(message("Halo", media=(photo,)), job)

    mocked.reset()
    (media_dir / "photo.jpg").write_bytes(make_media("second.jpg").read() + b"\x00changed")
    expect_upload(mocked, "D4E10AQHsiarImg9", photo.read(), "image/jpeg")
    expect_post(mocked, post_body("Halo", {"media": {"id": "urn:li:image:D4E10AQHsiarImg9", "altText": "Guru"}}), UGC)
    assert adapter.publish(message("Halo", media=(photo,)), job).platform_id == UGC


# --- offline checks and whoami -----------------------------------------------------------------


def test_the_limit_counts_the_text_as_readers_see_it_and_warns_when_escaping_passes_it(adapter):
    assert adapter.check(message("a" * 3000)) == []
    assert [p.field for p in adapter.check(message("a" * 3001))] == ["text"]
    warned = adapter.check(message("a" * 2990 + "#" * 10))
    assert [(p.field, p.severity) for p in warned] == [("text", "warning")]


def test_text_is_counted_in_utf16_units(adapter):
    problems = adapter.check(message("👍" * 1501))  # 3,002 units
    assert [p.field for p in problems] == ["text"]


def test_only_jpg_png_and_gif_images_are_accepted(adapter, media_dir, make_media):
    (media_dir / "photo.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    problems = adapter.check(message("Halo", media=(make_media("photo.webp"), make_media("clip.mp4"), make_media("photo.png"))))
    assert sorted(p.field for p in problems) == ["media[0]", "media[1]"]


def test_the_escaping_helpers_are_inverse_for_any_text():
    text = "".join(sorted(RESERVED)) + " biasa \\\\ \\n"
    assert unescape_little(escape_little(text)) == text


def test_whoami_names_the_organization_from_its_localized_name(adapter, mocked):
    organization = {
        "vanityName": "pemkot-palembang",
        "localizedName": "Pemerintah Kota Palembang",
        "website": {"localized": {"in_ID": "https://palembang.go.id"}},
        "id": 12345678,
        "primaryOrganizationType": "GOVERNMENT",
        "localizedWebsite": "https://palembang.go.id",
    }
    mocked.get(f"{API}/rest/organizations/12345678", json=organization, match=[VERSIONED])
    assert adapter.whoami() == f"Pemerintah Kota Palembang ({AUTHOR})"


def test_whoami_with_an_expired_token_raises_auth_expired(adapter, mocked):
    answer = {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"}
    mocked.get(f"{API}/rest/organizations/12345678", status=401, json=answer, match=[VERSIONED])
    with pytest.raises(AuthExpired):
        adapter.whoami()


def test_a_text_over_the_limit_is_rejected_before_any_upload(adapter, job, make_media, mocked):
    with pytest.raises(Rejected, match="3000"):
        adapter.publish(message("a" * 3001, media=(make_media("photo.jpg"),)), job)
    assert len(mocked.calls) == 0
