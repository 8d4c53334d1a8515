"""Bad input end to end: `siar check` names every problem; the daemon logs the same problems,
keeps every other post flowing and loses nothing it already had."""

from __future__ import annotations

import json
import os

import pytest

from tests.support import media as media_files
from tests.support.process import query, run_siar, siar_env

pytestmark = pytest.mark.slow

BROKEN_POSTS = {
    "bad-toml.toml": 'to = ["latihan"]\ntext = "tidak ditutup\n',
    "unknown-key.toml": 'to = ["latihan"]\ntext = "x"\nwarna = "merah"\n',
    "unknown-account.toml": 'to = ["pemkot-fb"]\ntext = "x"\n',
    "empty-to.toml": 'to = []\ntext = "x"\n',
    "no-to.toml": 'text = "x"\n',
    "bad-time.toml": 'to = ["latihan"]\nat = "besok pagi"\ntext = "x"\n',
    "date-only.toml": 'to = ["latihan"]\nat = 2026-12-01\ntext = "x"\n',
    "bad-cron.toml": 'to = ["latihan"]\nrepeat = "0 25 * * *"\ntext = "x"\n',
    "until-no-repeat.toml": 'to = ["latihan"]\nuntil = 2027-01-01T00:00:00\ntext = "x"\n',
    "missing-media.toml": 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "tidak-ada.png", alt = "a" }]\n',
    "escaping-media.toml": 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "../siar.toml", alt = "a" }]\n',
    "empty-text.toml": 'to = ["latihan"]\ntext = "   "\n',
    "bad-link.toml": 'to = ["latihan"]\ntext = "x"\nlink = "bukan tautan"\n',
    "stray-variant.toml": 'to = ["latihan"]\ntext = "x"\n[variants.arsip]\ntext = "y"\n',
    "bad-lateness.toml": 'to = ["latihan"]\ntext = "x"\nmax_lateness = "sebentar"\n',
    "wrong-type.toml": 'to = "latihan"\ntext = 42\n',
}


def test_check_names_every_problem_and_the_daemon_logs_the_same_while_good_posts_flow(workspace, siar_database):
    media_files.write(workspace.root / "media", "peta.png", media_files.png_bytes())
    workspace.post("tetap.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Sudah terjadwal"\n')
    workspace.post("diubah.toml", 'at = 2099-01-01T08:00:00\nto = ["arsip"]\ntext = "Versi pertama"\n')
    first = run_siar(workspace.root, "run", "--once")
    assert first.returncode == 0, first.stderr

    for name, text in BROKEN_POSTS.items():
        workspace.post(f"rusak/{name}", text)
    # A file the database already knows becomes invalid: what it had must be kept as it was.
    workspace.post("diubah.toml", 'at = 2099-01-01T08:00:00\nto = ["arsip"]\ntext = "Versi kedua"\nwarna = 1\n')
    workspace.post("baru.toml", 'to = ["latihan"]\ntext = "Tetap terbit"\nmedia = [{ file = "peta.png", alt = "Peta" }]\n')

    check = run_siar(workspace.root, "check")
    assert check.returncode == 1
    lines = [line for line in check.stdout.splitlines() if ": error: " in line]
    by_file: dict[str, set[str]] = {}
    for line in lines:
        by_file.setdefault(line.split(":", 1)[0], set()).add(line)
    broken_paths = {str(workspace.root / "posts" / "rusak" / name) for name in BROKEN_POSTS}
    assert broken_paths | {str(workspace.root / "posts" / "diubah.toml")} == set(by_file)
    for line in lines:
        if "no-to.toml" not in line:  # a missing key has no line; everything else names one
            assert line.split(":", 2)[1].isdigit(), line

    run = run_siar(workspace.root, "run", "--once")
    assert run.returncode == 1  # problems were found...
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    logged = {e["problem"] for e in events if e.get("event") == "sync.file_invalid"}
    assert logged == set(lines)  # ...the same ones `siar check` printed

    db = workspace.database
    states = {r["post_id"]: (r["state"], json.loads(r["message"])["text"]) for r in query(db, "SELECT * FROM delivery")}
    assert states["baru"] == ("published", "Tetap terbit")
    assert states["tetap"] == ("pending", "Sudah terjadwal")
    assert states["diubah"] == ("pending", "Versi pertama")  # kept as it was
    assert not any(post.startswith("rusak/") for post in states)
    assert len(os.listdir(workspace.state / "outbox" / "latihan")) == 1


@pytest.mark.parametrize(("name", "settings", "expected"), [
    ("bad TOML", '[daemon\ntimezone = "Asia/Jakarta"\n', ":1: error:"),
    ("unknown key", '[daemon]\nwarna = "merah"\n', ":2: error: daemon.warna: unknown key"),
    ("unknown platform", '[accounts.a]\nplatform = "friendster"\n', "known platforms: "),
    ("invalid time zone", '[daemon]\ntimezone = "Asia/Palembang"\n', ":2: error: daemon.timezone: unknown time zone"),
    ("missing variable", '[accounts.h]\nplatform = "webhook"\nurl = "https://h.example.go.id"\nsecret = "${TIDAK_ADA}"\n',
     ":4: error: accounts.h.secret:"),
    ("bad duration", '[retry]\nfirst_delay = "sebentar"\n', ":2: error: retry.first_delay:"),
])
# SQLite only: a broken siar.toml stops every command before any database is opened, whichever it
# names; the first test of this file covers the daemon's reading of bad posts on both backends.
def test_a_broken_siar_toml_stops_every_command_with_its_problem_and_nothing_is_lost(workspace, name, settings,
                                                                                    expected):
    workspace.post("p.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Aman"\n')
    assert run_siar(workspace.root, "run", "--once").returncode == 0
    good = (workspace.root / "siar.toml").read_text()
    workspace.write_settings(settings)
    for command in (["check"], ["run", "--once"], ["status"]):
        result = run_siar(workspace.root, *command, env=siar_env())
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert expected in result.stdout + result.stderr, (command, result.stdout, result.stderr)
    workspace.write_settings(good)
    rows = query(workspace.state / "siar.db", "SELECT state FROM delivery")
    assert [r["state"] for r in rows] == ["pending"]
