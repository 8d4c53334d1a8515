"""YouTube end to end: a resumable upload in two chunks, and quotaExceeded waiting for the quota reset."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import EndToEnd, utc
from tests.e2e.fakeplatforms import FakeYouTube, youtube_quota_exceeded
from tests.support.media import mp4_bytes

pytestmark = pytest.mark.slow

CLIENT_ID = "418921234567-e2esiar0pemkot.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-e2eClientSecret0AbCdEfGhIjK"
REFRESH_TOKEN = "1//0ge2eRefreshTokenCgYIARAAGBASNwF-L9IrAbCdEfGhIjKlMnOpQrStUvWxYz"
VIDEO = mp4_bytes(300 * 1024)  # more than one 256 KiB chunk
CHUNK = 256 * 1024

# The quota resets at midnight Pacific time, up to a day away: the post may wait that long.
POST = """
id = "profil-kota"
to = ["pemkot-yt"]
title = "Profil Kota Palembang 2026"
text = "Video profil Kota Palembang: sejarah, budaya dan pembangunan."
link = "https://palembang.go.id/profil"
media = [{ file = "profil.mp4" }]
max_lateness = "2d"
"""


def configure(e2e: EndToEnd) -> FakeYouTube:
    fake = FakeYouTube(e2e.server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    e2e.configure(f"""
[accounts.pemkot-yt]
platform = "youtube"
client_id = "{CLIENT_ID}"
client_secret = "${{E2E_YT_CLIENT_SECRET}}"
refresh_token = "${{E2E_YT_REFRESH_TOKEN}}"
privacy = "unlisted"
category = "25"
chunk_size = {CHUNK}
api_base = "{e2e.api}"
""", {"E2E_YT_CLIENT_SECRET": CLIENT_SECRET, "E2E_YT_REFRESH_TOKEN": REFRESH_TOKEN})
    e2e.media("profil.mp4", VIDEO)
    e2e.post("profil.toml", POST)
    return fake


def test_a_video_post_refreshes_the_token_opens_a_session_and_uploads_in_chunks_to_a_watch_url(e2e):
    fake = configure(e2e)

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.complaints() == []
    upload = "/upload/youtube/v3/videos"
    assert e2e.requests() == [("POST", "/token"), ("POST", upload), ("PUT", upload), ("PUT", upload)]
    token, insert, first, last = e2e.server.requests
    assert token.form() == {"grant_type": "refresh_token", "client_id": CLIENT_ID,
                            "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
    (access_token,) = fake.access_tokens
    for seen in (insert, first, last):
        assert seen.header("Authorization") == f"Bearer {access_token}"
    assert insert.query["uploadType"] == "resumable"
    assert set(insert.query["part"].split(",")) == {"snippet", "status"}
    assert insert.header("X-Upload-Content-Length") == str(len(VIDEO))
    assert insert.header("X-Upload-Content-Type") == "video/mp4"
    metadata = insert.json()
    assert metadata["snippet"]["title"] == "Profil Kota Palembang 2026"
    assert metadata["snippet"]["description"] == (
        "Video profil Kota Palembang: sejarah, budaya dan pembangunan.\n\nhttps://palembang.go.id/profil"
    )
    assert metadata["snippet"]["categoryId"] == "25"
    assert metadata["status"]["privacyStatus"] == "unlisted"
    (upload_id,) = fake.sessions
    assert first.query["upload_id"] == last.query["upload_id"] == upload_id
    assert first.header("Content-Range") == f"bytes 0-{CHUNK - 1}/{len(VIDEO)}"
    assert last.header("Content-Range") == f"bytes {CHUNK}-{len(VIDEO) - 1}/{len(VIDEO)}"
    assert first.body + last.body == VIDEO

    (video_id,) = fake.videos
    delivery = e2e.delivery("profil-kota")
    assert delivery["state"] == "published"
    assert delivery["platform_id"] == video_id
    assert delivery["url"] == f"https://www.youtube.com/watch?v={video_id}"
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "published"]
    assert trail[-1]["platform_id"] == video_id
    e2e.assert_secrets_kept(access_token)
    assert upload_id not in "\n".join(e2e.stderr)  # whoever holds the session URI can write to it


def test_quota_exceeded_leaves_the_video_retrying_at_the_next_midnight_pacific_time(e2e):
    fake = configure(e2e)
    fake.fail("insert", youtube_quota_exceeded())

    result = e2e.run_once()

    assert result.returncode == 0, result.stderr
    assert e2e.requests() == [("POST", "/token"), ("POST", "/upload/youtube/v3/videos")]
    delivery = e2e.delivery("profil-kota")
    assert delivery["state"] == "retrying"
    pacific = ZoneInfo("America/Los_Angeles")
    today = utc(delivery["updated_at"]).astimezone(pacific).date()
    reset = datetime.combine(today + timedelta(days=1), time(0), tzinfo=pacific)
    assert abs((utc(delivery["ready_at"]) - reset).total_seconds()) <= 5
    trail = e2e.trail(delivery["id"])
    assert [t["event"] for t in trail] == ["created", "claimed", "attempt", "retry"]
    assert (trail[-1]["attempt"], trail[-1]["http_status"]) == (1, 403)
    assert "quotaExceeded" in trail[-1]["error"]
    e2e.assert_secrets_kept(*fake.access_tokens)
