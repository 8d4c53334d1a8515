"""Threads end to end: an image post through the container flow with the token refreshed first,
and `threads_publish` answering 24/4279009 "Media Not Found" right after the container finished."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, MEDIA_URL, EndToEnd, ready_in
from tests.e2e.fakeplatforms import FakeThreads, threads_media_not_found
from tests.support.media import jpeg_bytes

pytestmark = pytest.mark.slow

USER_ID = "26841405822304999"
USERNAME = "pemkotpalembang"
TOKEN = "THAAe2eLongLivedTokenVFBWT1JiNmV0QmZAtQVVUaW1OZAFdoOUhQbmx1"

POST = """
id = "lomba-perahu"
to = ["pemkot-threads"]
text = "Lomba perahu bidar 17 Agustus di Sungai Musi. Siapa jagoanmu? 🚣"
link = "https://palembang.go.id/bidar"
media = [{ file = "bidar.jpg", alt = "Perahu bidar berlomba di Sungai Musi" }]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeThreads:
    fake = FakeThreads(e2e.server, user_id=USER_ID, username=USERNAME, token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-threads]
platform = "threads"
user_id = "{USER_ID}"
token = "${{E2E_THREADS_TOKEN}}"
api_base = "{e2e.api}"
""", {"E2E_THREADS_TOKEN": TOKEN})
    e2e.media("bidar.jpg", jpeg_bytes(2048))
    e2e.post("bidar.toml", post)
    return fake


def test_an_image_post_refreshes_the_token_then_creates_and_publishes_one_container_with_its_permalink(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    (container,) = fake.containers
    (media_id,) = fake.media
    steps = [(m, re.sub(r"^/v\d+\.\d+/", "/", path)) for m, path in e2e.requests()]
    assert steps == [
        ("GET", "/refresh_access_token"),  # a pasted token's expiry is unknown: learnt by refreshing it
        ("POST", f"/{USER_ID}/threads"),
        ("GET", f"/{container}"),
        ("POST", f"/{USER_ID}/threads_publish"),
        ("GET", f"/{media_id}"),
    ]
    refresh, create, status, publish, permalink = e2e.server.requests
    assert refresh.query == {"grant_type": "th_refresh_token", "access_token": TOKEN}
    (fresh,) = fake.issued
    for seen in (create, publish):
        assert seen.form()["access_token"] == fresh
    for seen in (status, permalink):
        assert seen.query["access_token"] == fresh
    assert create.form() == {
        "media_type": "IMAGE",
        "image_url": MEDIA_URL + "bidar.jpg",  # Meta downloads it from the public folder
        "alt_text": "Perahu bidar berlomba di Sungai Musi",
        "text": "Lomba perahu bidar 17 Agustus di Sungai Musi. Siapa jagoanmu? 🚣\n\nhttps://palembang.go.id/bidar",
        "access_token": fresh,
    }
    assert set(status.query["fields"].split(",")) >= {"status"}
    assert publish.form()["creation_id"] == container

    delivery = e2e.delivery("lomba-perahu")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == media_id
    assert re.fullmatch(rf"https://www\.threads\.net/@{USERNAME}/post/[A-Za-z0-9_-]+", delivery["url"])
    assert delivery["url"] == fake.permalink(media_id)
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == media_id
    e2e.assert_secrets_kept(*fake.issued)


TEXT_POST = """
id = "jam-layanan"
to = ["pemkot-threads"]
text = "Jam layanan Mal Pelayanan Publik selama libur Natal: 08.00–12.00."
"""


def test_a_text_post_is_a_text_container_published_the_same_way(e2e):
    fake = configure(e2e, TEXT_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    (fresh,) = fake.issued
    create = e2e.server.requests[1]
    assert create.form() == {
        "media_type": "TEXT",
        "text": "Jam layanan Mal Pelayanan Publik selama libur Natal: 08.00–12.00.",
        "access_token": fresh,
    }
    (media_id,) = fake.media
    delivery = e2e.delivery("jam-layanan")
    assert (delivery["state"], delivery["platform_id"]) == ("published", media_id)
    assert delivery["url"] == fake.permalink(media_id)
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept(*fake.issued)


def test_media_not_found_at_publish_waits_half_a_minute_and_keeps_the_container_for_the_retry(e2e):
    fake = configure(e2e)
    fake.fail("threads_publish", threads_media_not_found("0"))

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    (container,) = fake.containers
    assert [re.sub(r"^/v\d+\.\d+/", "/", path) for _, path in e2e.requests()][-2:] == [
        f"/{USER_ID}/threads_publish",
        f"/{container}",  # did it go out after all? The container says FINISHED: it did not
    ]
    assert not fake.media
    delivery = e2e.delivery("lomba-perahu")
    assert delivery["state"] == "retrying"
    assert 28 <= ready_in(delivery) <= 32  # Meta's advice: publish about 30 s after creating
    assert ready_in(delivery) > MAX_BACKOFF_S
    assert e2e.checkpoint("lomba-perahu")["container"] == container  # the retry publishes this one
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 400)
    assert "4279009" in trail[-1]["error"]
    e2e.assert_secrets_kept(*fake.issued)
