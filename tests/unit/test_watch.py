"""The posts folder's watch (publisher/watch.py) against the real kernel, and how the daemon's sync
job uses it: a tick in which nothing changed reads no file, a change is synced at once, and where
inotify cannot be used every tick walks the folder as before."""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from publisher import daemon as daemon_module
from publisher import sync as sync_module
from publisher import watch as watch_module
from publisher.watch import FolderWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")

DEBOUNCE = 0.02  # short: the tests wait for the callback, not for a fixed time


def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Calls:
    """The watch's callback: counts calls and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_beyond(self, count: int, timeout: float = 5.0) -> int:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count > count, timeout), "the watch did not call back"
            return self.count


@pytest.fixture
def posts(tmp_path: Path) -> Path:
    folder = tmp_path / "posts"
    (folder / "2026-11").mkdir(parents=True)
    (folder / "2026-11" / "ada.toml").write_text('to = ["latihan"]\ntext = "Ada"\n')
    return folder


@pytest.fixture
def watched(posts: Path) -> Iterator[tuple[FolderWatch, Calls]]:
    calls = Calls()
    watch = FolderWatch(posts, calls, debounce=DEBOUNCE, max_delay=0.5)
    assert watch.start(), watch.reason
    try:
        yield watch, calls
    finally:
        watch.close()


def changed_by(watched: tuple[FolderWatch, Calls], change: Callable[[], Any]) -> bool:
    """Make the change, wait for the watch's callback, and say whether the watch reports a change."""
    watch, calls = watched
    assert not watch.take()
    before = calls.count
    change()
    calls.wait_beyond(before)
    return watch.take()


def test_a_created_file_is_reported(watched, posts):
    assert changed_by(watched, lambda: (posts / "baru.toml").write_text('text = "Baru"\n'))


def test_a_modified_file_is_reported(watched, posts):
    assert changed_by(watched, lambda: (posts / "2026-11" / "ada.toml").write_text('text = "Ubah"\n'))


def test_a_touched_file_is_reported(watched, posts):
    target = posts / "2026-11" / "ada.toml"
    assert changed_by(watched, lambda: os.utime(target, ns=(0, target.stat().st_mtime_ns + 1_000_000)))


def test_a_deleted_file_is_reported(watched, posts):
    assert changed_by(watched, lambda: (posts / "2026-11" / "ada.toml").unlink())


def test_a_file_renamed_in_from_outside_is_reported(watched, posts, tmp_path):
    outside = tmp_path / "draft.toml"
    outside.write_text('text = "Draf"\n')
    assert changed_by(watched, lambda: outside.rename(posts / "2026-11" / "draft.toml"))


def test_a_file_renamed_away_is_reported(watched, posts, tmp_path):
    assert changed_by(watched, lambda: (posts / "2026-11" / "ada.toml").rename(tmp_path / "ada.toml"))


def test_a_file_in_a_new_subfolder_is_reported_and_so_are_later_changes_there(watched, posts):
    watch, calls = watched

    def deep() -> None:
        (posts / "2026-12" / "minggu-1").mkdir(parents=True)
        (posts / "2026-12" / "minggu-1" / "satu.toml").write_text('text = "Satu"\n')

    assert changed_by(watched, deep)
    eventually(lambda: watch.watches == 4, what="watches on the new folders")  # posts, 2026-11, 2026-12, minggu-1
    assert changed_by(watched, lambda: (posts / "2026-12" / "minggu-1" / "dua.toml").write_text('text = "Dua"\n'))


def test_a_folder_moved_in_with_posts_is_reported_and_watched(watched, posts, tmp_path):
    watch, _ = watched
    outside = tmp_path / "incoming" / "2027-01"
    outside.mkdir(parents=True)
    (outside / "tahun-baru.toml").write_text('text = "Tahun baru"\n')
    assert changed_by(watched, lambda: outside.rename(posts / "2027-01"))
    eventually(lambda: watch.watches == 3, what="a watch on the moved-in folder")
    assert changed_by(watched, lambda: (posts / "2027-01" / "tahun-baru.toml").unlink())


def test_nothing_is_reported_when_nothing_changed_nor_for_files_sync_does_not_read(watched, posts):
    watch, calls = watched
    time.sleep(0.1)
    assert not watch.take()
    (posts / "catatan.txt").write_text("bukan post")  # sync reads *.toml only
    (posts / ".ada.toml.swp").write_text("swap")  # hidden: an editor's
    (posts / ".git").mkdir()  # hidden folders are neither read nor watched
    (posts / ".git" / "HEAD.toml").write_text("x")
    (posts / "2026-11" / "ada.toml").read_text()  # reading changes nothing
    time.sleep(0.2)
    assert calls.count == 0
    assert not watch.take()
    assert watch.active


def test_a_burst_of_writes_is_one_or_two_callbacks_not_one_per_file(posts):
    calls = Calls()
    with FolderWatch(posts, calls, debounce=0.1, max_delay=2.0) as watch:
        assert watch.start()
        for i in range(300):
            (posts / f"massal-{i:03d}.toml").write_text(f'text = "Nomor {i}"\n')
        calls.wait_beyond(0)
        time.sleep(0.3)
        assert 1 <= calls.count <= 2
        assert watch.take()


def test_the_folder_itself_moved_away_makes_the_watch_inactive_and_changed(watched, posts, tmp_path):
    watch, calls = watched
    before = calls.count
    posts.rename(tmp_path / "posts-lama")
    calls.wait_beyond(before)
    assert not watch.active
    assert "moved" in (watch.reason or "")
    assert watch.retry == 0.0  # worth trying again at once: another folder may be there soon
    assert watch.take() and watch.take()  # an inactive watch never vouches for anything


def test_the_folder_replaced_by_another_under_its_name_is_noticed(watched, posts, tmp_path):
    watch, calls = watched
    fresh = tmp_path / "posts-baru"
    fresh.mkdir()
    (fresh / "lain.toml").write_text('text = "Lain"\n')
    before = calls.count
    # `mv -T posts-baru posts` over an emptied folder: the old folder is gone, a new one in its place
    (posts / "2026-11" / "ada.toml").unlink()
    (posts / "2026-11").rmdir()
    os.replace(fresh, posts)
    calls.wait_beyond(before)
    eventually(lambda: not watch.active, what="the watch giving up")
    assert watch.take()


def test_a_missing_folder_is_not_watched_and_worth_trying_again_at_once(tmp_path):
    watch = FolderWatch(tmp_path / "belum-ada")
    assert not watch.start()
    assert "does not exist" in (watch.reason or "")
    assert watch.retry == 0.0
    assert watch.take() and not watch.active
    watch.close()


def test_without_inotify_the_watch_says_so_and_always_reports_changes(posts, monkeypatch):
    monkeypatch.setattr(watch_module.sys, "platform", "darwin")
    watch = FolderWatch(posts)
    assert not watch.start()
    assert "Linux-only" in (watch.reason or "")
    assert watch.retry is None  # never worth trying again
    assert watch.take() and watch.take()
    watch.close()


def test_a_watch_limit_reached_falls_back_and_is_worth_trying_later(posts, monkeypatch):
    real = watch_module._Inotify.add_watch
    calls = []

    def limited(self, fd, path, mask):  # noqa: ANN001, ANN202 - the kernel's answer at the limit
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(self, fd, path, mask)

    monkeypatch.setattr(watch_module._Inotify, "add_watch", limited)
    watch = FolderWatch(posts, retry_later=123.0)
    assert not watch.start()
    assert "max_user_watches" in (watch.reason or "")
    assert watch.retry == 123.0
    assert watch.take()
    watch.close()
    assert watch._fd == -1  # nothing left open


def test_inotify_refused_by_a_seccomp_filter_falls_back_for_good(posts, monkeypatch):
    def refused(self):  # noqa: ANN001, ANN202
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), "inotify_init1")

    monkeypatch.setattr(watch_module._Inotify, "init", refused)
    watch = FolderWatch(posts)
    assert not watch.start()
    assert watch.retry is None and "not allowed" in (watch.reason or "")


def test_close_stops_the_thread_and_releases_the_descriptor(posts):
    watch = FolderWatch(posts, debounce=DEBOUNCE)
    assert watch.start()
    thread = watch._thread
    assert thread is not None and thread.is_alive()
    watch.close()
    assert not thread.is_alive()
    assert not watch.active and watch._fd == -1


# --- the daemon's sync job with the watch ---------------------------------------------------------


@pytest.fixture
def walks(monkeypatch) -> list[Path]:
    """Every full walk of a posts folder by the syncer."""
    seen: list[Path] = []
    real = sync_module.post_entries

    def counting(folder: Path) -> Any:
        seen.append(folder)
        return real(folder)

    monkeypatch.setattr(sync_module, "post_entries", counting)
    return seen


@pytest.fixture
def called_back(monkeypatch) -> Calls:
    """The daemon's watch callbacks (debounced: after the last event of a change)."""
    calls = Calls()
    real = daemon_module.Daemon.sync_soon

    def sync_soon(self: daemon_module.Daemon) -> None:
        real(self)
        calls()

    monkeypatch.setattr(daemon_module.Daemon, "sync_soon", sync_soon)
    monkeypatch.setattr(daemon_module, "WATCH_DEBOUNCE", DEBOUNCE)
    return calls


@pytest.fixture
def daemon(workspace, called_back) -> Iterator[daemon_module.Daemon]:
    workspace.post("satu.toml", 'to = ["latihan"]\nat = 2030-01-01T08:00:00\ntext = "Satu"\n')
    d = daemon_module.Daemon(workspace.settings())
    d.prepare()
    try:
        yield d
    finally:
        d.shutdown()


def post_ids(d: daemon_module.Daemon) -> set[str]:
    from sqlalchemy import text

    with d.db.read() as conn:
        return {row[0] for row in conn.execute(text("SELECT post_id FROM delivery WHERE state = 'pending'"))}


def test_the_sync_job_walks_only_when_the_watch_saw_a_change(daemon, workspace, walks, called_back):
    with structlog.testing.capture_logs() as logged:
        daemon._sync_job()  # the first pass: watch, then walk
    assert [e for e in logged if e["event"] == "sync.watching"] == [
        {"event": "sync.watching", "log_level": "info", "mode": "inotify", "folder": str(workspace.root / "posts"),
         "full_walk_every_s": 300.0, "watches": 1}]
    assert len(walks) == 1 and post_ids(daemon) == {"satu"}
    for _ in range(3):
        daemon._sync_job()  # idle ticks: the files are not read
    assert len(walks) == 1
    assert daemon.last_sync is not None and not daemon.last_sync.skipped

    before = called_back.count
    workspace.post("dua.toml", 'to = ["latihan"]\nat = 2030-01-02T08:00:00\ntext = "Dua"\n')
    called_back.wait_beyond(before)
    daemon._sync_job()
    assert len(walks) == 2 and post_ids(daemon) == {"satu", "dua"}
    daemon._sync_job()
    assert len(walks) == 2


def test_the_full_walk_still_runs_every_so_often_while_watching(daemon, walks, monkeypatch):
    daemon._sync_job()
    daemon._sync_job()
    assert len(walks) == 1
    monkeypatch.setattr(daemon, "_walked_at", time.monotonic() - 301)
    daemon._sync_job()
    assert len(walks) == 2


def test_without_inotify_the_daemon_walks_every_tick_as_before(daemon, workspace, walks, monkeypatch):
    monkeypatch.setattr(watch_module.sys, "platform", "darwin")
    with structlog.testing.capture_logs() as logged:
        for _ in range(3):
            daemon._sync_job()
    assert len(walks) == 3
    (event,) = [e for e in logged if e["event"] == "sync.watching"]  # said once, not every tick
    assert event["mode"] == "polling" and "Linux-only" in event["reason"]
    workspace.post("dua.toml", 'to = ["latihan"]\nat = 2030-01-02T08:00:00\ntext = "Dua"\n')
    daemon._sync_job()
    assert post_ids(daemon) == {"satu", "dua"}


def test_a_posts_folder_that_appears_later_is_walked_until_it_can_be_watched(workspace, walks, called_back):
    (workspace.root / "posts").rmdir()
    d = daemon_module.Daemon(workspace.settings())
    d.prepare()
    try:
        with structlog.testing.capture_logs() as logged:
            d._sync_job()
            d._sync_job()
            assert len(walks) == 2  # refused passes ("does not exist"): walked again each tick
            workspace.post("satu.toml", 'to = ["latihan"]\nat = 2030-01-01T08:00:00\ntext = "Satu"\n')
            d._sync_job()
            assert post_ids(d) == {"satu"} and d.watch is not None and d.watch.active
            d._sync_job()
            assert len(walks) == 3
        modes = [e["mode"] for e in logged if e["event"] == "sync.watching"]
        assert modes == ["polling", "inotify"]
    finally:
        d.shutdown()


def test_a_reload_pointing_at_another_posts_folder_watches_that_one(daemon, workspace, walks, called_back):
    daemon._sync_job()
    old = daemon.watch
    assert old is not None and old.active
    other = workspace.root / "lain"
    other.mkdir()
    (other / "tiga.toml").write_text('to = ["latihan"]\nat = 2030-01-03T08:00:00\ntext = "Tiga"\n')
    text = (workspace.root / "siar.toml").read_text().replace("[daemon]\n", '[daemon]\nposts = "lain"\n', 1)
    (workspace.root / "siar.toml").write_text(text)
    assert daemon.reload()
    daemon._sync_job()
    assert daemon.watch is not old and not old.active
    assert daemon.watch.folder == other and daemon.watch.active
    assert post_ids(daemon) == {"tiga"}
    walked = len(walks)
    before = called_back.count
    (other / "empat.toml").write_text('to = ["latihan"]\nat = 2030-01-04T08:00:00\ntext = "Empat"\n')
    called_back.wait_beyond(before)
    daemon._sync_job()
    assert len(walks) == walked + 1 and post_ids(daemon) == {"tiga", "empat"}


def test_a_change_seen_while_the_sync_job_runs_is_synced_in_the_same_run(daemon, workspace, walks, monkeypatch):
    daemon._sync_job()
    real = daemon._walk
    wrote = []

    def walk_then_change() -> Any:
        report = real()
        if not wrote:  # a file lands while the first walk runs; the watch calls back
            wrote.append(workspace.post("dua.toml", 'to = ["latihan"]\nat = 2030-01-02T08:00:00\ntext = "Dua"\n'))
            eventually(lambda: daemon._sync_again, what="the watch's call back")
        return report

    monkeypatch.setattr(daemon, "_walk", walk_then_change)
    daemon.watch._changed = True  # as if a file had changed: this run walks
    daemon._sync_job()
    assert post_ids(daemon) == {"satu", "dua"}
    assert len(walks) == 3


def test_a_watch_that_fails_unexpectedly_is_logged_and_the_daemon_walks_as_before(daemon, walks, monkeypatch):
    def broken(self):  # noqa: ANN001, ANN202
        raise RuntimeError("unexpected")

    monkeypatch.setattr(watch_module.FolderWatch, "start", broken)
    with structlog.testing.capture_logs() as logged:
        daemon._sync_job()
        daemon._sync_job()
    assert len(walks) == 2 and post_ids(daemon) == {"satu"}
    assert [e["event"] for e in logged if e["log_level"] == "error"] == ["sync.watch_failed"]  # once, not every tick
    assert daemon.watch is None


def test_a_posts_folder_replaced_under_a_running_daemon_is_watched_again(daemon, workspace, called_back, tmp_path):
    daemon._sync_job()
    old = daemon.watch
    posts = workspace.root / "posts"
    fresh = tmp_path / "posts-baru"
    fresh.mkdir()
    (fresh / "satu.toml").write_text((posts / "satu.toml").read_text())
    (fresh / "dua.toml").write_text('to = ["latihan"]\nat = 2030-01-02T08:00:00\ntext = "Dua"\n')
    before = called_back.count
    posts.rename(tmp_path / "posts-lama")
    fresh.rename(posts)
    called_back.wait_beyond(before)
    daemon._sync_job()
    assert daemon.watch is not old and daemon.watch.active
    assert post_ids(daemon) == {"satu", "dua"}
    before = called_back.count
    (posts / "dua.toml").unlink()
    called_back.wait_beyond(before)
    daemon._sync_job()
    assert post_ids(daemon) == {"satu"}
