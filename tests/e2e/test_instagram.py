"""Instagram end to end: a carousel through the container flow, and an expired token pausing the account."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import MEDIA_URL, EndToEnd
from tests.e2e.fakeplatforms import FakeInstagram, graph_session_expired
from tests.support.media import jpeg_bytes

pytestmark = pytest.mark.slow

IG_USER = "17841405822304914"
TOKEN = "EAAGe2eInstagramToken9ZBxQ2ZCdefGHIjkLMNopqRSTuvwXYZ0987654321"

POST = """
id = "festival-sriwijaya"
to = ["pemkot-ig"]
text = "Festival Sriwijaya 2026 dibuka malam ini di Benteng Kuto Besak. #FestivalSriwijaya"
media = [
  { file = "festival-1.jpg", alt = "Panggung utama Festival Sriwijaya" },
  { file = "festival-2.jpg", alt = "Perahu bidar di Sungai Musi" },
]
"""


def configure(e2e: EndToEnd) -> FakeInstagram:
    fake = FakeInstagram(e2e.server, ig_user_id=IG_USER, token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-ig]
platform = "instagram"
ig_user_id = "{IG_USER}"
token = "${{E2E_IG_TOKEN}}"
api_base = "{e2e.api}"
""", {"E2E_IG_TOKEN": TOKEN})
    e2e.media("festival-1.jpg", jpeg_bytes(4096))
    e2e.media("festival-2.jpg", jpeg_bytes(3072))
    e2e.post("festival.toml", POST)
    return fake


def test_a_two_image_post_becomes_a_carousel_container_published_once_with_its_instagram_permalink(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    steps = [(m, re.sub(r"^/v\d+\.\d+/", "/", path)) for m, path in e2e.requests()]
    child_1, child_2, parent = fake.containers
    (media_id,) = fake.media
    assert steps == [
        ("POST", f"/{IG_USER}/media"),
        ("POST", f"/{IG_USER}/media"),
        ("POST", f"/{IG_USER}/media"),
        ("GET", f"/{parent}"),
        ("POST", f"/{IG_USER}/media_publish"),
        ("GET", f"/{media_id}"),
    ]
    first, second, carousel, status, publish, permalink = e2e.server.requests
    for seen in (first, second, carousel, publish):
        assert seen.form()["access_token"] == TOKEN
    for seen in (status, permalink):
        assert seen.query["access_token"] == TOKEN
    for child, name, alt in ((first, "festival-1.jpg", "Panggung utama Festival Sriwijaya"),
                             (second, "festival-2.jpg", "Perahu bidar di Sungai Musi")):
        assert child.form()["image_url"] == MEDIA_URL + name  # Meta downloads it from there
        assert child.form()["is_carousel_item"] == "true"
        assert child.form()["alt_text"] == alt
        assert "caption" not in child.form()  # the caption belongs to the carousel
    assert carousel.form()["media_type"] == "CAROUSEL"
    assert carousel.form()["children"] == f"{child_1},{child_2}"
    assert carousel.form()["caption"].startswith("Festival Sriwijaya 2026 dibuka malam ini")
    assert "status_code" in status.query["fields"]
    assert publish.form()["creation_id"] == parent
    assert fake.containers[parent]["status_code"] == "PUBLISHED"

    delivery = e2e.delivery("festival-sriwijaya")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == media_id
    assert re.fullmatch(r"https://www\.instagram\.com/p/[A-Za-z0-9_-]+/", delivery["url"])
    assert delivery["url"] == fake.permalink(media_id)
    # The container id was saved before media_publish, so a crash there could be settled.
    assert e2e.checkpoint("festival-sriwijaya")["container"] == parent
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == media_id
    e2e.assert_secrets_kept()


def test_an_expired_token_error_190_pauses_the_delivery_and_the_account(e2e):
    fake = configure(e2e)
    fake.fail("media", graph_session_expired())

    result = e2e.run_once()

    assert result.returncode == 1  # a paused account needs a person
    assert len(e2e.server.requests) == 1
    delivery = e2e.delivery("festival-sriwijaya")
    assert delivery["state"] == "paused"
    assert e2e.account("pemkot-ig")["paused"]
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "paused"]
    # Graph reports the expired session at HTTP 400: the body's code 190/463 is what counts.
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 400)
    assert "190" in trail[-1]["error"]
    e2e.assert_secrets_kept()
