"""Mastodon end to end: a status with a processed image and the Idempotency-Key, and a 422 validation
failure ending the delivery as failed."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import EndToEnd
from tests.e2e.fakeplatforms import FakeMastodon, mastodon_validation_failed
from tests.support.media import png_bytes

pytestmark = pytest.mark.slow

HOST = "social.palembang.go.id"
TOKEN = "e2eMastodonTokenZ3VhcmRpYW5fYW5nZWxfb2ZfdGhlX3Rvb3Q0NTY3ODk"
IMAGE = png_bytes(5, 5)

POST = """
id = "car-free-day"
to = ["pemkot-mastodon"]
text = "Car free day hari Minggu di Jalan Sudirman, pukul 06.00–09.00."
link = "https://palembang.go.id/cfd"
media = [{ file = "cfd.png", alt = "Warga bersepeda di Jalan Sudirman" }]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeMastodon:
    fake = FakeMastodon(e2e.server, host=HOST, username="pemkot", token=TOKEN)
    e2e.configure(f"""
[accounts.pemkot-mastodon]
platform = "mastodon"
instance = "https://{HOST}"
token = "${{E2E_MASTODON_TOKEN}}"
visibility = "public"
language = "id"
api_base = "{e2e.api}"
""", {"E2E_MASTODON_TOKEN": TOKEN})
    e2e.media("cfd.png", IMAGE)
    e2e.post("cfd.toml", post)
    return fake


def test_a_post_with_an_image_waits_for_processing_then_posts_one_status_under_the_delivery_key(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    (media_id,) = fake.media
    (status_id,) = fake.statuses
    assert e2e.requests() == [
        ("POST", "/api/v2/media"),
        ("GET", f"/api/v1/media/{media_id}"),  # the upload answered 202: processed before use
        ("POST", "/api/v1/statuses"),
        ("GET", "/api/v2/instance"),  # the instance's limits, cached for `siar check`
    ]
    upload, processed, create, _instance = e2e.server.requests
    for seen in (upload, processed, create):
        assert seen.header("Authorization") == f"Bearer {TOKEN}"
    assert upload.files()["file"].value == IMAGE
    assert upload.form() == {"description": "Warga bersepeda di Jalan Sudirman"}
    delivery = e2e.delivery("car-free-day")
    assert create.header("Idempotency-Key") == delivery["key"]
    assert create.json() == {
        "status": "Car free day hari Minggu di Jalan Sudirman, pukul 06.00–09.00.\n\nhttps://palembang.go.id/cfd",
        "media_ids": [media_id],
        "visibility": "public",
        "language": "id",
    }

    assert delivery["state"] == "published"
    assert delivery["platform_id"] == status_id
    assert delivery["url"] == f"https://{HOST}/@pemkot/{status_id}"  # the status's own `url`
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == status_id
    e2e.assert_secrets_kept()


TEXT_POST = """
id = "pengumuman-cpns"
to = ["pemkot-mastodon"]
text = "Pengumuman hasil seleksi CPNS Kota Palembang sudah terbit."
link = "https://palembang.go.id/cpns"
"""


def test_a_text_post_is_one_status_with_the_link_at_its_end(e2e):
    fake = configure(e2e, TEXT_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [("POST", "/api/v1/statuses"), ("GET", "/api/v2/instance")]
    create = e2e.server.requests[0]
    delivery = e2e.delivery("pengumuman-cpns")
    assert create.header("Authorization") == f"Bearer {TOKEN}"
    assert create.header("Idempotency-Key") == delivery["key"]
    assert create.json() == {
        "status": "Pengumuman hasil seleksi CPNS Kota Palembang sudah terbit.\n\nhttps://palembang.go.id/cpns",
        "visibility": "public",
        "language": "id",
    }
    (status_id,) = fake.statuses
    assert (delivery["state"], delivery["url"]) == ("published", f"https://{HOST}/@pemkot/{status_id}")
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_a_422_validation_failure_fails_the_delivery_without_a_retry(e2e):
    fake = configure(e2e)
    fake.fail("statuses", mastodon_validation_failed("Text character limit of 500 exceeded"))

    result = e2e.run_once()

    assert result.returncode == 1  # a failed delivery needs a person
    assert [path for _, path in e2e.requests()][-1] == "/api/v1/statuses"
    assert not fake.statuses
    delivery = e2e.delivery("car-free-day")
    assert delivery["state"] == "failed"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "failed"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 422)
    assert "Text character limit of 500 exceeded" in trail[-1]["error"]
    e2e.assert_secrets_kept()
