"""A platform Siar does not ship, added by a separate package through the `siar.adapters`
entry-point group: built and installed (into a folder of its own) during the test run, then
used by the real `siar` for `check` and `run --once`. On SQLite only: the adapter registry sits
above the database, which the other subprocess tests cover on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.process import query, run_siar, siar_env

pytestmark = pytest.mark.slow

PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "siar-papan-pengumuman"
        version = "1.0.0"

        [project.entry-points."siar.adapters"]
        papan = "siar_papan:PapanAdapter"
    """,
    "siar_papan.py": '''
        """A town notice board: writes each post as a line in a file (a stand-in platform)."""
        import json
        from pathlib import Path

        from adapters.base import BaseAdapter, Limits, Receipt


        class PapanAdapter(BaseAdapter):
            platform = "papan"
            limits = Limits(text_max=40, media_max=0)
            required = ("board",)

            def publish(self, message, job):
                board = Path(self.account["board"])
                with board.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"key": job.key, "text": message.text}) + "\\n")
                return Receipt(job.key, None)

            def whoami(self):
                return f"papan {self.account['board']}"
    ''',
}


def test_a_separately_installed_package_adds_a_platform_through_the_entry_point_group(workspace, tmp_path):
    source = tmp_path / "paket"
    source.mkdir()
    for name, text in PACKAGE.items():
        (source / name).write_text(textwrap.dedent(text).lstrip())
    target = tmp_path / "terpasang"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    env = siar_env(PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))

    board = tmp_path / "papan.jsonl"
    workspace.add_settings(f'\n[accounts.balai-kota]\nplatform = "papan"\nboard = "{board}"\n')
    workspace.post("pengumuman.toml", 'to = ["balai-kota"]\ntext = "Kerja bakti Minggu pagi"\n')
    workspace.post("kepanjangan.toml", 'to = ["balai-kota"]\ntext = "' + "x" * 41 + '"\n')

    check = run_siar(workspace.root, "check", env=env)
    assert check.returncode == 1
    assert "kepanjangan.toml:2: error: text: for balai-kota (papan): is 41 characters long; the limit is 40" \
        in check.stdout

    run = run_siar(workspace.root, "run", "--once", env=env)
    assert run.returncode == 1  # the over-long post is reported; the other one goes out
    lines = [json.loads(line) for line in board.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["Kerja bakti Minggu pagi"]
    (row,) = query(workspace.state / "siar.db", "SELECT * FROM delivery")
    assert (row["platform"], row["state"], row["platform_id"]) == ("papan", "published", lines[0]["key"])

    # Without the package the platform is unknown, and the error names the ones that are known.
    missing = run_siar(workspace.root, "check")
    assert missing.returncode == 1
    assert "unknown platform 'papan'; known platforms: bluesky, facebook" in missing.stdout + missing.stderr
