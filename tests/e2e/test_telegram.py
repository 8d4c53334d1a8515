"""Telegram end to end: an album to a public channel through the Bot API, and a 429 with
`parameters.retry_after`; the bot token travels in every URL path and must stay out of the records."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, EndToEnd, ready_in
from tests.e2e.fakeplatforms import FakeTelegram, telegram_too_many_requests
from tests.support.media import jpeg_bytes, png_bytes

pytestmark = pytest.mark.slow

BOT_TOKEN = "7312845521:AAHe2eTelegramBotToken_Xy-Z0123456789ab"
CHANNEL = "@pemkotpalembang"
PHOTO_1, PHOTO_2 = jpeg_bytes(1500), png_bytes(6, 4)

POST = """
id = "pasar-murah"
to = ["pemkot-tg"]
text = "Pasar murah Ramadan di 18 kecamatan mulai Senin. Bawa KTP."
link = "https://palembang.go.id/pasar-murah"
media = [
  { file = "pasar-1.jpg", alt = "Antrean pasar murah" },
  { file = "pasar-2.png", alt = "Daftar harga sembako" },
]
"""


def configure(e2e: EndToEnd, post: str = POST) -> FakeTelegram:
    fake = FakeTelegram(e2e.server, bot_token=BOT_TOKEN, channel=CHANNEL, channel_id=-1001234567890)
    e2e.configure(f"""
[accounts.pemkot-tg]
platform = "telegram"
bot_token = "${{E2E_TG_BOT_TOKEN}}"
chat = "{CHANNEL}"
api_base = "{e2e.api}"
""", {"E2E_TG_BOT_TOKEN": BOT_TOKEN})
    e2e.media("pasar-1.jpg", PHOTO_1)
    e2e.media("pasar-2.png", PHOTO_2)
    e2e.post("pasar-murah.toml", post)
    return fake


def test_a_post_with_two_photos_goes_out_as_one_album_with_the_caption_and_a_t_me_permalink(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [("POST", f"/bot{BOT_TOKEN}/sendMediaGroup")]
    (album,) = e2e.server.requests
    fields = album.form()
    assert fields["chat_id"] == CHANNEL
    items = json.loads(fields["media"])
    assert [(i["type"], i["media"]) for i in items] == [("photo", "attach://file0"), ("photo", "attach://file1")]
    # One caption, on the first item, is shown under the whole album; the link joins the text.
    assert items[0]["caption"] == (
        "Pasar murah Ramadan di 18 kecamatan mulai Senin. Bawa KTP.\n\nhttps://palembang.go.id/pasar-murah"
    )
    assert "caption" not in items[1]
    files = album.files()
    assert (files["file0"].value, files["file1"].value) == (PHOTO_1, PHOTO_2)

    first, second = (m["message_id"] for m in fake.messages)
    delivery = e2e.delivery("pasar-murah")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == f"{first},{second}"
    assert delivery["url"] == f"https://t.me/pemkotpalembang/{first}"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == f"{first},{second}"
    e2e.assert_secrets_kept()


LINK_POST = """
id = "lowongan"
to = ["pemkot-tg"]
text = "Lowongan tenaga kesehatan Puskesmas dibuka sampai 30 November."
link = "https://palembang.go.id/lowongan"
"""


def test_a_link_post_is_one_message_whose_preview_shows_the_posts_link(e2e):
    fake = configure(e2e, LINK_POST)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert e2e.requests() == [("POST", f"/bot{BOT_TOKEN}/sendMessage")]
    assert e2e.server.requests[0].json() == {
        "chat_id": CHANNEL,
        "text": "Lowongan tenaga kesehatan Puskesmas dibuka sampai 30 November.\n\nhttps://palembang.go.id/lowongan",
        "link_preview_options": {"is_disabled": False, "url": "https://palembang.go.id/lowongan"},
    }
    (message,) = fake.messages
    delivery = e2e.delivery("lowongan")
    assert (delivery["state"], delivery["platform_id"]) == ("published", str(message["message_id"]))
    assert delivery["url"] == f"https://t.me/pemkotpalembang/{message['message_id']}"
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_a_429_waits_the_retry_after_telegram_names_in_its_parameters(e2e):
    fake = configure(e2e)
    fake.fail("send", telegram_too_many_requests(retry_after=37))

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert len(e2e.server.requests) == 1
    delivery = e2e.delivery("pasar-murah")
    assert delivery["state"] == "retrying"
    assert 36 <= ready_in(delivery) <= 39
    assert ready_in(delivery) > MAX_BACKOFF_S
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 429)
    assert "retry after 37" in trail[-1]["error"]
    e2e.assert_secrets_kept()
