"""Bluesky adapter: XRPC requests as the atproto lexicons define them, answers as a PDS sends them.

Mocked answers keep the lexicons' shapes (`createSession`, `refreshSession`, `uploadBlob`,
`createRecord`, `getRecord`, `resolveHandle`, `getSession`) and the PDS's error bodies
(`{"error", "message"}`). Precise tests run under `assert_all_requests_are_fired` with matchers on
method, path, body and `Authorization`; the session and crash tests use `FakePDS`, a stateful
stand-in that issues, expires and rotates tokens and refuses a second record with the same key,
and assert its exact call log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from adapters import base
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
from adapters.bluesky import TID_PATTERN, BlueskyAdapter, byte_span, find_facets, image_size, record_key
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES
from tests.support import media as media_files

SERVICE = "https://bsky.social"
XRPC = f"{SERVICE}/xrpc"
HANDLE = "humas.palembang.go.id"
APP_PASSWORD = "k3vq-7m2x-pa9d-w4zt"
DID = "did:plc:5kq3ubw7bdhvcs3xl4tnf7ma"
PGRI_DID = "did:plc:pgri7ugx2mdgl4b5j6qjn3vd"
NOW = datetime(2026, 11, 25, 1, 0, 0, tzinfo=timezone.utc)
CREATED_AT = "2026-11-25T01:00:00.000Z"


def jwt(kind: str, number: int) -> str:
    """A token shaped like the PDS's (ES256K JWT); the signature part names it for the tests."""
    header = base64.urlsafe_b64encode(json.dumps({"typ": "at+jwt" if kind == "access" else "refresh+jwt", "alg": "ES256K"}).encode()).decode().rstrip("=")
    claims = base64.urlsafe_b64encode(json.dumps({"scope": "com.atproto.appPass", "sub": DID, "iat": 1764032400}).encode()).decode().rstrip("=")
    return f"{header}.{claims}.{kind}-{number}-Qm9Yx2Lp"


def session_answer(number: int) -> dict[str, Any]:
    """`com.atproto.server.createSession` / `refreshSession` output."""
    return {
        "did": DID,
        "didDoc": {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": DID,
            "alsoKnownAs": [f"at://{HANDLE}"],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://morel.us-east.host.bsky.network"}],
        },
        "handle": HANDLE,
        "email": "humas@palembang.go.id",
        "emailConfirmed": True,
        "emailAuthFactor": False,
        "accessJwt": jwt("access", number),
        "refreshJwt": jwt("refresh", number),
        "active": True,
    }


def blob_answer(data: bytes, mime: str) -> dict[str, Any]:
    digest = base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")
    return {"blob": {"$type": "blob", "ref": {"$link": f"bafkrei{digest}"}, "mimeType": mime, "size": len(data)}}


def created_answer(rkey: str) -> dict[str, Any]:
    return {
        "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
        "cid": "bafyreihm7c2fqm6rj6ecafaxzg45qsxkrjzodmz4j3m3sstlrxqutcq5zu",
        "commit": {"cid": "bafyreibzq7i7pnb4kxdutdwb5lsvvjwf5bimbtr6sbdsjqx6mgnyqrftzi", "rev": "3lbxk2nsqbs2c"},
        "validationStatus": "valid",
    }


def bearer(token: str) -> Callable[..., Any]:
    return matchers.header_matcher({"Authorization": f"Bearer {token}"})


def raw_body(data: bytes) -> Callable[..., Any]:
    """Matches a request whose body is exactly these bytes (an image upload)."""

    def match(request: requests.PreparedRequest) -> tuple[bool, str]:
        same = request.body == data
        return same, "" if same else f"body differs ({len(request.body or b'')} bytes sent, {len(data)} expected)"

    return match


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def build(make_adapter: Callable[..., Any]) -> Callable[..., BlueskyAdapter]:
    def new(**account: Any) -> BlueskyAdapter:
        adapter = make_adapter(BlueskyAdapter, **{"handle": HANDLE, "app_password": APP_PASSWORD, "language": "id", **account})
        adapter.clock = lambda: NOW
        return adapter

    return new


@pytest.fixture
def adapter(build: Callable[..., BlueskyAdapter]) -> BlueskyAdapter:
    return build()


@pytest.fixture
def signed_in(build: Callable[..., BlueskyAdapter]) -> BlueskyAdapter:
    """An adapter whose account already has a stored session (access-1, refresh-1)."""
    made = build()
    made._store(session_answer(1))
    return made


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def expect_sign_in(rsps: responses.RequestsMock, number: int = 1) -> None:
    rsps.post(
        f"{XRPC}/com.atproto.server.createSession",
        json=session_answer(number),
        match=[matchers.json_params_matcher({"identifier": HANDLE, "password": APP_PASSWORD})],
    )


def expect_record(rsps: responses.RequestsMock, rkey: str, record: dict[str, Any], token: str = jwt("access", 1), **answer: Any) -> None:
    body = {"repo": DID, "collection": "app.bsky.feed.post", "rkey": rkey, "record": record}
    answer = answer or {"json": created_answer(rkey)}
    rsps.post(f"{XRPC}/com.atproto.repo.createRecord", match=[bearer(token), matchers.json_params_matcher(body)], **answer)


def expect_get_record(rsps: responses.RequestsMock, rkey: str, *, found: bool, token: str = jwt("access", 1)) -> None:
    params = {"repo": DID, "collection": "app.bsky.feed.post", "rkey": rkey}
    if found:
        answer: dict[str, Any] = {"json": {"uri": f"at://{DID}/app.bsky.feed.post/{rkey}", "cid": "bafyreihm7c2fqm6rj6ecafaxzg45qsxkrjzodmz4j3m3sstlrxqutcq5zu", "value": {"$type": "app.bsky.feed.post", "text": "…", "createdAt": CREATED_AT}}}
    else:
        answer = {"status": 400, "json": {"error": "RecordNotFound", "message": f"Could not locate record: at://{DID}/app.bsky.feed.post/{rkey}"}}
    rsps.get(f"{XRPC}/com.atproto.repo.getRecord", match=[bearer(token), matchers.query_param_matcher(params)], **answer)


def assert_no_secret(error: BaseException) -> None:
    said = f"{error} {error.args!r}"
    for secret in (APP_PASSWORD, jwt("access", 1), jwt("refresh", 1), jwt("access", 2), jwt("refresh", 2)):
        assert secret not in said


# --- record keys ---------------------------------------------------------------------------------


def test_the_record_key_is_a_valid_tid_derived_stably_from_the_delivery_key() -> None:
    keys = [f"hari-guru-2026/humas-bsky/{n}" for n in range(500)]
    rkeys = [record_key(key) for key in keys]

    assert all(TID_PATTERN.match(rkey) for rkey in rkeys)
    assert rkeys == [record_key(key) for key in keys]  # the same on every call, in any process
    assert len(set(rkeys)) == len(rkeys)
    assert record_key("k-0123456789abcdef0123456789abcdef") == "3k4elj7cieplf"


def test_the_record_key_never_claims_a_future_time() -> None:
    alphabet = "234567abcdefghijklmnopqrstuvwxyz"
    for n in range(500):
        value = 0
        for char in record_key(f"key-{n}"):
            value = value * 32 + alphabet.index(char)
        micros = value >> 10
        assert datetime(2023, 1, 1, tzinfo=timezone.utc).timestamp() * 1e6 <= micros < NOW.timestamp() * 1e6


# --- facets ------------------------------------------------------------------------------------

PGRI = {"pgri.bsky.social": PGRI_DID}

# (case id, text, expected facets as (byteStart, byteEnd, feature)) — offsets counted by hand:
FACET_CASES = [
    (
        # "Selamat " 8 bytes, 🎉 4, " " 1 → "#HariGuru" 13..22, " " → the link 23..44.
        "emoji-tag-link",
        "Selamat 🎉 #HariGuru https://example.go.id",
        [(13, 22, {"$type": "app.bsky.richtext.facet#tag", "tag": "HariGuru"}),
         (23, 44, {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.go.id"})],
    ),
    (
        # ꦱꦸꦒꦼꦁ: 5 code points × 3 bytes = 15, " " 16, ꦫꦮꦸꦃ 4 × 3 → 28, " " → "#SugengRawuh" 29..41,
        # " " → "@pgri.bsky.social" 42..59, " " → the link 60..86.
        "javanese-tag-mention-link",
        "ꦱꦸꦒꦼꦁ ꦫꦮꦸꦃ #SugengRawuh @pgri.bsky.social https://example.go.id/jawa",
        [(29, 41, {"$type": "app.bsky.richtext.facet#tag", "tag": "SugengRawuh"}),
         (42, 59, {"$type": "app.bsky.richtext.facet#mention", "did": PGRI_DID}),
         (60, 86, {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.go.id/jawa"})],
    ),
    (
        # "Kegiatan di Pasar Cinde " 24, "–" 3, " " → "#PalembangEmas" 28..42, " " 43, 🇮🇩 8 → 51,
        # " " → the link 52..75 without the sentence's full stop.
        "dash-flag-trailing-stop",
        "Kegiatan di Pasar Cinde – #PalembangEmas 🇮🇩 https://palembang.go.id.",
        [(28, 42, {"$type": "app.bsky.richtext.facet#tag", "tag": "PalembangEmas"}),
         (52, 75, {"$type": "app.bsky.richtext.facet#link", "uri": "https://palembang.go.id"})],
    ),
    (
        # "Hari " 5 → "#Guru" 5..10 (the "!" is not part of the tag); "#2026" is only digits: no tag;
        # an unknown handle stays text; a "#" inside a link is not a tag.
        "edge-cases",
        "Hari #Guru! #2026 @tidak.ada.example (https://example.go.id/a#b)",
        [(5, 10, {"$type": "app.bsky.richtext.facet#tag", "tag": "Guru"}),
         (38, 63, {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.go.id/a#b"})],
    ),
    (
        # "Sugeng rawuh, " 14, "ꦥꦏ꧀" 3 × 3 → 23, "\n" 24 → "@pgri.bsky.social" 24..41.
        "newline-before-mention",
        "Sugeng rawuh, ꦥꦏ꧀\n@pgri.bsky.social",
        [(24, 41, {"$type": "app.bsky.richtext.facet#mention", "did": PGRI_DID})],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), FACET_CASES, ids=[c[0] for c in FACET_CASES])
def test_facets_carry_hand_computed_utf8_byte_offsets(case: str, text: str, expected: list[tuple[int, int, dict[str, Any]]]) -> None:
    facets = find_facets(text, PGRI.get)

    assert facets == [{"index": {"byteStart": s, "byteEnd": e}, "features": [f]} for s, e, f in expected]
    encoded = text.encode("utf-8")
    for facet, (start, end, feature) in zip(facets, expected):
        piece = encoded[start:end].decode("utf-8")  # the offsets land on character boundaries
        assert piece.lstrip("#@") in (feature.get("tag"), feature.get("uri"), "pgri.bsky.social")


def test_byte_span_differs_from_character_offsets_beyond_ascii() -> None:
    text = "ꦱꦸ 🎉 ok"
    assert byte_span(text, 5, 7) == {"byteStart": 3 * 2 + 1 + 4 + 1, "byteEnd": 3 * 2 + 1 + 4 + 1 + 2}


# --- success, per kind of post -----------------------------------------------------------------


def test_a_text_post_signs_in_once_and_creates_the_record_with_facets(adapter: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob) -> None:
    rkey = record_key(job.key)
    text = "Selamat 🎉 #HariGuru https://example.go.id"
    expect_sign_in(mocked)
    expect_record(mocked, rkey, {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": CREATED_AT,
        "langs": ["id"],
        "facets": [
            {"index": {"byteStart": 13, "byteEnd": 22}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "HariGuru"}]},
            {"index": {"byteStart": 23, "byteEnd": 44}, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.go.id"}]},
        ],
    })

    receipt = adapter.publish(message(text), job)

    assert receipt == Receipt(f"at://{DID}/app.bsky.feed.post/{rkey}", f"https://bsky.app/profile/{HANDLE}/post/{rkey}")
    assert job.saved == {"created_at": CREATED_AT, "rkey": rkey, "uri": receipt.platform_id}


@pytest.mark.parametrize(
    ("title", "card_title"),
    [("Hari Guru Nasional 2026", "Hari Guru Nasional 2026"), (None, "https://example.go.id/hari-guru")],
    ids=["with-title", "link-as-title"],
)
def test_a_post_with_a_link_and_no_images_carries_a_link_card(
    signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob, title: str | None, card_title: str
) -> None:
    rkey = record_key(job.key)
    external = {"uri": "https://example.go.id/hari-guru", "title": card_title, "description": ""}
    expect_record(mocked, rkey, {
        "$type": "app.bsky.feed.post",
        "text": "Selamat Hari Guru Nasional!",
        "createdAt": CREATED_AT,
        "langs": ["id"],
        "embed": {"$type": "app.bsky.embed.external", "external": external},
    })

    receipt = signed_in.publish(message(link="https://example.go.id/hari-guru", title=title), job)

    assert receipt.url == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"


def test_images_are_uploaded_as_blobs_and_embedded_with_alt_and_aspect_ratio(
    signed_in: BlueskyAdapter, mocked: responses.RequestsMock, make_media: Callable[..., Media], job: MemoryJob
) -> None:
    png, jpg = make_media("photo.png", alt="Guru mengajar di kelas"), make_media("photo.jpg", alt="Murid memberi bunga")
    for item in (png, jpg):
        mocked.post(
            f"{XRPC}/com.atproto.repo.uploadBlob",
            json=blob_answer(item.read(), item.mime),
            match=[bearer(jwt("access", 1)), matchers.header_matcher({"Content-Type": item.mime}), raw_body(item.read())],
        )
    rkey = record_key(job.key)
    text = "Foto kegiatan Hari Guru\n\nhttps://example.go.id/hari-guru"  # no card beside images: the link joins the text
    expect_record(mocked, rkey, {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": CREATED_AT,
        "langs": ["id"],
        "facets": [{"index": {"byteStart": 25, "byteEnd": 56}, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.go.id/hari-guru"}]}],
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [
                # The PNG header says 4×3; this JPEG has no frame header, so no ratio is claimed.
                {"alt": "Guru mengajar di kelas", "image": blob_answer(png.read(), "image/png")["blob"], "aspectRatio": {"width": 4, "height": 3}},
                {"alt": "Murid memberi bunga", "image": blob_answer(jpg.read(), "image/jpeg")["blob"]},
            ],
        },
    })

    signed_in.publish(message("Foto kegiatan Hari Guru", link="https://example.go.id/hari-guru", media=(png, jpg)), job)

    assert [entry["file"] for entry in job.saved["blobs"]] == ["photo.png", "photo.jpg"]


def test_mentions_become_facets_only_for_handles_that_resolve(signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob) -> None:
    text = "Terima kasih @pgri.bsky.social dan @belum.terdaftar.example"
    mocked.get(
        f"{XRPC}/com.atproto.identity.resolveHandle",
        json={"did": PGRI_DID},
        match=[bearer(jwt("access", 1)), matchers.query_param_matcher({"handle": "pgri.bsky.social"})],
    )
    mocked.get(
        f"{XRPC}/com.atproto.identity.resolveHandle",
        status=400,
        json={"error": "InvalidRequest", "message": "Unable to resolve handle"},
        match=[bearer(jwt("access", 1)), matchers.query_param_matcher({"handle": "belum.terdaftar.example"})],
    )
    expect_record(mocked, record_key(job.key), {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": CREATED_AT,
        "langs": ["id"],
        "facets": [{"index": {"byteStart": 13, "byteEnd": 30}, "features": [{"$type": "app.bsky.richtext.facet#mention", "did": PGRI_DID}]}],
    })

    signed_in.publish(message(text), job)


def test_image_size_reads_png_gif_and_jpeg_headers() -> None:
    jpeg_with_frame = b"\xff\xd8" + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\xff\xc0\x00\x11\x08\x02\xd0\x05\x00\x03" + b"\x00" * 9 + b"\xff\xd9"
    assert image_size(media_files.png_bytes(1200, 675)) == (1200, 675)
    assert image_size(b"GIF89a\x80\x02\xe0\x01" + b"\x00" * 8) == (640, 480)
    assert image_size(jpeg_with_frame) == (1280, 720)
    assert image_size(media_files.jpeg_bytes()) is None
    assert image_size(b"not an image") is None


# --- errors ------------------------------------------------------------------------------------

# (case id, createRecord's answer, whether getRecord is asked, typed error, what the message says)
RECORD_ERRORS = [
    ("invalid-record", 400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"}, {}, False, Rejected, "300 graphemes"),
    ("rate-limited", 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
     {"ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": str(int(NOW.timestamp()) + 600), "ratelimit-policy": "5000;w=3600"}, False, RateLimited, "Rate Limit Exceeded"),
    ("server-error", 500, {"error": "InternalServerError", "message": "Internal Server Error"}, {}, True, Transient, "Internal Server Error"),
    ("upstream-failure", 502, {"error": "UpstreamFailure", "message": "Upstream Failure"}, {}, True, Transient, "Upstream Failure"),
]


@pytest.mark.parametrize(("case", "status", "body", "headers", "asks", "expected", "says"), RECORD_ERRORS, ids=[e[0] for e in RECORD_ERRORS])
def test_each_documented_create_error_becomes_its_typed_error_without_secrets(
    signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob,
    case: str, status: int, body: dict[str, Any], headers: dict[str, str], asks: bool, expected: type[Exception], says: str,
) -> None:
    rkey = record_key(job.key)
    record = {"$type": "app.bsky.feed.post", "text": "Selamat Hari Guru Nasional!", "createdAt": CREATED_AT, "langs": ["id"]}
    expect_record(mocked, rkey, record, status=status, json=body, headers=headers)
    if asks:  # a failed create may still have written: the record key says whether it did
        expect_get_record(mocked, rkey, found=False)

    with pytest.raises(expected) as info:
        signed_in.publish(message(), job)

    assert type(info.value) is expected and info.value.http_status == status
    assert says in str(info.value)
    assert_no_secret(info.value)
    if case == "rate-limited":
        assert info.value.retry_after == 600


def test_a_record_key_already_taken_by_an_earlier_attempt_answers_that_record(signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob) -> None:
    rkey = record_key(job.key)
    record = {"$type": "app.bsky.feed.post", "text": "Selamat Hari Guru Nasional!", "createdAt": CREATED_AT, "langs": ["id"]}
    expect_record(mocked, rkey, record, status=500, json={"error": "InternalServerError", "message": "Internal Server Error"})
    expect_get_record(mocked, rkey, found=True)

    receipt = signed_in.publish(message(), job)

    assert receipt == Receipt(f"at://{DID}/app.bsky.feed.post/{rkey}", f"https://bsky.app/profile/{HANDLE}/post/{rkey}")
    assert job.saved["uri"] == receipt.platform_id


SIGN_IN_ERRORS = [
    ("wrong-password", 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, {}, AuthExpired),
    ("taken-down", 401, {"error": "AccountTakedown", "message": "Account has been taken down"}, {}, AuthExpired),
    ("malformed-identifier", 400, {"error": "InvalidRequest", "message": "Input/identifier must be a string"}, {}, AuthExpired),
    ("too-many-logins", 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
     {"ratelimit-limit": "30", "ratelimit-remaining": "0", "ratelimit-reset": str(int(NOW.timestamp()) + 240), "ratelimit-policy": "30;w=300"}, RateLimited),
]


@pytest.mark.parametrize(("case", "status", "body", "headers", "expected"), SIGN_IN_ERRORS, ids=[e[0] for e in SIGN_IN_ERRORS])
def test_a_refused_sign_in_pauses_the_account_and_never_shows_the_password(
    adapter: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob,
    case: str, status: int, body: dict[str, Any], headers: dict[str, str], expected: type[Exception],
) -> None:
    credentials = matchers.json_params_matcher({"identifier": HANDLE, "password": APP_PASSWORD})
    mocked.post(f"{XRPC}/com.atproto.server.createSession", status=status, json=body, headers=headers, match=[credentials])

    with pytest.raises(expected) as info:
        adapter.publish(message(), job)

    assert type(info.value) is expected
    assert_no_secret(info.value)
    if expected is RateLimited:
        assert info.value.retry_after == 240


def test_a_session_the_server_refuses_is_replaced_once_then_the_account_is_paused(signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob) -> None:
    rkey = record_key(job.key)
    record = {"$type": "app.bsky.feed.post", "text": "Selamat Hari Guru Nasional!", "createdAt": CREATED_AT, "langs": ["id"]}
    refused = {"status": 401, "json": {"error": "AuthenticationRequired", "message": "Authentication Required"}}
    expect_record(mocked, rkey, record, token=jwt("access", 1), **refused)
    expect_sign_in(mocked, number=2)
    expect_record(mocked, rkey, record, token=jwt("access", 2), **refused)

    with pytest.raises(AuthExpired) as info:
        signed_in.publish(message(), job)

    assert_no_secret(info.value)


@pytest.mark.parametrize("first_request", ["createSession", "createRecord"])
@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
def test_transport_failures_on_the_first_request_are_typed(
    build: Callable[..., BlueskyAdapter], mocked: responses.RequestsMock, job: MemoryJob,
    first_request: str, case: str, raise_: Callable[[], Exception], expected: type[Exception],
) -> None:
    adapter = build()
    if first_request == "createRecord":
        adapter._store(session_answer(1))
        mocked.post(f"{XRPC}/com.atproto.repo.createRecord", body=raise_(), match=[bearer(jwt("access", 1))])
    else:
        credentials = matchers.json_params_matcher({"identifier": HANDLE, "password": APP_PASSWORD})
        mocked.post(f"{XRPC}/com.atproto.server.createSession", body=raise_(), match=[credentials])

    with pytest.raises(expected) as info:
        adapter.publish(message(), job)

    assert_no_secret(info.value)


# --- lookup and whoami -------------------------------------------------------------------------


@pytest.mark.parametrize("found", [True, False], ids=["found", "not-found"])
def test_lookup_asks_for_the_record_by_its_key(signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob, found: bool) -> None:
    rkey = record_key(job.key)
    expect_get_record(mocked, rkey, found=found)

    receipt = signed_in.lookup(message(), job)

    assert receipt == (Receipt(f"at://{DID}/app.bsky.feed.post/{rkey}", f"https://bsky.app/profile/{HANDLE}/post/{rkey}") if found else None)


def test_lookup_understands_older_servers_that_name_a_missing_record_invalid_request(signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob) -> None:
    rkey = record_key(job.key)
    mocked.get(
        f"{XRPC}/com.atproto.repo.getRecord",
        status=400,
        json={"error": "InvalidRequest", "message": f"Could not locate record: at://{DID}/app.bsky.feed.post/{rkey}"},
        match=[bearer(jwt("access", 1)), matchers.query_param_matcher({"repo": DID, "collection": "app.bsky.feed.post", "rkey": rkey})],
    )

    assert signed_in.lookup(message(), job) is None


def test_a_recorded_answer_is_used_without_asking(signed_in: BlueskyAdapter, mocked: responses.RequestsMock) -> None:
    job = MemoryJob(key="k-1", state={"uri": f"at://{DID}/app.bsky.feed.post/{record_key('k-1')}"})

    assert signed_in.lookup(message(), job) == signed_in.publish(message(), job)
    assert len(mocked.calls) == 0


def test_whoami_names_the_handle_and_did(signed_in: BlueskyAdapter, mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{XRPC}/com.atproto.server.getSession",
        json={"handle": HANDLE, "did": DID, "email": "humas@palembang.go.id", "emailConfirmed": True, "active": True},
        match=[bearer(jwt("access", 1))],
    )

    assert signed_in.whoami() == f"{HANDLE} ({DID})"


def test_api_base_replaces_the_service_host(build: Callable[..., BlueskyAdapter], mocked: responses.RequestsMock) -> None:
    adapter = build(service="https://pds.palembang.go.id", api_base="http://127.0.0.1:8080")
    credentials = matchers.json_params_matcher({"identifier": HANDLE, "password": APP_PASSWORD})
    mocked.post("http://127.0.0.1:8080/xrpc/com.atproto.server.createSession", json=session_answer(1), match=[credentials])
    mocked.get("http://127.0.0.1:8080/xrpc/com.atproto.server.getSession", json={"handle": HANDLE, "did": DID}, match=[bearer(jwt("access", 1))])

    assert adapter.whoami() == f"{HANDLE} ({DID})"


def test_media_that_is_not_an_image_is_refused_before_anything_is_sent(
    signed_in: BlueskyAdapter, mocked: responses.RequestsMock, make_media: Callable[..., Media], job: MemoryJob
) -> None:
    with pytest.raises(Rejected, match="clip.mp4 is video/mp4"):
        signed_in.publish(message(media=(make_media("clip.mp4"),)), job)

    assert len(mocked.calls) == 0 and job.saved == {}


def test_a_damaged_session_file_leads_to_one_new_sign_in(build: Callable[..., BlueskyAdapter], pds: FakePDS) -> None:
    adapter = build()
    assert adapter.state_dir is not None
    adapter.state_dir.mkdir(parents=True, exist_ok=True)
    (adapter.state_dir / "bluesky-session.json").write_text("{not json")

    adapter.publish(message(), MemoryJob(key="k-1"))

    assert pds.calls == ["com.atproto.server.createSession", "com.atproto.repo.createRecord"]


# --- offline checks ------------------------------------------------------------------------------


def test_check_counts_graphemes_bytes_and_asks_for_alt_text(adapter: BlueskyAdapter, make_media: Callable[..., Media], media_dir: Path) -> None:
    media_files.write(media_dir, "large.jpg", media_files.jpeg_bytes(pad_to=1_000_001))
    assert adapter.check(message("ꦱꦸ" * 300)) == []  # 300 Javanese syllables: 600 code points, 300 graphemes

    post = message(
        "ꦱꦸ" * 301,
        media=(make_media("photo.png", alt=None), make_media("clip.mp4"), make_media("large.jpg"), make_media("photo.jpg"), make_media("second.jpg")),
    )
    problems = {p.field: p.message for p in adapter.check(post)}

    assert problems == {
        "text": "is 301 characters long; the limit is 300",
        "media": "has 5 files; the limit is 4",
        "media[0].alt": "is required on Bluesky: describe the image",
        "media[1]": "clip.mp4 is video/mp4; this platform takes image",
        "media[2]": "large.jpg is 1000001 bytes; the limit is 1000000",
    }


def test_check_holds_text_to_3000_bytes_as_well(adapter: BlueskyAdapter) -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, 25 bytes
    problems = adapter.check(message(family * 121))

    assert [(p.field, p.message) for p in problems] == [("text", "is 3025 bytes in UTF-8; the limit is 3000")]


# --- a stateful stand-in for the session and crash tests -----------------------------------------


class Crash(Exception):
    """The process died here (kill -9, power loss)."""


@dataclass
class CrashingJob(MemoryJob):
    """A job whose n-th `save` dies before it commits."""

    crash_at_save: int | None = None
    saves: int = 0

    def save(self, state: Any) -> None:
        self.saves += 1
        if self.saves == self.crash_at_save:
            raise Crash(f"killed before save #{self.saves} committed")
        super().save(state)


class FakePDS:
    """Just enough of a PDS: sessions that expire and rotate, blobs, records keyed by rkey."""

    def __init__(self, rsps: responses.RequestsMock, handles: dict[str, str] | None = None) -> None:
        self.handles = handles or PGRI
        self.issued = 0
        self.access: dict[str, str] = {}  # token → "valid" | "expired"
        self.refresh: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, int] = {}
        self.calls: list[str] = []
        self.lose_answer_at: int | None = None
        for method, nsid, handler in [
            ("POST", "com.atproto.server.createSession", self._create_session),
            ("POST", "com.atproto.server.refreshSession", self._refresh_session),
            ("GET", "com.atproto.server.getSession", self._get_session),
            ("GET", "com.atproto.identity.resolveHandle", self._resolve),
            ("POST", "com.atproto.repo.uploadBlob", self._upload),
            ("POST", "com.atproto.repo.createRecord", self._create_record),
            ("GET", "com.atproto.repo.getRecord", self._get_record),
        ]:
            rsps.add_callback(method, f"{XRPC}/{nsid}", self._wrap(nsid, handler))

    def count(self, nsid: str) -> int:
        return sum(1 for call in self.calls if call == nsid)

    def expire_access_tokens(self) -> None:
        self.access = {token: "expired" for token in self.access}

    def _wrap(self, nsid: str, handler: Callable[[requests.PreparedRequest], tuple[int, Any]]) -> Callable[..., Any]:
        def answer(request: requests.PreparedRequest) -> Any:
            self.calls.append(nsid)
            status, body = handler(request)
            if len(self.calls) == self.lose_answer_at:
                return requests.ReadTimeout("read timed out")  # done, but the answer never arrives
            return (status, {"Content-Type": "application/json"}, json.dumps(body))

        return answer

    def _issue(self) -> dict[str, Any]:
        self.issued += 1
        answer = session_answer(self.issued)
        self.access[answer["accessJwt"]] = "valid"
        self.refresh.add(answer["refreshJwt"])
        return answer

    def _token(self, request: requests.PreparedRequest) -> str:
        return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")

    def _authorized(self, request: requests.PreparedRequest) -> tuple[int, Any] | None:
        state = self.access.get(self._token(request))
        if state == "expired":
            return 400, {"error": "ExpiredToken", "message": "Token has expired"}
        if state is None:
            return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
        return None

    def _create_session(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        body = json.loads(request.body or b"{}")
        if body != {"identifier": HANDLE, "password": APP_PASSWORD}:
            return 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
        return 200, self._issue()

    def _refresh_session(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        token = self._token(request)
        if token not in self.refresh:
            return 400, {"error": "ExpiredToken", "message": "Token has been revoked"}
        self.refresh.discard(token)  # refresh tokens rotate: each works once
        return 200, self._issue()

    def _get_session(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        return self._authorized(request) or (200, {"handle": HANDLE, "did": DID, "active": True})

    def _resolve(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        handle = parse_qs(urlsplit(request.url or "").query)["handle"][0]
        if handle in self.handles:
            return 200, {"did": self.handles[handle]}
        return 400, {"error": "InvalidRequest", "message": "Unable to resolve handle"}

    def _upload(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        refused = self._authorized(request)
        if refused:
            return refused
        data = request.body if isinstance(request.body, bytes) else b""
        answer = blob_answer(data, str(request.headers["Content-Type"]))
        link = answer["blob"]["ref"]["$link"]
        self.blobs[link] = self.blobs.get(link, 0) + 1
        return 200, answer

    def _create_record(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        refused = self._authorized(request)
        if refused:
            return refused
        body = json.loads(request.body or b"{}")
        assert body["repo"] == DID and body["collection"] == "app.bsky.feed.post"
        assert TID_PATTERN.match(body["rkey"])
        if body["rkey"] in self.records:
            return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
        for image in body["record"].get("embed", {}).get("images", []):
            assert image["image"]["ref"]["$link"] in self.blobs, "a record may only use uploaded blobs"
        answer = created_answer(body["rkey"])
        self.records[body["rkey"]] = {"uri": answer["uri"], "cid": answer["cid"], "value": body["record"]}
        return 200, answer

    def _get_record(self, request: requests.PreparedRequest) -> tuple[int, Any]:
        refused = self._authorized(request)
        if refused:
            return refused
        rkey = parse_qs(urlsplit(request.url or "").query)["rkey"][0]
        if rkey in self.records:
            return 200, self.records[rkey]
        return 400, {"error": "RecordNotFound", "message": f"Could not locate record: at://{DID}/app.bsky.feed.post/{rkey}"}


@pytest.fixture
def pds() -> Iterator[FakePDS]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakePDS(rsps)


def test_one_session_serves_ten_posts_across_process_restarts(build: Callable[..., BlueskyAdapter], pds: FakePDS) -> None:
    receipts = [build().publish(message(f"Pengumuman ke-{n}"), MemoryJob(key=f"k-{n}")) for n in range(10)]

    assert pds.count("com.atproto.server.createSession") == 1
    assert pds.count("com.atproto.repo.createRecord") == 10
    assert len({r.platform_id for r in receipts}) == 10


def test_an_expired_access_token_is_refreshed_once_and_the_rotated_tokens_are_kept(build: Callable[..., BlueskyAdapter], pds: FakePDS) -> None:
    build().publish(message("Pertama"), MemoryJob(key="k-1"))
    pds.expire_access_tokens()

    build().publish(message("Kedua"), MemoryJob(key="k-2"))
    build().publish(message("Ketiga"), MemoryJob(key="k-3"))

    assert pds.calls == [
        "com.atproto.server.createSession",
        "com.atproto.repo.createRecord",
        "com.atproto.repo.createRecord",  # 400 ExpiredToken
        "com.atproto.server.refreshSession",
        "com.atproto.repo.createRecord",
        "com.atproto.repo.createRecord",  # the rotated token, stored and reused
    ]
    assert len(pds.records) == 3


def test_the_refresh_is_sent_with_the_refresh_token_and_its_answer_replaces_the_session(
    signed_in: BlueskyAdapter, mocked: responses.RequestsMock, job: MemoryJob
) -> None:
    rkey = record_key(job.key)
    record = {"$type": "app.bsky.feed.post", "text": "Selamat Hari Guru Nasional!", "createdAt": CREATED_AT, "langs": ["id"]}
    expect_record(mocked, rkey, record, token=jwt("access", 1), status=400, json={"error": "ExpiredToken", "message": "Token has expired"})
    mocked.post(f"{XRPC}/com.atproto.server.refreshSession", json=session_answer(2), match=[bearer(jwt("refresh", 1))])
    expect_record(mocked, rkey, record, token=jwt("access", 2))

    signed_in.publish(message(), job)

    assert signed_in.state_dir is not None
    path = signed_in.state_dir / "bluesky-session.json"
    stored = json.loads(path.read_text())
    assert (stored["accessJwt"], stored["refreshJwt"]) == (jwt("access", 2), jwt("refresh", 2))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert APP_PASSWORD not in path.read_text()


def test_an_expired_refresh_token_leads_to_one_new_sign_in(build: Callable[..., BlueskyAdapter], pds: FakePDS) -> None:
    build().publish(message("Pertama"), MemoryJob(key="k-1"))
    pds.expire_access_tokens()
    pds.refresh.clear()  # the refresh token has expired too

    build().publish(message("Kedua"), MemoryJob(key="k-2"))

    assert pds.calls == [
        "com.atproto.server.createSession",
        "com.atproto.repo.createRecord",
        "com.atproto.repo.createRecord",
        "com.atproto.server.refreshSession",
        "com.atproto.server.createSession",
        "com.atproto.repo.createRecord",
    ]


def test_a_session_made_for_another_handle_is_not_reused(build: Callable[..., BlueskyAdapter], pds: FakePDS) -> None:
    other = build(handle="lama.palembang.go.id")
    other._store(session_answer(99))

    build().publish(message(), MemoryJob(key="k-1"))

    assert pds.calls[0] == "com.atproto.server.createSession"


def test_tokens_are_registered_as_secrets_but_the_public_did_is_not(build: Callable[..., BlueskyAdapter], pds: FakePDS, monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[str] = []
    monkeypatch.setattr(base, "_secret_sinks", [told.append])

    build().publish(message(), MemoryJob(key="k-1"))

    assert {APP_PASSWORD, jwt("access", 1), jwt("refresh", 1)} <= set(told)
    assert DID not in told and HANDLE not in told  # they appear in receipts and audit rows


def settle(new_adapter: Callable[[], BlueskyAdapter], post: Message, job: CrashingJob) -> Receipt:
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


def test_a_post_interrupted_after_any_step_resumes_to_exactly_one_record(
    build: Callable[..., BlueskyAdapter], make_media: Callable[..., Media], tmp_path: Path
) -> None:
    post = message(
        "ꦱꦸꦒꦼꦁ ꦫꦮꦸꦃ @pgri.bsky.social #HariGuru",
        link="https://example.go.id/hari-guru",
        media=(make_media("photo.png", alt="Guru mengajar"), make_media("photo.jpg", alt="Murid memberi bunga")),
    )
    states: list[dict[str, Any]] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        server = FakePDS(rsps)
        build(state_dir=str(tmp_path / "clean")).publish(post, CrashingJob(key="k-clean", on_save=lambda s: states.append(dict(s))))
    clean_calls = server.calls
    assert clean_calls == [
        "com.atproto.server.createSession",
        "com.atproto.repo.uploadBlob",
        "com.atproto.repo.uploadBlob",
        "com.atproto.identity.resolveHandle",
        "com.atproto.repo.createRecord",
    ]
    uploads_at = [n for n, call in enumerate(clean_calls, 1) if call == "com.atproto.repo.uploadBlob"]
    def blobs_in(state: dict[str, Any]) -> int:
        return len([entry for entry in state.get("blobs", []) if entry])

    new_blob_at = [n for n, state in enumerate(states, 1) if blobs_in(state) > (blobs_in(states[n - 2]) if n > 1 else 0)]
    assert new_blob_at == [1, 2]

    scenarios = [("answer lost", n) for n in range(1, len(clean_calls) + 1)] + [("crash before save", n) for n in range(1, len(states) + 1)]
    for number, (how, step) in enumerate(scenarios):
        folder = str(tmp_path / f"run-{number}")
        job = CrashingJob(key=f"k-{how}-{step}")
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            server = FakePDS(rsps)
            if how == "answer lost":
                server.lose_answer_at = step
            else:
                job.crash_at_save = step
            receipt = settle(lambda: build(state_dir=folder), post, job)

        where = f"{how} at step {step}"
        assert list(server.records) == [record_key(job.key)], where
        assert receipt.platform_id == f"at://{DID}/app.bsky.feed.post/{record_key(job.key)}", where
        record = server.records[record_key(job.key)]["value"]
        assert len(record["embed"]["images"]) == 2 and record["createdAt"] == CREATED_AT, where
        lost_a_blob = (how == "answer lost" and step in uploads_at) or (how == "crash before save" and step in new_blob_at)
        assert server.count("com.atproto.repo.uploadBlob") == 2 + (1 if lost_a_blob else 0), where
        assert server.count("com.atproto.server.createSession") <= 2, where
