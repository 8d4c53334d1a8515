"""The X adapter against X API v2 as X answers: bodies, headers and problem JSON as X sends them.

Every request is matched (URL, method, auth header, JSON or multipart body, query), every JSON
body we send is validated against X's own OpenAPI schemas (shared/specs/x-api-v2-openapi.json),
and every registered answer must be used. Multi-step flows run in X's order (OrderedRegistry).
"""

from __future__ import annotations

import base64
import email.parser
import functools
import json
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

import adapters.base
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
from adapters.x import XAdapter, oauth1_header, oauth1_signature
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES
from tests.support import media as media_files

API = "https://api.x.com"
NOW = 1795568400  # 2026-11-25T01:00:00Z, 08:00 in Jakarta

CLIENT_ID = "M1M5R3BMVy13QmpScXkzTUt5OE46MTpjaQ"
CLIENT_SECRET = "kq6dL9u1pJZs0W7cRkq3vQ_Ht2m4x8aXyZ5bN1cD3eF7gH9iJ0"
ACCESS = "bWpYZ0JzX2dHd2xWb0xPeXBrT1JfT2Z1d1ZLVnlkM2hR:1732500000000:1:1:at:1"
REFRESH = "Zk9Pc1J6ZnJ0b0hGbHZ6bU5rSmNrV2x1a0F3bG9vZkd6:1732500000000:1:0:rt:1"
NEW_ACCESS = "R2NnVnJ0dWZPQ0x6b2xQb2hXb0VxZkRvbmNyRnJ6bGRk:1732507200000:1:1:at:1"
NEW_REFRESH = "cE9Yb1dTeFZ2dW1xX0tNN0dCRkZKY0dmTnE2Q2dYeWpk:1732507200000:1:0:rt:1"
NEWER_ACCESS = "Wm9sWEJhM2pLcnpRbW5sdkx0Y2VkVHp4b3RyUXZ6bWtO:1732514400000:1:1:at:1"
NEWER_REFRESH = "b0x3Vkp0aXJjR2ZkUm9tS0JzQlZwX3l5bHF6ZnR2T0Fh:1732514400000:1:0:rt:1"
CONSUMER_KEY = "xvz1evFS4wEEPTGEFPHBog"
CONSUMER_SECRET = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
OAUTH1_TOKEN = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"
OAUTH1_SECRET = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
SECRETS = [CLIENT_SECRET, ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH, CONSUMER_SECRET, OAUTH1_TOKEN, OAUTH1_SECRET]

OAUTH2 = {"token": ACCESS, "refresh_token": REFRESH, "client_id": CLIENT_ID}
OAUTH1 = {
    "consumer_key": CONSUMER_KEY,
    "consumer_secret": CONSUMER_SECRET,
    "access_token": OAUTH1_TOKEN,
    "access_secret": OAUTH1_SECRET,
}

USER_ID = "1582389640113348608"
USERNAME = "pemkotplg"
POST_ID = "1861251341036675327"
MEDIA_IDS = ["1861251235830530048", "1861251237877350400", "1861251239920009216", "1861251241962635264"]
VIDEO_ID = "1861251300116586496"
TEXT = "Selamat Hari Guru Nasional! Terima kasih untuk seluruh guru di Kota Palembang. #HariGuru"

JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}
PROBLEM_HEADERS = {"content-type": "application/problem+json"}


def limit_headers(remaining: int = 99) -> dict[str, str]:
    """X's rate-limit headers on POST /2/tweets: the 15-minute window and the 24-hour caps."""
    return {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": str(remaining),
        "x-rate-limit-reset": str(NOW + 900),
        "x-user-limit-24hour-limit": "100",
        "x-user-limit-24hour-remaining": "97",
        "x-user-limit-24hour-reset": str(NOW + 86400),
        "x-app-limit-24hour-limit": "10000",
        "x-app-limit-24hour-remaining": "9871",
        "x-app-limit-24hour-reset": str(NOW + 43200),
    }


# --- X's own OpenAPI schemas, checked without a jsonschema dependency ----------------------------

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "x-api-v2-openapi.json"


@functools.cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"X's OpenAPI description is not at {SPEC_PATH}")
    return _spec()


def schema(name: str) -> dict[str, Any]:
    return spec()["components"]["schemas"][name]


def schema_errors(value: Any, node: dict[str, Any], where: str = "$") -> list[str]:
    """A strict check of the JSON Schema keywords X's spec uses: $ref, oneOf/anyOf (with the
    discriminator), type, required, properties, additionalProperties, enum, pattern, lengths,
    item counts and numeric bounds."""
    if "$ref" in node:
        return schema_errors(value, schema(node["$ref"].rsplit("/", 1)[1]), where)
    if "oneOf" in node:
        discriminator = node.get("discriminator")
        if discriminator and isinstance(value, dict):
            target = discriminator["mapping"].get(value.get(discriminator["propertyName"]))
            if target is None:
                return [f"{where}: {value.get(discriminator['propertyName'])!r} is none of the oneOf types"]
            return schema_errors(value, {"$ref": target}, where)
        fits = [option for option in node["oneOf"] if not schema_errors(value, option, where)]
        return [] if len(fits) == 1 else [f"{where}: matches {len(fits)} of the oneOf options"]
    if "anyOf" in node:
        return (
            []
            if any(not schema_errors(value, option, where) for option in node["anyOf"])
            else [f"{where}: matches no anyOf option"]
        )
    errors: list[str] = []
    kind = node.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind and not checks[kind](value):
        return [f"{where}: {value!r} is not of type {kind}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: {value!r} is not one of {node['enum']}")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {node['pattern']}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            errors.append(f"{where}: longer than {node['maxLength']}")
        if "minLength" in node and len(value) < node["minLength"]:
            errors.append(f"{where}: shorter than {node['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            errors.append(f"{where}: below {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            errors.append(f"{where}: above {node['maximum']}")
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            errors.append(f"{where}: fewer than {node['minItems']} items")
        if "maxItems" in node and len(value) > node["maxItems"]:
            errors.append(f"{where}: more than {node['maxItems']} items")
        for index, item in enumerate(value):
            errors += schema_errors(item, node.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        for key in node.get("required", []):
            if key not in value:
                errors.append(f"{where}: {key!r} is required")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{where}.{key}")
            elif node.get("additionalProperties") is False:
                errors.append(f"{where}: {key!r} is not allowed")
    return errors


def assert_valid(value: Any, name: str) -> None:
    assert schema_errors(value, schema(name)) == [], f"not a valid {name}"


def json_body_is(name: str) -> Callable[[requests.PreparedRequest], tuple[bool, str]]:
    """A responses matcher: the request's JSON body is a valid `name` of X's spec."""

    def match(request: requests.PreparedRequest) -> tuple[bool, str]:
        errors = schema_errors(json.loads(request.body or b"null"), schema(name))
        return (not errors, f"body is not a valid {name}: {errors}")

    return match


def multipart_is(name: str) -> Callable[[requests.PreparedRequest], tuple[bool, str]]:
    """A responses matcher: the multipart form's field names and values fit X's `name` schema."""

    def match(request: requests.PreparedRequest) -> tuple[bool, str]:
        head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
        parts = email.parser.BytesParser().parsebytes(head + request.body).get_payload()
        node = schema(name)
        fields: dict[str, Any] = {}
        for part in parts:
            name_ = part.get_param("name", header="content-disposition")
            raw = part.get_payload(decode=True)
            declared = node["properties"].get(name_, {})
            if declared.get("type") == "integer":
                fields[name_] = int(raw)
            elif "anyOf" in declared:  # the binary media: any bytes
                fields[name_] = "<bytes>"
            else:
                fields[name_] = raw.decode()
        errors = schema_errors(fields, node)
        return (not errors, f"multipart form is not a valid {name}: {errors}")

    return match


# --- X's answers ---------------------------------------------------------------------------------


def created(text: str = TEXT, post_id: str = POST_ID) -> dict[str, Any]:
    body = {"data": {"edit_history_tweet_ids": [post_id], "id": post_id, "text": text}}
    assert_valid(body, "CreatePostsResponse")
    return body


def uploaded_image(media_id: str, size: int) -> dict[str, Any]:
    body = {
        "data": {
            "id": media_id,
            "media_key": f"3_{media_id}",
            "size": size,
            "expires_after_secs": 86400,
            "image": {"image_type": "image/jpeg", "w": 1, "h": 1},
        }
    }
    assert_valid(body, "MediaUploadResponse")
    return body


def me_answer() -> dict[str, Any]:
    body = {"data": {"id": USER_ID, "name": "Pemerintah Kota Palembang", "username": USERNAME}}
    assert_valid(body, "GetUsersMeResponse")
    return body


def timeline(*posts: tuple[str, str]) -> dict[str, Any]:
    if not posts:
        return {"meta": {"result_count": 0}}
    body = {
        "data": [{"edit_history_tweet_ids": [pid], "id": pid, "text": text} for pid, text in posts],
        "meta": {"newest_id": posts[0][0], "oldest_id": posts[-1][0], "result_count": len(posts)},
    }
    assert_valid(body, "GetUsersPostsResponse")
    return body


def problem(status: int, title: str, detail: str, kind: str = "about:blank", **extra: Any) -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": kind, "status": status, **extra}


DUPLICATE = problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.")
UNAUTHORIZED = problem(401, "Unauthorized", "Unauthorized")
SERVICE_UNAVAILABLE = problem(503, "Service Unavailable", "Service Unavailable")


def token_answer(access: str = NEW_ACCESS, refresh: str = NEW_REFRESH) -> dict[str, Any]:
    return {
        "token_type": "bearer",
        "expires_in": 7200,
        "access_token": access,
        "scope": "tweet.write users.read tweet.read media.write offline.access",
        "refresh_token": refresh,
    }


# --- a request and its answer, registered in order ------------------------------------------------


@dataclass
class Step:
    method: str
    path: str
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    match: list[Any] = field(default_factory=list)
    base: str = API

    def failing(self) -> Step:
        """The same request answered with X's 503."""
        return Step(self.method, self.path, 503, SERVICE_UNAVAILABLE, dict(PROBLEM_HEADERS), self.match, self.base)


def register(mock: responses.RequestsMock, steps: Iterable[Step]) -> None:
    for step in steps:
        kwargs: dict[str, Any] = {"status": step.status, "headers": step.headers, "match": step.match}
        if isinstance(step.body, (dict, list)):
            kwargs["json"] = step.body
        else:
            kwargs["body"] = step.body or ""
        mock.add(step.method, step.base + step.path, **kwargs)


def ordered() -> responses.RequestsMock:
    return responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry)


def bearer(token: str = ACCESS) -> Any:
    return matchers.header_matcher({"Authorization": f"Bearer {token}"})


def tweet_step(
    body: dict[str, Any],
    *,
    status: int = 201,
    answer: Any = None,
    auth: Any = None,
    headers: dict[str, str] | None = None,
) -> Step:
    return Step(
        "POST",
        "/2/tweets",
        status,
        created(body["text"]) if answer is None else answer,
        {**JSON_HEADERS, **limit_headers()} if headers is None else headers,
        [matchers.json_params_matcher(body), json_body_is("CreatePostsRequest"), auth or bearer()],
    )


def me_step(auth: Any = None) -> Step:
    return Step("GET", "/2/users/me", 200, me_answer(), match=[auth or bearer()])


def timeline_step(since: float, *posts: tuple[str, str], auth: Any = None) -> Step:
    start = datetime.fromtimestamp(since - 600, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Step(
        "GET",
        f"/2/users/{USER_ID}/tweets",
        200,
        timeline(*posts),
        match=[
            matchers.query_param_matcher(
                {"max_results": "100", "exclude": "replies,retweets", "start_time": start}
            ),
            auth or bearer(),
        ],
    )


def image_steps(images: list[Any], text: str) -> list[Step]:
    steps: list[Step] = []
    for index, item in enumerate(images):
        data = item.path.read_bytes()
        steps.append(
            Step(
                "POST",
                "/2/media/upload",
                200,
                uploaded_image(MEDIA_IDS[index], len(data)),
                match=[
                    matchers.multipart_matcher(
                        {"media": (item.file, data, item.mime)}, data={"media_category": "tweet_image"}
                    ),
                    multipart_is("MediaUploadRequest"),
                    bearer(),
                ],
            )
        )
        if item.alt:
            metadata = {"id": MEDIA_IDS[index], "metadata": {"alt_text": {"text": item.alt}}}
            answer = {"data": {"id": MEDIA_IDS[index], "associated_metadata": {"alt_text": {"text": item.alt}}}}
            assert_valid(answer, "CreateMediaMetadataResponse")
            steps.append(
                Step(
                    "POST",
                    "/2/media/metadata",
                    200,
                    answer,
                    match=[
                        matchers.json_params_matcher(metadata),
                        json_body_is("CreateMediaMetadataRequest"),
                        bearer(),
                    ],
                )
            )
    steps.append(tweet_step({"text": text, "media": {"media_ids": MEDIA_IDS[: len(images)]}}))
    return steps


def video_steps(item: Any, text: str, chunk: int, category: str = "tweet_video") -> list[Step]:
    data = item.path.read_bytes()
    initialize = {"media_type": item.mime, "total_bytes": len(data), "media_category": category}
    init_answer = {"data": {"id": VIDEO_ID, "media_key": f"7_{VIDEO_ID}", "expires_after_secs": 86399}}
    assert_valid(init_answer, "InitializeMediaUploadResponse")
    steps = [
        Step(
            "POST",
            "/2/media/upload/initialize",
            200,
            init_answer,
            match=[
                matchers.json_params_matcher(initialize),
                json_body_is("InitializeMediaUploadRequest"),
                bearer(),
            ],
        )
    ]
    for segment, offset in enumerate(range(0, len(data), chunk)):
        append_answer = {"data": {"expires_at": NOW + 86399}}
        assert_valid(append_answer, "AppendMediaUploadResponse")
        steps.append(
            Step(
                "POST",
                f"/2/media/upload/{VIDEO_ID}/append",
                200,
                append_answer,
                match=[
                    matchers.multipart_matcher(
                        {"media": (item.file, data[offset : offset + chunk], "application/octet-stream")},
                        data={"segment_index": str(segment)},
                    ),
                    multipart_is("AppendMediaUploadRequest"),
                    bearer(),
                ],
            )
        )
    finalize_answer = {
        "data": {
            "id": VIDEO_ID,
            "media_key": f"7_{VIDEO_ID}",
            "size": len(data),
            "expires_after_secs": 86399,
            "processing_info": {"state": "pending", "check_after_secs": 1},
        }
    }
    assert_valid(finalize_answer, "FinalizeMediaUploadResponse")
    steps.append(Step("POST", f"/2/media/upload/{VIDEO_ID}/finalize", 200, finalize_answer, match=[bearer()]))
    for state, wait, progress in (("in_progress", 3, 45), ("succeeded", None, 100)):
        info: dict[str, Any] = {"state": state, "progress_percent": progress}
        if wait:
            info["check_after_secs"] = wait
        status_answer = {"data": {"id": VIDEO_ID, "media_key": f"7_{VIDEO_ID}", "processing_info": info}}
        if state == "succeeded":
            status_answer["data"]["video"] = {"video_type": "video/mp4"}
        assert_valid(status_answer, "GetMediaUploadStatusResponse")
        steps.append(
            Step(
                "GET",
                "/2/media/upload",
                200,
                status_answer,
                match=[matchers.query_param_matcher({"command": "STATUS", "media_id": VIDEO_ID}), bearer()],
            )
        )
    steps.append(tweet_step({"text": text, "media": {"media_ids": [VIDEO_ID]}}))
    return steps


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def x(make_adapter) -> Callable[..., XAdapter]:
    def build(**account: Any) -> XAdapter:
        settings = {**(OAUTH1 if account.pop("oauth1", False) else OAUTH2), **account}
        adapter = make_adapter(XAdapter, **settings)
        adapter.clock = lambda: NOW
        return adapter

    return build


class CountingJob(MemoryJob):
    """A job that counts lease renewals and can lose its lease after a number of them."""

    def __init__(self, *args: Any, lose_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats = 0
        self.lose_after = lose_after

    def heartbeat(self) -> None:
        self.heartbeats += 1
        if self.lose_after is not None and self.heartbeats > self.lose_after:
            raise LeaseLost("another worker took the delivery")


def assert_no_secret(error: BaseException) -> None:
    for value in SECRETS:
        assert value not in str(error)


def tweets_sent(mock: responses.RequestsMock) -> int:
    return sum(1 for call in mock.calls if call.request.method == "POST" and call.request.url == f"{API}/2/tweets")


# --- account settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [OAUTH2, {**OAUTH2, "client_secret": CLIENT_SECRET}, OAUTH1],
    ids=["oauth2 public client", "oauth2 confidential client", "oauth1"],
)
def test_an_account_with_one_whole_set_of_credentials_is_valid(settings):
    assert XAdapter.account_problems({"platform": "x", **settings}) == []


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, ["token", "refresh_token", "client_id"]),
        ({"token": ACCESS, "client_id": CLIENT_ID}, ["refresh_token"]),
        ({"consumer_key": CONSUMER_KEY, "access_token": OAUTH1_TOKEN}, ["consumer_secret", "access_secret"]),
    ],
    ids=["nothing", "oauth2 without refresh token", "half of oauth1"],
)
def test_an_account_missing_credentials_is_refused_naming_the_missing_keys(make_adapter, settings, missing):
    problems = XAdapter.account_problems({"platform": "x", **settings})
    assert [problem.field for problem in problems] == missing
    with pytest.raises(ConfigError) as info:
        make_adapter(XAdapter, **settings)
    for key in missing:
        assert key in str(info.value)


def test_an_account_mixing_oauth1_and_oauth2_keys_is_refused(make_adapter):
    problems = XAdapter.account_problems({"platform": "x", **OAUTH2, **OAUTH1})
    assert len(problems) == 1 and "keep one set" in problems[0].message
    with pytest.raises(ConfigError):
        make_adapter(XAdapter, **OAUTH2, **OAUTH1)


def test_an_unknown_account_key_is_still_reported():
    problems = XAdapter.account_problems({"platform": "x", **OAUTH2, "bearer": "x"})
    assert [problem.field for problem in problems] == ["bearer"]


# --- offline check -------------------------------------------------------------------------------


def test_a_post_of_280_weighted_characters_passes_the_check(x):
    assert x().check(message("x" * 256 + " https://example.go.id/" + "a" * 100)) == []


def test_a_post_over_280_weighted_characters_is_reported_with_its_counted_length(x):
    problems = x().check(message("あ" * 141))
    assert [(p.field, p.message) for p in problems] == [
        (
            "text",
            "is 282 characters long as X counts them (every link 23, CJK and emoji 2, link included); the limit is 280",
        )
    ]


def test_the_link_is_added_to_the_text_and_counted_as_23(x):
    adapter = x()
    post = message("x" * 255, link="https://example.go.id/a/very/long/path/that/is/not/counted/as/its/length")
    assert adapter.compose(post).endswith(
        "\n\nhttps://example.go.id/a/very/long/path/that/is/not/counted/as/its/length"
    )
    assert adapter.check(post) == []
    assert adapter.check(message("x" * 256, link="https://example.go.id/")) != []


def test_an_empty_post_without_media_is_reported(x):
    assert [p.field for p in x().check(message(""))] == ["text"]


def test_media_rules_are_reported(x, make_media, media_dir):
    adapter = x()
    media_files.write(media_dir, "anim.gif", b"GIF89a" + b"\x00" * 32)
    media_files.write(media_dir, "big.jpg", b"")
    media_files.write(media_dir, "big.gif", b"")
    with open(media_dir / "big.jpg", "r+b") as handle:
        handle.truncate(5 * 1024 * 1024 + 1)
    with open(media_dir / "big.gif", "r+b") as handle:
        handle.truncate(15 * 1024 * 1024 + 1)
    image, video, gif = make_media("photo.jpg"), make_media("clip.mp4", alt=None), make_media("anim.gif")

    def problems(*media):
        return [(p.field, p.message, p.severity) for p in adapter.check(message("Halo", media=media))]

    assert problems(*[image] * 4) == []
    assert problems(*[image] * 5) == [("media", "has 5 images; the limit is 4", "error")]
    assert problems(image, video) == [
        ("media", "mixes images and videos: X takes up to 4 images, or 1 GIF, or 1 video", "error")
    ]
    assert problems(gif, gif) == [("media", "has 2 GIFs; X takes 1 per post", "error")]
    assert problems(make_media("big.jpg")) == [
        (
            "media[0]",
            f"big.jpg is {5 * 1024 * 1024 + 1} bytes; the limit for an X image is {5 * 1024 * 1024}",
            "error",
        )
    ]
    assert problems(make_media("big.gif")) == [
        (
            "media[0]",
            f"big.gif is {15 * 1024 * 1024 + 1} bytes; the limit for an X GIF is {15 * 1024 * 1024}",
            "error",
        )
    ]
    assert problems(make_media("photo.jpg", alt="a" * 1001)) == [
        ("media[0].alt", "is 1001 characters; the limit is 1000", "error")
    ]
    assert problems(make_media("clip.mp4", alt="Guru mengajar")) == [
        ("media[0].alt", "X takes alt text for images and GIFs only; it is not sent", "warning")
    ]


# --- publishing: success -------------------------------------------------------------------------


def test_a_text_post_is_created_and_its_permalink_uses_the_username(x, job):
    adapter = x()
    with ordered() as mock:
        register(mock, [tweet_step({"text": TEXT}), me_step()])
        receipt = adapter.publish(message(f"\n{TEXT}\n"), job)
    assert (receipt.platform_id, receipt.url) == (POST_ID, f"https://x.com/{USERNAME}/status/{POST_ID}")
    assert job.saved["post_requested_at"] == NOW


def test_the_username_is_read_once_and_kept_for_later_posts(x, make_adapter, job):
    with ordered() as mock:
        register(mock, [tweet_step({"text": TEXT}), me_step(), tweet_step({"text": "Kedua"})])
        x().publish(message(TEXT), job)
        receipt = x().publish(message("Kedua"), MemoryJob(key="k-2"))
    assert receipt.url == f"https://x.com/{USERNAME}/status/{POST_ID}"


def test_a_post_whose_username_cannot_be_read_still_succeeds_with_the_id_permalink(x, job):
    adapter = x()
    with ordered() as mock:
        register(mock, [tweet_step({"text": TEXT}), me_step().failing()])
        receipt = adapter.publish(message(TEXT), job)
    assert receipt.url == f"https://x.com/i/web/status/{POST_ID}"


@pytest.mark.parametrize("count", [1, 2, 3, 4], ids=["1 image", "2 images", "3 images", "4 images"])
def test_images_are_uploaded_with_alt_text_and_attached_to_the_post(x, job, make_media, media_dir, count):
    for index in range(count):
        media_files.write(media_dir, f"img{index}.jpg", media_files.jpeg_bytes(pad_to=200 + index))
    images = [
        make_media(f"img{i}.jpg", alt=f"Guru mengajar di kelas {i}" if i != 1 else None) for i in range(count)
    ]
    adapter = x()
    with ordered() as mock:
        register(mock, [*image_steps(images, TEXT), me_step()])
        receipt = adapter.publish(message(TEXT, media=tuple(images)), job)
    assert receipt.platform_id == POST_ID
    assert [entry["id"] for entry in job.saved["media"]] == MEDIA_IDS[:count]


def test_a_video_is_uploaded_in_chunks_and_waited_for_before_the_post(x, make_media):
    adapter = x()
    adapter.chunk_size = 1024  # the 2,048-byte test clip in two segments
    waits: list[float] = []
    adapter.sleep = waits.append
    video = make_media("clip.mp4", alt="Upacara Hari Guru")  # alt text is not sent for a video
    job = CountingJob(key="k-video")
    with ordered() as mock:
        register(mock, [*video_steps(video, TEXT, 1024), me_step()])
        receipt = adapter.publish(message(TEXT, media=(video,)), job)
    assert receipt.platform_id == POST_ID
    assert waits == [1, 3]  # X's own check_after_secs
    assert job.heartbeats >= 6  # initialize, two appends, finalize, each poll
    assert job.saved["media"][0]["id"] == VIDEO_ID


def test_a_gif_is_uploaded_in_chunks_as_a_tweet_gif(x, make_media, media_dir, job):
    media_files.write(media_dir, "anim.gif", b"GIF89a\x01\x00\x01\x00" + b"\x00" * 500)
    gif = make_media("anim.gif", alt=None)
    adapter = x()
    with ordered() as mock:
        register(mock, [*video_steps(gif, "Animasi", XAdapter.chunk_size, category="tweet_gif"), me_step()])
        assert adapter.publish(message("Animasi", media=(gif,)), job).platform_id == POST_ID


def test_a_video_that_x_cannot_process_is_rejected_and_forgotten(x, make_media, job):
    adapter = x()
    video = make_media("clip.mp4", alt=None)
    steps = video_steps(video, TEXT, XAdapter.chunk_size)[:-3]  # initialize, one append, finalize
    failed = {
        "data": {
            "id": VIDEO_ID,
            "media_key": f"7_{VIDEO_ID}",
            "processing_info": {
                "state": "failed",
                "progress_percent": 0,
                "error": {"code": 1, "name": "InvalidMedia", "message": "Unsupported video format"},
            },
        }
    }
    steps.append(Step("GET", "/2/media/upload", 200, failed, match=[bearer()]))
    with ordered() as mock:
        register(mock, steps)
        with pytest.raises(Rejected, match="Unsupported video format"):
            adapter.publish(message(TEXT, media=(video,)), job)
    assert job.saved["media"] == [{}]
    assert "post_requested_at" not in job.saved


def test_a_video_still_processing_after_many_polls_is_given_back_as_transient(x, make_media, job):
    adapter = x()
    adapter.max_polls = 1
    video = make_media("clip.mp4", alt=None)
    steps = video_steps(video, TEXT, XAdapter.chunk_size)[:-2]  # up to the first STATUS (in_progress)
    with ordered() as mock:
        register(mock, steps)
        with pytest.raises(Transient) as info:
            adapter.publish(message(TEXT, media=(video,)), job)
    assert info.value.retry_after == 3
    assert job.saved["media"][0]["finalized"] is True


def test_a_lost_lease_during_a_video_upload_stops_before_the_post(x, make_media):
    adapter = x()
    adapter.chunk_size = 1024
    video = make_media("clip.mp4", alt=None)
    job = CountingJob(key="k-lease", lose_after=2)
    with ordered() as mock:
        register(mock, video_steps(video, TEXT, 1024)[:2])  # initialize, first append
        with pytest.raises(LeaseLost):
            adapter.publish(message(TEXT, media=(video,)), job)
        assert tweets_sent(mock) == 0


def test_oauth1_requests_carry_a_valid_signature(x, job, make_media):
    def signed(request: requests.PreparedRequest) -> tuple[bool, str]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("OAuth "):
            return False, "no OAuth header"
        fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
        wanted = {
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
            "oauth_timestamp",
            "oauth_token",
            "oauth_version",
        }
        if set(fields) != wanted:
            return False, f"OAuth header has {sorted(fields)}"
        fields = {k: unquote(v) for k, v in fields.items()}
        signature = fields.pop("oauth_signature")
        expected = oauth1_signature(
            request.method, request.url, fields, consumer_secret=CONSUMER_SECRET, token_secret=OAUTH1_SECRET
        )
        ok = (
            signature == expected
            and fields["oauth_timestamp"] == str(NOW)
            and fields["oauth_token"] == OAUTH1_TOKEN
        )
        return ok, "OAuth signature does not verify"

    image = make_media("photo.jpg", alt=None)
    adapter = x(oauth1=True)
    upload = image_steps([image], TEXT)
    for step in upload:
        step.match[-1] = signed  # in place of the Bearer header
    with ordered() as mock:
        register(
            mock,
            [
                *upload,
                me_step(auth=signed),
                timeline_step(NOW, (POST_ID, TEXT + " https://t.co/AbCdEf1234"), auth=signed),
            ],
        )
        assert adapter.publish(message(TEXT, media=(image,)), job).platform_id == POST_ID
        # the timeline read has query parameters, which the signature must cover too
        assert adapter.lookup(message(TEXT, media=(image,)), job).platform_id == POST_ID


def test_the_oauth1_signature_matches_x_documentation_example():
    # X's "Creating a signature" example (its published signature is for the api.twitter.com host).
    params = {
        "status": "Hello Ladies + Gentlemen, a signed OAuth request!",
        "include_entities": "true",
        "oauth_consumer_key": CONSUMER_KEY,
        "oauth_nonce": "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1318622958",
        "oauth_token": OAUTH1_TOKEN,
        "oauth_version": "1.0",
    }
    url = "https://api.twitter.com/1.1/statuses/update.json"
    signature = oauth1_signature("POST", url, params, consumer_secret=CONSUMER_SECRET, token_secret=OAUTH1_SECRET)
    assert signature == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
    # the same with include_entities in the URL's own query, as the example request sends it
    query = {k: v for k, v in params.items() if k != "include_entities"}
    assert (
        oauth1_signature(
            "POST",
            url + "?include_entities=true",
            query,
            consumer_secret=CONSUMER_SECRET,
            token_secret=OAUTH1_SECRET,
        )
        == signature
    )


def test_the_oauth1_header_is_built_as_x_documents_it():
    header = oauth1_header(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        {"status": "Hello Ladies + Gentlemen, a signed OAuth request!", "include_entities": "true"},
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        token=OAUTH1_TOKEN,
        token_secret=OAUTH1_SECRET,
        nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        timestamp="1318622958",
    )
    assert header == (
        'OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", '
        'oauth_nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", '
        'oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D", '
        'oauth_signature_method="HMAC-SHA1", '
        'oauth_timestamp="1318622958", '
        'oauth_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", '
        'oauth_version="1.0"'
    )


def test_whoami_names_the_account(x):
    with ordered() as mock:
        register(mock, [me_step()])
        assert x().whoami() == f"@{USERNAME}"


# --- publishing: errors --------------------------------------------------------------------------

ERRORS = [
    (
        "429 waits until the 15-minute window resets",
        429,
        problem(429, "Too Many Requests", "Too Many Requests"),
        limit_headers(remaining=0),
        RateLimited,
        900,
    ),
    (
        "429 on the 24-hour user cap waits until that cap resets",
        429,
        problem(429, "Too Many Requests", "Too Many Requests"),
        {**limit_headers(), "x-user-limit-24hour-remaining": "0"},
        RateLimited,
        86400,
    ),
    (
        "429 usage cap without headers has no wait of its own",
        429,
        {
            "account_id": 1723948576,
            "product_name": "standard-basic",
            "title": "UsageCapExceeded",
            "period": "Monthly",
            "scope": "Product",
            "detail": "Usage cap exceeded: Monthly product cap",
            "type": "https://api.x.com/2/problems/usage-capped",
        },
        {},
        RateLimited,
        None,
    ),
    (
        "500 is transient",
        500,
        problem(
            500, "Internal Server Error", "Internal Server Error", "https://api.x.com/2/problems/internal-error"
        ),
        {},
        Transient,
        None,
    ),
    (
        "502 is transient",
        502,
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
        {"content-type": "text/html"},
        Transient,
        None,
    ),
    ("503 is transient", 503, SERVICE_UNAVAILABLE, {}, Transient, None),
    ("504 is transient", 504, problem(504, "Gateway Timeout", "Gateway Timeout"), {}, Transient, None),
    ("403 duplicate on a first attempt is rejected", 403, DUPLICATE, {}, Rejected, None),
    (
        "403 text too long is rejected",
        403,
        problem(
            403,
            "Forbidden",
            "Your Tweet text is too long. For more information on how X determines text length see https://github.com/xdevplatform/twitter-text.",
        ),
        {},
        Rejected,
        None,
    ),
    (
        "403 not permitted is rejected",
        403,
        problem(403, "Forbidden", "You are not permitted to perform this action."),
        {},
        Rejected,
        None,
    ),
    (
        "400 invalid request is rejected",
        400,
        {
            "errors": [
                {
                    "parameters": {"media.media_ids": ["1861251235830530048"]},
                    "message": "Your media IDs are invalid.",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
        {},
        Rejected,
        None,
    ),
    (
        "403 client-forbidden pauses the account",
        403,
        {
            "client_id": "29384756",
            "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project. You can create a project via the developer portal.",
            "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
            "title": "Client Forbidden",
            "required_enrollment": "Appropriate Level of API Access",
            "reason": "client-not-enrolled",
            "type": "https://api.twitter.com/2/problems/client-forbidden",
        },
        {},
        AuthExpired,
        None,
    ),
    (
        "403 oauth1-permissions pauses the account",
        403,
        problem(
            403,
            "Forbidden",
            "Your client app is not configured with the appropriate oauth1 app permissions for this endpoint.",
            "https://api.x.com/2/problems/oauth1-permissions",
        ),
        {},
        AuthExpired,
        None,
    ),
    ("401 with OAuth 1.0a pauses the account", 401, UNAUTHORIZED, {}, AuthExpired, None),
]


@pytest.mark.parametrize(
    ("case", "status", "body", "headers", "expected", "wait"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_x_errors_become_typed_errors(x, job, case, status, body, headers, expected, wait):
    adapter = x(oauth1=True)
    content = PROBLEM_HEADERS if isinstance(body, dict) else {}
    with ordered() as mock:
        register(
            mock,
            [
                Step(
                    "POST",
                    "/2/tweets",
                    status,
                    body,
                    {**content, **headers},
                    [matchers.json_params_matcher({"text": TEXT})],
                )
            ],
        )
        with pytest.raises(expected) as info:
            adapter.publish(message(TEXT), job)
    assert info.value.http_status == status
    if isinstance(info.value, Transient):
        assert info.value.retry_after == wait
    if isinstance(body, dict) and body.get("detail"):
        assert body["detail"] in str(info.value)
    assert_no_secret(info.value)


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@pytest.mark.parametrize("mode", ["oauth2", "oauth1"])
def test_transport_failures_on_the_first_request_are_classified(x, job, case, raise_, expected, mode):
    adapter = x(oauth1=mode == "oauth1")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(f"{API}/2/tweets", body=raise_())
        with pytest.raises(expected) as info:
            adapter.publish(message(TEXT), job)
    assert_no_secret(info.value)


def test_a_failed_image_upload_is_typed_and_keeps_nothing(x, job, make_media):
    image = make_media("photo.jpg")
    adapter = x()
    with ordered() as mock:
        register(
            mock,
            [
                Step(
                    "POST",
                    "/2/media/upload",
                    400,
                    {
                        "errors": [{"message": "media type unrecognized.", "code": 324}],
                        "title": "Invalid Request",
                        "detail": "One or more parameters to your request was invalid.",
                        "type": "https://api.x.com/2/problems/invalid-request",
                    },
                    dict(PROBLEM_HEADERS),
                )
            ],
        )
        with pytest.raises(Rejected, match="media type unrecognized"):
            adapter.publish(message(TEXT, media=(image,)), job)
    assert "post_requested_at" not in job.saved


# --- OAuth 2.0 refresh ---------------------------------------------------------------------------


def token_step(
    refresh: str, answer: dict[str, Any], *, status: int = 200, secret: str | None = None, base: str = API
) -> Step:
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    match = []
    if secret:
        basic = base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
        match.append(matchers.header_matcher({"Authorization": f"Basic {basic}"}))
    else:
        form["client_id"] = CLIENT_ID
    match.append(matchers.urlencoded_params_matcher(form))
    return Step("POST", "/2/oauth2/token", status, answer, match=match, base=base)


def test_a_401_refreshes_the_token_once_keeps_the_rotated_one_and_the_next_adapter_uses_it(x, job):
    adapter = x()
    with ordered() as mock:
        register(
            mock,
            [
                Step("POST", "/2/tweets", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(ACCESS)]),
                token_step(REFRESH, token_answer()),
                tweet_step({"text": TEXT}, auth=bearer(NEW_ACCESS)),
                me_step(auth=bearer(NEW_ACCESS)),
            ],
        )
        assert adapter.publish(message(TEXT), job).platform_id == POST_ID
    store = adapter.state_dir / "x-token.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    saved = json.loads(store.read_text())
    assert (saved["access_token"], saved["refresh_token"], saved["expires_at"]) == (
        NEW_ACCESS,
        NEW_REFRESH,
        NOW + 7200,
    )

    # A new adapter (a restart) uses the stored token, and refreshes with the rotated refresh token.
    later = x()
    with ordered() as mock:
        register(mock, [me_step(auth=bearer(NEW_ACCESS))])
        assert later.whoami() == f"@{USERNAME}"
    later.clock = lambda: NOW + 7200
    with ordered() as mock:
        register(
            mock,
            [
                token_step(NEW_REFRESH, token_answer(NEWER_ACCESS, NEWER_REFRESH)),
                me_step(auth=bearer(NEWER_ACCESS)),
            ],
        )
        assert later.whoami() == f"@{USERNAME}"
    assert json.loads(store.read_text())["refresh_token"] == NEWER_REFRESH


def test_a_confidential_client_refreshes_with_http_basic(x, job):
    adapter = x(client_secret=CLIENT_SECRET)
    with ordered() as mock:
        register(
            mock,
            [
                Step("GET", "/2/users/me", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(ACCESS)]),
                token_step(REFRESH, token_answer(), secret=CLIENT_SECRET),
                me_step(auth=bearer(NEW_ACCESS)),
            ],
        )
        assert adapter.whoami() == f"@{USERNAME}"


def test_a_rejected_refresh_pauses_the_account_without_showing_a_token(x, job):
    adapter = x(client_secret=CLIENT_SECRET)
    with ordered() as mock:
        register(
            mock,
            [
                Step("POST", "/2/tweets", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(ACCESS)]),
                token_step(
                    REFRESH,
                    {"error": "invalid_request", "error_description": "Value passed for the token was invalid."},
                    status=400,
                    secret=CLIENT_SECRET,
                ),
            ],
        )
        with pytest.raises(AuthExpired, match="Value passed for the token was invalid") as info:
            adapter.publish(message(TEXT), job)
    assert_no_secret(info.value)


def test_a_second_401_after_a_refresh_pauses_the_account(x, job):
    adapter = x()
    with ordered() as mock:
        register(
            mock,
            [
                Step("POST", "/2/tweets", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(ACCESS)]),
                token_step(REFRESH, token_answer()),
                Step("POST", "/2/tweets", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(NEW_ACCESS)]),
            ],
        )
        with pytest.raises(AuthExpired) as info:
            adapter.publish(message(TEXT), job)
    assert info.value.http_status == 401
    assert_no_secret(info.value)


def test_new_credentials_in_the_settings_replace_the_stored_rotated_ones(x):
    adapter = x()
    adapter.auth.store.save(
        {
            "owner": adapter.auth.owner,
            "access_token": NEW_ACCESS,
            "refresh_token": NEW_REFRESH,
            "expires_at": NOW + 3600,
        }
    )
    reauthorised = x(token=NEWER_ACCESS, refresh_token=NEWER_REFRESH)
    with ordered() as mock:
        register(mock, [me_step(auth=bearer(NEWER_ACCESS))])
        assert reauthorised.whoami() == f"@{USERNAME}"


def test_refreshed_tokens_are_registered_as_secrets(x, job):
    seen: list[str] = []
    adapters.base.on_secret(seen.append)
    try:
        adapter = x()
        with ordered() as mock:
            register(
                mock,
                [
                    Step("GET", "/2/users/me", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS)),
                    token_step(REFRESH, token_answer()),
                    me_step(auth=bearer(NEW_ACCESS)),
                ],
            )
            adapter.whoami()
    finally:
        adapters.base._secret_sinks.remove(seen.append)
    assert {ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH} <= set(seen)
    assert USERNAME not in seen


def test_api_base_replaces_the_host_of_api_upload_and_token_requests(x, job, make_media):
    base = "http://127.0.0.1:8080"
    image = make_media("photo.jpg", alt=None)
    adapter = x(api_base=base)
    steps = [
        Step("POST", "/2/media/upload", 401, UNAUTHORIZED, dict(PROBLEM_HEADERS), [bearer(ACCESS)]),
        token_step(REFRESH, token_answer()),
    ]
    upload = image_steps([image], TEXT)
    for step in upload:
        step.match[-1] = bearer(NEW_ACCESS)
    steps += [*upload, me_step(auth=bearer(NEW_ACCESS))]
    for step in steps:
        step.base = base
    with ordered() as mock:
        register(mock, steps)
        assert adapter.publish(message(TEXT, media=(image,)), job).platform_id == POST_ID


# --- interrupted flows, resumed with the same job ------------------------------------------------


def run_interrupted(adapter: XAdapter, post: Any, job: MemoryJob, steps: list[Step], stop: int) -> tuple[int, int]:
    """Fail `steps[stop]` with X's 503, then resume: returns (requests, posts created) overall."""
    with ordered() as mock:
        register(mock, [*steps[:stop], steps[stop].failing()])
        with pytest.raises(Transient):
            adapter.publish(post, job)
        first = len(mock.calls)
    tweet = steps[-1]
    if steps[stop] is tweet:
        # the post request left: the retry looks at the timeline before posting again
        resumed = [me_step(), timeline_step(NOW), tweet]
    else:
        resumed = [*steps[stop:], me_step()]
    with ordered() as mock:
        register(mock, resumed)
        receipt = adapter.publish(post, job)
        second = len(mock.calls)
        created_now = tweets_sent(mock)
    assert receipt.platform_id == POST_ID
    return first + second, created_now


@pytest.mark.parametrize("stop", range(5), ids=["upload 1", "alt 1", "upload 2", "alt 2", "post"])
def test_an_image_post_interrupted_after_each_step_resumes_without_uploading_again(x, make_media, media_dir, stop):
    media_files.write(media_dir, "img1.jpg", media_files.jpeg_bytes(pad_to=300))
    images = [make_media("photo.jpg", alt="Guru mengajar"), make_media("img1.jpg", alt="Murid belajar")]
    steps = image_steps(images, TEXT)
    job = MemoryJob(key="k-images", on_save=json.dumps)  # the checkpoint must survive a JSON column
    total, created_now = run_interrupted(x(), message(TEXT, media=tuple(images)), job, steps, stop)
    assert created_now == 1
    assert [entry["id"] for entry in job.saved["media"]] == MEDIA_IDS[:2]


@pytest.mark.parametrize(
    "stop", range(7), ids=["initialize", "append 0", "append 1", "finalize", "status 1", "status 2", "post"]
)
def test_a_video_post_interrupted_after_each_step_resumes_where_it_stopped(x, make_media, stop):
    adapter = x()
    adapter.chunk_size = 1024
    video = make_media("clip.mp4", alt=None)
    steps = video_steps(video, TEXT, 1024)
    job = MemoryJob(key="k-video", on_save=json.dumps)
    total, created_now = run_interrupted(adapter, message(TEXT, media=(video,)), job, steps, stop)
    assert created_now == 1
    assert job.saved["media"][0]["id"] == VIDEO_ID


def test_media_saved_for_another_file_is_uploaded_afresh(x, make_media, media_dir):
    media_files.write(media_dir, "img1.jpg", media_files.jpeg_bytes(pad_to=300))
    job = MemoryJob(
        key="k-edit",
        state={"media": [{"file": "old.jpg", "size": 10, "id": "1111111111111111111", "ready": True}]},
    )
    image = make_media("img1.jpg", alt=None)
    with ordered() as mock:
        register(mock, [*image_steps([image], TEXT), me_step()])
        x().publish(message(TEXT, media=(image,)), job)
    assert job.saved["media"][0]["id"] == MEDIA_IDS[0]


# --- duplicates, lookup and settling -------------------------------------------------------------


def test_a_duplicate_on_a_retry_settles_as_published_from_the_timeline(x):
    adapter = x()
    job = MemoryJob(key="k-dup", attempt=2, state={"post_requested_at": NOW - 60})
    with ordered() as mock:
        register(
            mock,
            [
                me_step(),
                timeline_step(NOW - 60),  # not visible yet on the first look
                tweet_step({"text": TEXT}, status=403, answer=DUPLICATE, headers=dict(PROBLEM_HEADERS)),
                timeline_step(NOW - 60, ("1861251399999999999", "Another post"), (POST_ID, TEXT)),
            ],
        )
        receipt = adapter.publish(message(TEXT), job)
    assert (receipt.platform_id, receipt.url) == (POST_ID, f"https://x.com/{USERNAME}/status/{POST_ID}")


def test_a_retry_finds_a_post_x_created_despite_its_error_and_does_not_post_again(x):
    adapter = x()
    job = MemoryJob(key="k-503", attempt=2, state={"post_requested_at": NOW - 30})
    with ordered() as mock:
        register(mock, [me_step(), timeline_step(NOW - 30, (POST_ID, TEXT))])
        assert adapter.publish(message(TEXT), job).platform_id == POST_ID
        assert tweets_sent(mock) == 0


def test_a_duplicate_on_a_retry_that_is_not_on_the_timeline_is_left_for_a_person(x):
    adapter = x()
    job = MemoryJob(key="k-dup", attempt=2, state={"post_requested_at": NOW - 60})
    with ordered() as mock:
        register(
            mock,
            [
                me_step(),
                timeline_step(NOW - 60),
                tweet_step({"text": TEXT}, status=403, answer=DUPLICATE, headers=dict(PROBLEM_HEADERS)),
                timeline_step(NOW - 60),
            ],
        )
        with pytest.raises(MaybeSent, match="duplicate"):
            adapter.publish(message(TEXT), job)


def test_a_duplicate_on_a_later_attempt_that_never_posted_is_rejected(x):
    # Attempt 1 failed while uploading, so no post request ever left: the copy on X is not ours.
    adapter = x()
    job = MemoryJob(key="k-dup", attempt=3)
    with ordered() as mock:
        register(mock, [tweet_step({"text": TEXT}, status=403, answer=DUPLICATE, headers=dict(PROBLEM_HEADERS))])
        with pytest.raises(Rejected, match="duplicate content"):
            adapter.publish(message(TEXT), job)


def test_lookup_without_a_post_request_finds_nothing_without_asking_x(x, job):
    with ordered():
        assert x().lookup(message(TEXT), job) is None


@pytest.mark.parametrize(
    ("post", "shown"),
    [
        (
            message("Jadwal & lokasi <vaksin>", link="https://dinkes.palembang.go.id/vaksin/jadwal-lengkap"),
            "Jadwal &amp; lokasi &lt;vaksin&gt;\n\nhttps://t.co/x8Kq2LmN0p",
        ),
        (message("Upacara  Hari\nGuru"), "Upacara Hari Guru"),
    ],
    ids=["entities and a t.co link", "whitespace"],
)
def test_lookup_matches_the_post_as_x_shows_it_back(x, post, shown):
    job = MemoryJob(key="k-crash", state={"post_requested_at": NOW})
    with ordered() as mock:
        register(mock, [me_step(), timeline_step(NOW, ("1861251399999999999", "Jadwal lain"), (POST_ID, shown))])
        receipt = x().lookup(post, job)
    assert receipt is not None and receipt.platform_id == POST_ID


def test_lookup_of_a_media_post_accepts_the_media_link_x_adds(x, make_media):
    job = MemoryJob(key="k-crash", state={"post_requested_at": NOW})
    image = make_media("photo.jpg")
    with ordered() as mock:
        register(mock, [me_step(), timeline_step(NOW, (POST_ID, f"{TEXT} https://t.co/AbCdEf1234"))])
        assert x().lookup(message(TEXT, media=(image,)), job).platform_id == POST_ID


def test_lookup_does_not_match_a_different_text(x):
    job = MemoryJob(key="k-crash", state={"post_requested_at": NOW})
    with ordered() as mock:
        register(mock, [me_step(), timeline_step(NOW, (POST_ID, "Selamat Hari Guru"))])
        assert x().lookup(message(TEXT), job) is None
