"""`siar check` as a quality gate: each editor's warning triggered and not, `--strict`, the JSON and
GitHub formats parsed back, and `--online` link checks against a local server."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime, timedelta, timezone

import pytest

from tests.support import media as media_files
from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import run_siar

pytestmark = pytest.mark.slow

SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"

[accounts.ig]
platform = "instagram"
ig_user_id = "17841400000000000"
token = "${IG_TOKEN}"

[accounts.fb]
platform = "facebook"
page_id = "1234567890"
token = "${FB_TOKEN}"

[accounts.latihan]
platform = "outbox"
"""
ENV = "IG_TOKEN=ig-token-value-123\nFB_TOKEN=fb-token-value-456\n"


@pytest.fixture
def gate(workspace):
    workspace.write_settings(SETTINGS.replace("[daemon]\n", '[daemon]\nmedia_url = "https://cdn.example.go.id/m/"\n'))
    (workspace.root / ".env").write_text(ENV)
    (workspace.root / ".env").chmod(0o600)  # a world-readable .env is a warning of its own
    media_files.write(workspace.root / "media", "foto.jpg", media_files.jpeg_bytes())
    return workspace


def warnings_for(workspace, name: str, *args: str) -> list[dict]:
    result = run_siar(workspace.root, "check", "--format", "json", *args)
    return [p for p in json.loads(result.stdout) if p["path"].endswith(name)]


@pytest.mark.parametrize(("name", "bad", "good", "field", "words"), [
    ("alt", 'to = ["latihan"]\ntext = "Foto"\nmedia = [{ file = "foto.jpg" }]\n',
     'to = ["latihan"]\ntext = "Foto"\nmedia = [{ file = "foto.jpg", alt = "Wali kota menanam pohon" }]\n',
     "media[0].alt", "no alt text"),
    ("hashtags", 'to = ["ig"]\ntext = "Hari ini #a #b #c #d #e #f"\nmedia = [{ file = "foto.jpg", alt = "x" }]\n',
     'to = ["ig"]\ntext = "Hari ini #a #b"\nmedia = [{ file = "foto.jpg", alt = "x" }]\n',
     "text", "6 hashtags; instagram favours at most 5"),
    ("same-text", 'to = ["ig", "fb"]\ntext = "Sama"\nmedia = [{ file = "foto.jpg", alt = "x" }]\n',
     'to = ["ig", "fb"]\ntext = "Sama"\nmedia = [{ file = "foto.jpg", alt = "x" }]\n[variants.fb]\ntext = "Beda"\n',
     "text", "the same text goes to 2 platforms"),
    ("repeat", 'to = ["latihan"]\nrepeat = "0 8 * * MON"\ntext = "Senin"\n',
     'to = ["latihan"]\nrepeat = "0 8 * * MON"\nuntil = 2027-12-31T00:00:00\ntext = "Senin"\n',
     "repeat", "no `until`"),
])
def test_each_quality_warning_is_raised_by_a_file_that_triggers_it_and_not_by_one_that_does_not(
    gate, name, bad, good, field, words
):
    gate.post(f"{name}-bad.toml", bad)
    gate.post(f"{name}-good.toml", good)
    found = warnings_for(gate, f"{name}-bad.toml")
    assert [(p["severity"], p["field"]) for p in found if words in p["message"]] == [("warning", field)]
    assert not [p for p in warnings_for(gate, f"{name}-good.toml") if words in p["message"]]


def test_a_post_due_inside_a_blackout_window_is_flagged(gate):
    gate.add_settings('\n[[blackout]]\nstart = 2030-01-01T00:00:00\nend = 2030-01-02T00:00:00\n'
                      'reason = "Masa tenang"\n')
    gate.post("dalam.toml", 'at = 2030-01-01T09:00:00\nto = ["latihan"]\ntext = "x"\n')
    gate.post("luar.toml", 'at = 2030-01-03T09:00:00\nto = ["latihan"]\ntext = "y"\n')
    found = warnings_for(gate, "dalam.toml")
    assert found and "blackout window 'Masa tenang'" in found[0]["message"] and found[0]["line"] == 1
    assert warnings_for(gate, "luar.toml") == []


def test_warnings_pass_the_check_unless_strict_and_errors_always_fail(gate):
    gate.post("tanpa-alt.toml", 'to = ["latihan"]\ntext = "Foto"\nmedia = [{ file = "foto.jpg" }]\n')
    assert run_siar(gate.root, "check").returncode == 0
    assert run_siar(gate.root, "check", "--strict").returncode == 1
    gate.post("rusak.toml", 'to = ["latihan"]\n')
    assert run_siar(gate.root, "check").returncode == 1


def test_the_github_format_gives_one_workflow_annotation_per_problem(gate):
    post = gate.post("tanpa-alt.toml", 'to = ["latihan"]\ntext = "Foto"\nmedia = [{ file = "foto.jpg" }]\n')
    gate.post("rusak.toml", 'to = ["latihan"]\ntext = "x"\nwarna = 1\n')
    result = run_siar(gate.root, "check", "--format", "github")
    annotations = [re.fullmatch(r"::(error|warning) (.*?)::(.*)", line) for line in result.stdout.splitlines()]
    assert all(annotations) and len(annotations) == 2
    parsed = {m.group(1): dict(kv.split("=", 1) for kv in m.group(2).split(",")) for m in annotations}
    assert parsed["warning"]["file"] == str(post) and parsed["warning"]["line"] == "3"
    assert parsed["warning"]["title"] == "media[0].alt"
    assert parsed["error"]["file"].endswith("rusak.toml") and parsed["error"]["line"] == "3"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_online_link_checks_flag_links_that_do_not_answer_and_cache_the_answers(gate):
    with FakeServer() as server:
        server.route("HEAD", "/ada", Answer(200))
        server.route("HEAD", "/hilang", Answer(404))
        server.route("HEAD", "/tolak-head", Answer(405))
        server.route("GET", "/tolak-head", Answer(200, "ok"))
        dead = f"http://127.0.0.1:{closed_port()}/mati"
        for name, url in (("ada", f"{server.url}/ada"), ("hilang", f"{server.url}/hilang"),
                          ("head", f"{server.url}/tolak-head"), ("mati", dead)):
            gate.post(f"{name}.toml", f'to = ["latihan"]\ntext = "{name}"\nlink = "{url}"\n')
        assert run_siar(gate.root, "check").returncode == 0  # offline: no link is asked
        assert server.requests == []
        result = run_siar(gate.root, "check", "--online", "--format", "json")
        found = {p["path"].rsplit("/", 1)[1]: p["message"] for p in json.loads(result.stdout)}
        asked = len(server.requests)
        again = run_siar(gate.root, "check", "--online")
        assert len(server.requests) == asked  # answers are cached
    assert "ada.toml" not in found and "head.toml" not in found
    assert found["hilang.toml"].endswith("answers HTTP 404")
    assert "does not answer" in found["mati.toml"]
    assert again.returncode == 0 and "hilang.toml" in again.stdout
