"""LinkedIn end to end: an organization post with an uploaded image and escaped commentary, and the
daily application throttle (429, no headers) waiting for midnight UTC."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from tests.e2e.conftest import EndToEnd, utc
from tests.e2e.fakeplatforms import FakeLinkedIn, linkedin_daily_throttle
from tests.support.media import png_bytes

pytestmark = pytest.mark.slow

ORGANIZATION = "2414183"
AUTHOR = f"urn:li:organization:{ORGANIZATION}"
TOKEN = "AQVe2eLinkedInTokenXyZ0aBcDeFgHiJkLmNoPqRsTuVwXyZ-0123456789"
IMAGE = png_bytes(10, 10)

# LinkedIn's daily limits reset at midnight UTC, up to a day away: the post may wait that long.
POST = """
id = "rpjmd"
to = ["pemkot-li"]
text = "Rapat koordinasi (Bappeda) membahas #RPJMD 2026–2030: target_akhir & [lampiran] *penting*"
link = "https://palembang.go.id/rpjmd"
media = [{ file = "rapat.png", alt = "Peserta rapat koordinasi RPJMD" }]
max_lateness = "2d"
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeLinkedIn:
    fake = FakeLinkedIn(e2e.server, organization=ORGANIZATION, token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-li]
platform = "linkedin"
organization = "{ORGANIZATION}"
token = "${{E2E_LI_TOKEN}}"
version = "202605"
api_base = "{e2e.api}"
""", {"E2E_LI_TOKEN": TOKEN})
    e2e.media("rapat.png", IMAGE)
    e2e.post("rpjmd.toml", post)
    return fake


def test_a_post_with_an_image_uploads_it_then_creates_the_post_with_escaped_commentary_and_its_urn(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    ((image_urn, image),) = fake.images.items()
    assert e2e.requests() == [
        ("POST", "/rest/images"),
        ("PUT", f"/dms-uploads/sp/v2/{image['key']}/uploaded-image/0"),  # LinkedIn's upload host, rebased
        ("POST", "/rest/posts"),
    ]
    initialize, upload, create = e2e.server.requests
    for seen in (initialize, create):
        assert seen.header("Authorization") == f"Bearer {TOKEN}"
        assert seen.header("LinkedIn-Version") == "202605"
        assert seen.header("X-Restli-Protocol-Version") == "2.0.0"
    assert initialize.query == {"action": "initializeUpload"}
    assert initialize.json() == {"initializeUploadRequest": {"owner": AUTHOR}}
    assert upload.header("Authorization") == f"Bearer {TOKEN}"
    assert upload.body == IMAGE
    assert create.json() == {
        "author": AUTHOR,
        # Every character the little format reserves is backslash-escaped, or LinkedIn cuts the post.
        "commentary": "Rapat koordinasi \\(Bappeda\\) membahas \\#RPJMD 2026–2030: target\\_akhir & "
                      "\\[lampiran\\] \\*penting\\*\n\nhttps://palembang.go.id/rpjmd",
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "content": {"media": {"id": image_urn, "altText": "Peserta rapat koordinasi RPJMD"}},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }

    (post_urn,) = fake.posts
    delivery = e2e.delivery("rpjmd")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == post_urn
    assert delivery["url"] == f"https://www.linkedin.com/feed/update/{post_urn}"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == post_urn
    e2e.assert_secrets_kept()


LINK_POST = """
id = "musrenbang"
to = ["pemkot-li"]
title = "Musrenbang Kota Palembang 2027"
text = "Ikuti Musrenbang kota: usulan warga untuk pembangunan 2027."
link = "https://palembang.go.id/musrenbang"
"""


def test_a_link_post_becomes_an_article_post_with_the_link_as_its_source(e2e):
    fake = configure(e2e, LINK_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [("POST", "/rest/posts")]
    body = e2e.server.requests[0].json()
    assert body["commentary"] == "Ikuti Musrenbang kota: usulan warga untuk pembangunan 2027."
    assert body["content"] == {"article": {"source": "https://palembang.go.id/musrenbang",
                                           "title": "Musrenbang Kota Palembang 2027"}}
    (post_urn,) = fake.posts
    delivery = e2e.delivery("musrenbang")
    assert (delivery["state"], delivery["url"]) == ("published", f"https://www.linkedin.com/feed/update/{post_urn}")
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_the_daily_application_throttle_leaves_the_post_retrying_at_midnight_utc_with_the_image_kept(e2e):
    fake = configure(e2e)
    fake.fail("posts", linkedin_daily_throttle())

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert [path for _, path in e2e.requests()][-1] == "/rest/posts"
    assert not fake.posts
    delivery = e2e.delivery("rpjmd")
    assert delivery["state"] == "retrying"
    midnight = datetime.combine(utc(delivery["updated_at"]).date() + timedelta(days=1), time(0), tzinfo=timezone.utc)
    assert abs((utc(delivery["ready_at"]) - midnight).total_seconds()) <= 5
    assert [entry["image"] for entry in e2e.checkpoint("rpjmd")["images"]] == list(fake.images)
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 429)
    assert "DAY limit" in trail[-1]["error"]
    e2e.assert_secrets_kept()
