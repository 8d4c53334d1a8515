"""Bluesky end to end: a post with an image, facets in UTF-8 byte offsets and the client-chosen
record key, and a 429 honouring `ratelimit-reset`."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, EndToEnd, ready_in
from tests.e2e.fakeplatforms import FakeBluesky, bluesky_rate_limited
from tests.support.media import png_bytes

pytestmark = pytest.mark.slow

HANDLE = "pemkot.palembang.go.id"
DID = "did:plc:e2epemkotplg7abcdefghij"
DINKES = ("dinkes.palembang.go.id", "did:plc:e2edinkesplg7klmnopqrst")
APP_PASSWORD = "e2ea-bsky-pass-word"
IMAGE = png_bytes(12, 9)
TEXT = "Jembatan Ampera menyala malam ini 🌉 bersama @dinkes.palembang.go.id #Ampera"
LINK = "https://palembang.go.id/ampera"

POST = f"""
id = "ampera-menyala"
to = ["pemkot-bsky"]
text = "{TEXT}"
link = "{LINK}"
media = [{{ file = "ampera.png", alt = "Jembatan Ampera diterangi lampu warna-warni" }}]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeBluesky:
    fake = FakeBluesky(e2e.server, handle=HANDLE, did=DID, app_password=APP_PASSWORD,
                       known_handles={DINKES[0]: DINKES[1]})
    e2e.configure(f"""
[accounts.pemkot-bsky]
platform = "bluesky"
handle = "{HANDLE}"
app_password = "${{E2E_BSKY_APP_PASSWORD}}"
language = "id"
api_base = "{e2e.api}"
""", {"E2E_BSKY_APP_PASSWORD": APP_PASSWORD})
    e2e.media("ampera.png", IMAGE)
    e2e.post("ampera.toml", post)
    return fake


def blob_answer(fake: FakeBluesky) -> dict:
    (blob,) = fake.blobs.values()
    return blob


def byte_span(text: str, part: str) -> dict[str, int]:
    start = text.encode().index(part.encode())
    return {"byteStart": start, "byteEnd": start + len(part.encode())}


def test_a_post_with_an_image_signs_in_once_uploads_the_blob_and_creates_the_record_under_its_own_key(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    xrpc = "/xrpc/com.atproto."
    assert e2e.requests() == [
        ("POST", xrpc + "server.createSession"),
        ("POST", xrpc + "repo.uploadBlob"),
        ("GET", xrpc + "identity.resolveHandle"),
        ("POST", xrpc + "repo.createRecord"),
    ]
    session, blob, resolve, create = e2e.server.requests
    assert session.json() == {"identifier": HANDLE, "password": APP_PASSWORD}
    (access_jwt,) = fake.access_jwts
    for seen in (blob, resolve, create):
        assert seen.header("Authorization") == f"Bearer {access_jwt}"
    assert (blob.header("Content-Type"), blob.body) == ("image/png", IMAGE)
    assert resolve.query == {"handle": DINKES[0]}

    body = create.json()
    (rkey,) = fake.records
    assert (body["repo"], body["collection"], body["rkey"]) == (DID, "app.bsky.feed.post", rkey)
    assert re.fullmatch(r"[234567a-j][234567a-z]{12}", rkey)  # a TID, chosen by siar from the delivery key
    record = body["record"]
    text = f"{TEXT}\n\n{LINK}"  # with an image there is no link card, so the link joins the text
    assert record["$type"] == "app.bsky.feed.post"
    assert record["text"] == text
    assert record["langs"] == ["id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", record["createdAt"])
    # Offsets count UTF-8 bytes: the 4-byte emoji before the mention moves it by 4, not 1.
    assert sorted(record["facets"], key=lambda f: f["index"]["byteStart"]) == [
        {"index": byte_span(text, "@" + DINKES[0]),
         "features": [{"$type": "app.bsky.richtext.facet#mention", "did": DINKES[1]}]},
        {"index": byte_span(text, "#Ampera"), "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Ampera"}]},
        {"index": byte_span(text, LINK), "features": [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}]},
    ]
    assert record["embed"] == {"$type": "app.bsky.embed.images", "images": [{
        "alt": "Jembatan Ampera diterangi lampu warna-warni",
        "image": blob_answer(fake),
        "aspectRatio": {"width": 12, "height": 9},
    }]}

    delivery = e2e.delivery("ampera-menyala")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert delivery["url"] == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == delivery["platform_id"]
    e2e.assert_secrets_kept(*fake.access_jwts, *fake.refresh_jwts)


LINK_POST = """
id = "pendaftaran-cpns"
to = ["pemkot-bsky"]
title = "Pendaftaran CPNS Kota Palembang 2026"
text = "Pendaftaran CPNS dibuka hari ini."
link = "https://palembang.go.id/cpns"
"""


def test_a_link_post_carries_the_link_as_an_external_card_not_in_the_text(e2e):
    fake = configure(e2e, LINK_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [
        ("POST", "/xrpc/com.atproto.server.createSession"),
        ("POST", "/xrpc/com.atproto.repo.createRecord"),
    ]
    record = e2e.server.requests[1].json()["record"]
    assert record["text"] == "Pendaftaran CPNS dibuka hari ini."
    assert record["embed"] == {"$type": "app.bsky.embed.external", "external": {
        "uri": "https://palembang.go.id/cpns", "title": "Pendaftaran CPNS Kota Palembang 2026", "description": "",
    }}
    (rkey,) = fake.records
    delivery = e2e.delivery("pendaftaran-cpns")
    assert (delivery["state"], delivery["url"]) == ("published", f"https://bsky.app/profile/{HANDLE}/post/{rkey}")
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept(*fake.access_jwts, *fake.refresh_jwts)


def test_a_429_on_create_record_waits_until_ratelimit_reset_with_the_blob_kept(e2e):
    fake = configure(e2e)
    fake.fail("createRecord", bluesky_rate_limited(reset_in=120))

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert [path for _, path in e2e.requests()][-1] == "/xrpc/com.atproto.repo.createRecord"
    assert not fake.records
    delivery = e2e.delivery("ampera-menyala")
    assert delivery["state"] == "retrying"
    assert 115 <= ready_in(delivery) <= 121
    assert ready_in(delivery) > MAX_BACKOFF_S
    assert [entry["blob"] for entry in e2e.checkpoint("ampera-menyala")["blobs"]] == list(fake.blobs.values())
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 429)
    assert "RateLimitExceeded" in trail[-1]["error"]
    e2e.assert_secrets_kept(*fake.access_jwts, *fake.refresh_jwts)
