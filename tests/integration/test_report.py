"""`siar report`: a month of real sends (outbox, and a webhook that publishes or answers 422) as
numbers, JSON and one self-contained HTML page, which headless Chromium renders to a PNG."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from publisher import report
from tests.support.commands import rows, settle
from tests.support.fakeserver import Answer, FakeServer

JAKARTA = ZoneInfo("Asia/Jakarta")
PERMALINK = "https://sosmed.example.go.id/p/9001?ref=siar&lang=id"
REFUSAL = {"error": "text refused: <script>alert('x')</script> & more"}
SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
lease = "10s"
http_timeout = "2s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "4s"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


def webhook(name: str, url: str) -> str:
    return f'\n[accounts.{name}]\nplatform = "webhook"\nurl = "{url}"\nsecret = "${{HOOK_SECRET}}"\n'


def local(moment: datetime) -> str:
    """A post file's `at`, in the operator's zone, without an offset."""
    return moment.astimezone(JAKARTA).replace(tzinfo=None, microsecond=0).isoformat()


@pytest.fixture
def month(workspace):
    """One real pass over posts due around now: published on time and late, failed, expired."""
    now = datetime.now(timezone.utc)
    if (now - timedelta(minutes=10)).astimezone(JAKARTA).month != now.astimezone(JAKARTA).month:
        pytest.skip("the posts would straddle a month boundary (the first ten minutes of a month in Jakarta)")
    with FakeServer() as server:
        server.route("POST", "/ok", Answer(200, {"id": "9001", "url": PERMALINK}))
        server.route("POST", "/bad", Answer(422, REFUSAL))
        workspace.write_settings(SETTINGS + webhook("hook-ok", f"{server.url}/ok") + webhook("hook-bad", f"{server.url}/bad"))
        (workspace.root / ".env").write_text("HOOK_SECRET=report-test-secret\n")
        (workspace.root / ".env").chmod(0o600)
        workspace.post("tepat.toml", 'to = ["latihan", "hook-ok"]\ntext = "<b>Pengumuman</b> & \\"kutipan\\"\\nbaris 2"\n')
        workspace.post("telat.toml", f'at = {local(now - timedelta(minutes=8))}\nto = ["arsip"]\ntext = "Terlambat"\n')
        workspace.post("gagal.toml", 'to = ["hook-bad"]\ntext = "Ditolak platform"\n')
        workspace.post("kadaluarsa.toml", f'at = {local(now - timedelta(minutes=3))}\nmax_lateness = "1m"\n'
                                          'to = ["latihan"]\ntext = "Kedaluwarsa"\n')
        settle(workspace)
    states = {(r["post_id"], r["account"]): (r["state"], r["hold_reason"]) for r in rows(workspace, "SELECT * FROM delivery")}
    assert states == {
        ("tepat", "latihan"): ("published", None), ("tepat", "hook-ok"): ("published", None),
        ("telat", "arsip"): ("published", None), ("gagal", "hook-bad"): ("failed", None),
        ("kadaluarsa", "latihan"): ("held", "expired"),
    }
    return SimpleNamespace(ws=workspace, month=now.astimezone(JAKARTA).strftime("%Y-%m"),
                           deliveries={(r["post_id"], r["account"]): r for r in rows(workspace, "SELECT * FROM delivery")})


def run(workspace, *argv: str) -> tuple[int, str]:
    """`siar report …` through a parser built from the module's `register`, in-process."""
    parser = argparse.ArgumentParser(prog="siar")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    report.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["report", *argv, "--config", str(workspace.root)])
    out = io.StringIO()
    return report.run_report(args, stdout=out), out.getvalue()


def test_the_json_report_counts_per_account_and_platform_with_the_on_time_rate(month):
    code, out = run(month.ws, "--month", month.month, "--json")

    assert code == 0
    data = json.loads(out)
    assert data["month"] == month.month and data["timezone"] == "Asia/Jakarta"
    # Five deliveries: two on time, one eight minutes late, one refused, one expired.
    assert {k: data["totals"][k] for k in ("due", "published", "on_time", "late", "failed", "needs_person")} == \
        {"due": 5, "published": 3, "on_time": 2, "late": 1, "failed": 1, "needs_person": 1}
    assert data["totals"]["on_time_rate"] == pytest.approx(2 / 5)
    accounts = {a["account"]: a for a in data["by_account"]}
    assert accounts["latihan"]["on_time_rate"] == pytest.approx(0.5)  # on time once, expired once
    assert accounts["arsip"]["late"] == 1 and accounts["arsip"]["on_time_rate"] == 0
    assert accounts["hook-bad"]["failed"] == 1 and accounts["hook-ok"]["on_time_rate"] == 1
    platforms = {p["platform"]: p for p in data["by_platform"]}
    assert platforms["outbox"]["due"] == 3 and platforms["webhook"]["due"] == 2
    published = {(p["post_id"], p["account"]): p for p in data["published"]}
    assert published[("tepat", "hook-ok")]["url"] == PERMALINK
    assert published[("telat", "arsip")]["delay_s"] >= 8 * 60 and published[("telat", "arsip")]["on_time"] is False
    assert published[("tepat", "latihan")]["url"] == month.deliveries[("tepat", "latihan")]["url"]
    assert published[("tepat", "latihan")]["published_local"].endswith("+07:00")
    (failed,) = data["failed"]
    assert failed["post_id"] == "gagal" and "text refused" in failed["last_error"]
    assert [p["hold_reason"] for p in data["needs_person"]] == ["expired"]


def test_another_month_has_nothing_and_a_bad_month_is_bad_usage(month, capsys):
    code, out = run(month.ws, "--month", "2001-01", "--json")
    assert code == 0 and json.loads(out)["totals"]["due"] == 0

    with pytest.raises(SystemExit) as exit_info:
        run(month.ws, "--month", "2026-13")
    assert exit_info.value.code == 2
    assert "expected a month like 2026-11, got '2026-13'" in capsys.readouterr().err


def test_the_text_report_reads_per_account(month):
    code, out = run(month.ws, "--month", month.month)

    assert code == 0
    assert out.startswith(f"Siar report for {month.month} (Asia/Jakarta): 5 deliveries due, 3 published, 2 on time "
                          "(within 5m), 1 late, 1 failed, 1 waiting for a person; on-time rate 40%")
    assert re.search(r"\nlatihan +outbox +2 +1 +1 +0 +0 +1 +0 +0 +50%\n", out), out
    assert "text refused" in out


def test_the_html_report_holds_the_permalinks_and_the_reasons_escaped_and_no_script(month, tmp_path):
    target = tmp_path / "laporan.html"

    code, out = run(month.ws, "--month", month.month, "--html", str(target))

    assert code == 0 and out.rstrip().endswith(f"wrote {target}")
    page = target.read_text(encoding="utf-8")
    for key in [("tepat", "latihan"), ("tepat", "hook-ok"), ("telat", "arsip")]:
        url = month.deliveries[key]["url"]
        assert f'href="{escape(url)}"' in page, url
    assert f'href="{escape(PERMALINK)}"' in page and "&amp;lang=id" in page
    assert escape(REFUSAL["error"]) in page  # the platform's reason, as text
    assert "<script" not in page.lower() and "<b>Pengumuman" not in page  # nothing from a post runs or renders
    assert "&lt;b&gt;Pengumuman&lt;/b&gt; &amp; &quot;kutipan&quot;" in page
    assert "default-src 'none'" in page  # and nothing is fetched: the page stands alone
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//(?!sosmed\.example)""", page)
    assert "<svg" in page and "Deliveries per account" in page
    assert "Asia/Jakarta (UTC+07:00)" in page and "expired" in page


def test_a_javascript_url_from_a_platform_is_shown_as_text_never_as_a_link():
    assert report.permalink("javascript:alert(1)") == "javascript:alert(1)"
    assert report.permalink('https://x.example/a"b<c') == '<a href="https://x.example/a&quot;b&lt;c">' \
                                                          'https://x.example/a&quot;b&lt;c</a>'


# --- what a person sees --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here if it is missing and this is possible."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=1200)
        found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed and cannot be installed here (not root, or no apt-get)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " — CI must render the report")
        pytest.skip(reason)
    return found


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow  # starts Chromium
def test_the_html_report_renders_in_headless_chromium_to_a_page_a_person_can_read(month, tmp_path, chromium):
    page = tmp_path / "laporan.html"
    assert run(month.ws, "--month", month.month, "--html", str(page))[0] == 0
    html_text = page.read_text(encoding="utf-8")
    assert all(f'href="{escape(d["url"])}"' in html_text for d in month.deliveries.values() if d["url"])
    assert escape(REFUSAL["error"]) in html_text
    shot = tmp_path / "laporan.png"

    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (1200, 1600)
    assert len(data) > 40_000  # text, tables and bars; a blank page of this size is a few kilobytes
    keep = os.environ.get("SIAR_KEEP_REPORT_PNG")
    if keep:  # for a person to look at: SIAR_KEEP_REPORT_PNG=/tmp/report.png
        Path(keep).write_bytes(data)
