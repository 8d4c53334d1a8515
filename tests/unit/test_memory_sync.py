"""Memory: what a syncer keeps between passes, and what a pass holds while it reads the files.

An idle daemon keeps one syncer for as long as it runs, over every post file; its size per file
is the daemon's footprint (bench `footprint`: 10,000 files). These bounds are a few times what is
measured (about 500 bytes kept and 800 bytes at the peak per file, with Python 3.11), well under
what keeping the parsed posts cost (about 3,000 bytes kept per file).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from publisher import sync as sync_module
from publisher.db import Database
from publisher.posts import PostSpec, post_entries
from publisher.sync import Syncer

FILES = 400
KEPT_PER_FILE = 1_000  # bytes
PEAK_PER_FILE = 2_000


@pytest.fixture
def synced(workspace: Any) -> Iterator[tuple[Any, Database]]:
    """FILES post files in 10 folders, one of them a repeat, synced once into a fresh database."""
    for i in range(FILES):
        workspace.post(f"{i % 10:02d}/post-{i:04d}.toml",
                       f'at = 2099-01-01T08:00:00\nto = ["latihan", "arsip"]\ntext = "Agenda nomor {i}"\n')
    workspace.post("harian.toml", 'to = ["latihan"]\nrepeat = "0 8 * * *"\ntext = "Selamat pagi"\n')
    settings = workspace.settings()
    db = Database(settings.database)
    db.migrate()
    assert Syncer(db, settings).run().created == FILES + 1
    yield settings, db
    db.dispose()


def _specs_alive() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, PostSpec))


def test_a_restarted_syncer_keeps_no_parsed_post_but_the_repeats(synced: tuple[Any, Database]) -> None:
    settings, db = synced
    before = _specs_alive()
    syncer = Syncer(db, settings)
    report = syncer.run()
    assert (report.parsed, report.changed) == (FILES + 1, False)
    assert _specs_alive() - before == 1  # the repeating post's: every pass needs it


def test_what_a_syncer_keeps_and_holds_per_file_is_bounded(synced: tuple[Any, Database]) -> None:
    settings, db = synced
    syncer = Syncer(db, settings)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        syncer.run()  # a restart: every file read, the database already has them all
        gc.collect()
        kept, peak = (value - start for value in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    files = FILES + 1
    assert kept / files < KEPT_PER_FILE, f"{kept / files:.0f} bytes kept per file"
    assert peak / files < PEAK_PER_FILE, f"{peak / files:.0f} bytes per file at the peak"


def test_a_pass_that_parsed_many_files_gives_the_c_heap_back(
    synced: tuple[Any, Database], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, db = synced
    trims: list[bool] = []
    monkeypatch.setattr(sync_module, "_trim_heap", lambda: trims.append(True))
    monkeypatch.setattr(sync_module, "TRIM_AFTER_PARSED", FILES)
    syncer = Syncer(db, settings)
    syncer.run()  # parses every file
    syncer.run()  # parses none
    assert trims == [True]


def test_trimming_the_c_heap_is_harmless_wherever_it_runs() -> None:
    sync_module._trim_heap()
    sync_module._trim_heap()  # looked up once, then called again


def test_the_folder_walk_returns_names_not_directory_entries(workspace: Any) -> None:
    workspace.post("b/dua.toml", 'to = ["latihan"]\ntext = "Dua"\n')
    workspace.post("a.toml", 'to = ["latihan"]\ntext = "Satu"\n')
    workspace.post(".tersembunyi.toml", 'to = ["latihan"]\ntext = "Tidak"\n')
    names, error = post_entries(workspace.settings().posts_dir)
    assert (names, error) == (["a.toml", "b/dua.toml"], None)
