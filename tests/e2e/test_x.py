"""X end to end: an image post with alt text through API v2, and a 429 honouring x-rate-limit-reset."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, EndToEnd, ready_in, utc
from tests.e2e.fakeplatforms import FakeX, x_too_many_requests
from tests.support.media import png_bytes

pytestmark = pytest.mark.slow

USER_ID = "1497318620945645568"
USERNAME = "pemkotplg"
TOKEN = "bWZ2e2eXAccessTokenLXJtZnV1c0lNOjE3MzI1MjE2MDAwMDA6MTowOmF0OjE"
REFRESH = "cTNe2eXRefreshTokenZnNHbVZ4c1pTUE1DOjE3MzI1MjE2MDAwMDA6MToxOnJ0OjE"
IMAGE = png_bytes(8, 6)

POST = """
id = "banjir-siaga"
to = ["pemkot-x"]
text = "Siaga banjir: warga di bantaran Sungai Musi diminta waspada malam ini."
link = "https://palembang.go.id/siaga-banjir"
media = [{ file = "peta-banjir.png", alt = "Peta wilayah rawan banjir di Palembang" }]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeX:
    fake = FakeX(e2e.server, user_id=USER_ID, username=USERNAME, token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-x]
platform = "x"
token = "${{E2E_X_TOKEN}}"
refresh_token = "${{E2E_X_REFRESH_TOKEN}}"
client_id = "T2e2eQ2xpZW50SWQ6MTpjaQ"
api_base = "{e2e.api}"
""", {"E2E_X_TOKEN": TOKEN, "E2E_X_REFRESH_TOKEN": REFRESH})
    e2e.media("peta-banjir.png", IMAGE)
    e2e.post("banjir.toml", post)
    return fake


def test_an_image_post_uploads_the_image_sets_its_alt_text_and_posts_with_the_users_permalink(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [
        ("POST", "/2/media/upload"),
        ("POST", "/2/media/metadata"),
        ("POST", "/2/tweets"),
        ("GET", "/2/users/me"),
    ]
    for seen in e2e.server.requests:
        assert seen.header("Authorization") == f"Bearer {TOKEN}"
    upload, metadata, create, _me = e2e.server.requests
    assert upload.form() == {"media_category": "tweet_image"}
    assert upload.files()["media"].value == IMAGE
    (media_id,) = fake.media
    alt = "Peta wilayah rawan banjir di Palembang"
    assert metadata.json() == {"id": media_id, "metadata": {"alt_text": {"text": alt}}}
    assert create.json() == {
        "text": "Siaga banjir: warga di bantaran Sungai Musi diminta waspada malam ini.\n\n"
                "https://palembang.go.id/siaga-banjir",
        "media": {"media_ids": [media_id]},
    }

    assert fake.off_spec == []  # the fake answered as X's own schemas describe
    (post_id,) = fake.posts
    delivery = e2e.delivery("banjir-siaga")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == post_id
    assert delivery["url"] == f"https://x.com/{USERNAME}/status/{post_id}"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == post_id
    e2e.assert_secrets_kept()


TEXT_POST = """
id = "gangguan-pdam"
to = ["pemkot-x"]
text = "Gangguan air PDAM Tirta Musi di Sukarami hingga pukul 15.00. Info: https://palembang.go.id/pdam"
"""


def test_a_text_only_post_is_one_request_to_create_the_post(e2e):
    fake = configure(e2e, TEXT_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [("POST", "/2/tweets"), ("GET", "/2/users/me")]
    create = e2e.server.requests[0]
    assert create.header("Authorization") == f"Bearer {TOKEN}"
    assert create.json() == {
        "text": "Gangguan air PDAM Tirta Musi di Sukarami hingga pukul 15.00. Info: https://palembang.go.id/pdam"
    }
    (post_id,) = fake.posts
    delivery = e2e.delivery("gangguan-pdam")
    assert (delivery["state"], delivery["url"]) == ("published", f"https://x.com/{USERNAME}/status/{post_id}")
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_a_429_on_the_post_waits_until_x_rate_limit_reset_and_keeps_the_uploaded_image(e2e):
    fake = configure(e2e)
    fake.fail("tweets", x_too_many_requests(reset_in=90))

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.requests() == [("POST", "/2/media/upload"), ("POST", "/2/media/metadata"), ("POST", "/2/tweets")]
    delivery = e2e.delivery("banjir-siaga")
    assert delivery["state"] == "retrying"
    assert 85 <= ready_in(delivery) <= 91  # until x-rate-limit-reset, not the short backoff
    assert ready_in(delivery) > MAX_BACKOFF_S
    # The whole account waits for the reset, not only this post.
    assert abs((utc(e2e.account("pemkot-x")["not_before"]) - utc(delivery["ready_at"])).total_seconds()) < 2
    # The next attempt posts with the image already uploaded: its id is in the checkpoint.
    (media_id,) = fake.media
    assert [entry["id"] for entry in e2e.checkpoint("banjir-siaga")["media"]] == [media_id]
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 429)
    assert re.search(r"Too Many Requests", trail[-1]["error"])
    e2e.assert_secrets_kept()
