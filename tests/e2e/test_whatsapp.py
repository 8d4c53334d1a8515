"""WhatsApp end to end: a template broadcast with an image header to a recipient list, and a
throughput limit halfway through the list that a later run finishes without resending."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import MAX_BACKOFF_S, MEDIA_URL, EndToEnd, utc, ready_in
from tests.e2e.fakeplatforms import FakeWhatsApp, whatsapp_throughput_reached
from tests.support.media import jpeg_bytes

pytestmark = pytest.mark.slow

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "EAAJe2eWhatsAppSystemUserToken0ZBZCqRsTuVwXyZaBcDeFgHiJkLmNoP"
RECIPIENTS = ["+6281234567801", "+6281234567802", "+6285712345603"]
TEXT = "Vaksinasi gratis di Puskesmas Dempo, Sabtu 28 November 2026 pukul 08.00."

POST = f"""
id = "vaksinasi"
to = ["pemkot-wa"]
text = "{TEXT}"
media = [{{ file = "vaksin.jpg", alt = "Poster vaksinasi" }}]
"""


def configure(e2e: EndToEnd, post: str = POST,
              template: str = '{ name = "siaran_pemkot", language = "id", media = true }') -> FakeWhatsApp:
    fake = FakeWhatsApp(e2e.server, phone_number_id=PHONE_NUMBER_ID, token=TOKEN)
    (e2e.workspace.root / "penerima.txt").write_text(
        "# warga yang mendaftar siaran\n" + "\n".join(RECIPIENTS) + "\n"
    )
    e2e.configure(f"""
[accounts.pemkot-wa]
platform = "whatsapp"
phone_number_id = "{PHONE_NUMBER_ID}"
token = "${{E2E_WA_TOKEN}}"
recipients = "penerima.txt"
template = {template}
api_base = "{e2e.api}"
""", {"E2E_WA_TOKEN": TOKEN})
    e2e.media("vaksin.jpg", jpeg_bytes(2048))
    e2e.post("vaksinasi.toml", post)
    return fake


def test_a_post_with_an_image_goes_to_every_recipient_as_the_approved_template_each_message_id_kept(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    messages = rf"/v\d+\.\d+/{PHONE_NUMBER_ID}/messages"
    assert [m for m, _ in e2e.requests()] == ["POST"] * 3
    assert all(re.fullmatch(messages, path) for _, path in e2e.requests())
    for seen, number in zip(e2e.server.requests, RECIPIENTS):
        assert seen.header("Authorization") == f"Bearer {TOKEN}"
        assert seen.json() == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": number,
            "type": "template",
            "template": {
                "name": "siaran_pemkot",
                "language": {"code": "id"},
                "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"link": MEDIA_URL + "vaksin.jpg"}}]},
                    {"type": "body", "parameters": [{"type": "text", "text": TEXT}]},
                ],
            },
        }

    delivery = e2e.delivery("vaksinasi")
    assert delivery["state"] == "published"
    # One broadcast, three messages: the receipt names the first wamid and counts the others.
    assert delivery["platform_id"] == f"{fake.delivered[RECIPIENTS[0]]} (+2 more)"
    assert delivery["url"] is None  # a WhatsApp message has no public permalink
    assert e2e.checkpoint("vaksinasi")["sent"] == fake.delivered
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()
    assert not any(number in "\n".join(e2e.stderr) for number in RECIPIENTS)  # personal data stays out of logs


TEXT_POST = """
id = "pemadaman"
to = ["pemkot-wa"]
text = "Pemadaman listrik bergilir di Kemuning, Kamis 09.00–12.00. Info: https://palembang.go.id/pemadaman"
"""


def test_a_text_post_goes_to_every_recipient_as_a_text_only_template(e2e):
    fake = configure(e2e, TEXT_POST, template='{ name = "pengumuman_teks", language = "id" }')

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    assert [seen.json()["to"] for seen in e2e.server.requests] == RECIPIENTS
    assert e2e.server.requests[0].json()["template"] == {
        "name": "pengumuman_teks",
        "language": {"code": "id"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text":
            "Pemadaman listrik bergilir di Kemuning, Kamis 09.00–12.00. Info: https://palembang.go.id/pemadaman"}]}],
    }
    delivery = e2e.delivery("pemadaman")
    assert (delivery["state"], delivery["platform_id"]) == ("published", f"{fake.delivered[RECIPIENTS[0]]} (+2 more)")
    assert e2e.events(delivery["id"]) == ["created", "claimed", "attempt", "published"]
    e2e.assert_secrets_kept()


def test_a_throughput_limit_on_the_second_recipient_retries_and_the_next_run_sends_only_to_the_rest(e2e):
    fake = configure(e2e)
    fake.fail("messages", None, whatsapp_throughput_reached(), None)

    first = e2e.run_once()

    assert first.returncode == 0, first.stderr
    delivery = e2e.delivery("vaksinasi")
    assert delivery["state"] == "retrying"
    assert 0 < ready_in(delivery) <= MAX_BACKOFF_S  # no wait given by WhatsApp: the backoff
    assert list(e2e.checkpoint("vaksinasi")["sent"]) == [RECIPIENTS[0]]
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 429)
    assert "130429" in trail[-1]["error"]

    time.sleep(max(0.0, (utc(delivery["ready_at"]).timestamp() - time.time())) + 0.2)
    second = e2e.run_once()

    assert second.returncode == 0, second.stderr
    sent_to = [seen.json()["to"] for seen in e2e.server.requests]
    assert sent_to == [RECIPIENTS[0], RECIPIENTS[1], RECIPIENTS[1], RECIPIENTS[2]]  # the first, never again
    delivery = e2e.delivery("vaksinasi")
    assert (delivery["state"], delivery["attempts"]) == ("published", 2)
    assert set(e2e.checkpoint("vaksinasi")["sent"]) == set(RECIPIENTS)
    assert e2e.events(delivery["id"]) == [
        "created", "claimed", "attempt", "retry", "claimed", "attempt", "published",
    ]
    e2e.assert_secrets_kept()
