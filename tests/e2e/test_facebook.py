"""Facebook Page end to end: an album post through the Graph API, and Graph's code 4 rate limit."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, MEDIA_URL, EndToEnd, ready_in
from tests.e2e.fakeplatforms import FakeFacebook, graph_rate_limited
from tests.support.media import jpeg_bytes, png_bytes

pytestmark = pytest.mark.slow

PAGE_ID = "104512345678901"
TOKEN = "EAAGe2ePageToken0ZCxV1ZAbcDEFghIJklMNopQRstuVWxyz1234567890"

POST = """
id = "hari-guru-2026"
to = ["pemkot-fb"]
text = "Selamat Hari Guru Nasional! Terima kasih untuk seluruh guru di Kota Palembang."
link = "https://palembang.go.id/hari-guru"
media = [
  { file = "guru-1.jpg", alt = "Guru mengajar di kelas" },
  { file = "guru-2.png", alt = "Murid memberi bunga kepada guru" },
]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeFacebook:
    fake = FakeFacebook(e2e.server, page_id=PAGE_ID, token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-fb]
platform = "facebook"
page_id = "{PAGE_ID}"
token = "${{E2E_FB_TOKEN}}"
api_base = "{e2e.api}"
""", {"E2E_FB_TOKEN": TOKEN})
    e2e.media("guru-1.jpg", jpeg_bytes(2048))
    e2e.media("guru-2.png", png_bytes())
    e2e.post("2026-11/hari-guru.toml", post)
    return fake


def test_a_post_with_two_photos_becomes_unpublished_photos_then_one_feed_post_with_its_permalink(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    graph = r"/v\d+\.\d+/" + PAGE_ID
    assert [m for m, _ in e2e.requests()] == ["POST", "POST", "POST"]
    edges = [re.fullmatch(graph + r"/(\w+)", path).group(1) for _, path in e2e.requests()]
    assert edges == ["photos", "photos", "feed"]
    first, second, feed = e2e.server.requests
    for photo, name, alt in ((first, "guru-1.jpg", "Guru mengajar di kelas"),
                             (second, "guru-2.png", "Murid memberi bunga kepada guru")):
        fields = photo.form()
        assert fields["url"] == MEDIA_URL + name  # Facebook fetches the photo from the public folder
        assert fields["published"] == "false"
        assert fields["alt_text_custom"] == alt
        assert fields["access_token"] == TOKEN
    fields = feed.form()
    assert fields["access_token"] == TOKEN
    assert fields["message"] == (
        "Selamat Hari Guru Nasional! Terima kasih untuk seluruh guru di Kota Palembang.\n\n"
        "https://palembang.go.id/hari-guru"
    )
    assert json.loads(fields["attached_media"]) == [{"media_fbid": pid} for pid in fake.photos]

    (post_id,) = fake.posts
    delivery = e2e.delivery("hari-guru-2026")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == post_id
    assert re.fullmatch(rf"https://www\.facebook\.com/{PAGE_ID}/posts/\d+", delivery["url"])
    assert delivery["url"] == fake.permalink(post_id)
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == post_id
    e2e.assert_secrets_kept()


LINK_POST = """
id = "samsat-keliling"
to = ["pemkot-fb"]
text = "Samsat keliling hadir di Kecamatan Ilir Barat I pekan ini."
link = "https://palembang.go.id/samsat-keliling"
"""


def test_a_link_post_becomes_one_feed_post_whose_answer_already_carries_the_permalink(e2e):
    fake = configure(e2e, LINK_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    (feed,) = e2e.server.requests  # the permalink came with the answer: no second request
    assert feed.method == "POST" and re.fullmatch(rf"/v\d+\.\d+/{PAGE_ID}/feed", feed.route)
    fields = feed.form()
    assert fields["message"] == "Samsat keliling hadir di Kecamatan Ilir Barat I pekan ini."
    assert fields["link"] == "https://palembang.go.id/samsat-keliling"
    assert "permalink_url" in fields["fields"].split(",")
    assert fields["access_token"] == TOKEN
    (post_id,) = fake.posts
    delivery = e2e.delivery("samsat-keliling")
    assert (delivery["state"], delivery["platform_id"]) == ("published", post_id)
    assert delivery["url"] == fake.permalink(post_id)
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_graph_code_4_with_a_business_usage_header_leaves_the_post_retrying_after_metas_own_wait(e2e):
    fake = configure(e2e)
    fake.fail("photos", graph_rate_limited(regain_minutes=7, business_id=PAGE_ID))

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert len(e2e.server.requests) == 1  # nothing after the refused first step
    delivery = e2e.delivery("hari-guru-2026")
    assert delivery["state"] == "retrying"
    assert delivery["attempts"] == 1
    # Meta's estimated_time_to_regain_access (7 minutes) wins over the retry backoff.
    assert 7 * 60 - 5 <= ready_in(delivery) <= 7 * 60 + 5
    assert ready_in(delivery) > MAX_BACKOFF_S
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 400)
    assert "4" in trail[-1]["error"] and "rate limit" in trail[-1]["error"]
    e2e.assert_secrets_kept()
