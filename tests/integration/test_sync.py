"""Sync: the post files are the desired state and the database converges to them (DESIGN.md §2)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from publisher.models import utcnow
from publisher.states import State
from publisher.store import D


def test_a_new_post_creates_one_pending_delivery_per_target_account_with_an_audit_event(workspace, engine):
    workspace.post("hari-guru.toml", """
        at = 2099-11-25T08:00:00
        to = ["latihan", "arsip"]
        text = "Selamat Hari Guru!"
    """)
    e = engine()
    report = e.syncer.run()
    assert report.created == 1
    rows = e.deliveries(post_id="hari-guru")
    assert [(r["account"], r["state"]) for r in rows] == [("latihan", "pending"), ("arsip", "pending")]
    # 08:00 in Asia/Jakarta (UTC+7) is 01:00 UTC.
    assert rows[0]["due_at"] == datetime(2099, 11, 25, 1, 0, tzinfo=timezone.utc)
    assert json.loads(rows[0]["message"])["text"] == "Selamat Hari Guru!"
    assert rows[0]["key"] != rows[1]["key"]
    for row in rows:
        assert e.event_names(row["id"]) == ["created"]


def test_a_post_without_at_is_due_at_once(workspace, engine):
    workspace.post("segera.toml", 'to = ["latihan"]\ntext = "Segera"\n')
    e = engine()
    before = utcnow()
    e.syncer.run()
    row = e.one(post_id="segera")
    assert before <= row["due_at"] <= utcnow()


def test_variants_give_each_account_its_own_content(workspace, engine):
    workspace.post("v.toml", """
        to = ["latihan", "arsip"]
        text = "Teks utama"
        link = "https://example.go.id/a"
        [variants.arsip]
        text = "Teks arsip"
    """)
    e = engine()
    e.syncer.run()
    latihan = json.loads(e.one(account="latihan")["message"])
    arsip = json.loads(e.one(account="arsip")["message"])
    assert latihan["text"] == "Teks utama"
    assert arsip["text"] == "Teks arsip"
    assert arsip["link"] == "https://example.go.id/a"  # fields the variant does not override are kept


def test_a_changed_pending_post_takes_the_new_content_and_time_and_is_audited(workspace, engine):
    workspace.post("p.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Lama"\n')
    e = engine()
    e.syncer.run()
    workspace.post("p.toml", 'at = 2099-01-02T09:30:00\nto = ["latihan"]\ntext = "Baru"\n')
    report = e.syncer.run()
    assert report.updated == 1
    row = e.one(post_id="p")
    assert json.loads(row["message"])["text"] == "Baru"
    assert row["due_at"] == datetime(2099, 1, 2, 2, 30, tzinfo=timezone.utc)
    assert row["state"] == "pending"
    updated = [ev for ev in e.events(delivery_id=row["id"]) if ev["event"] == "updated"]
    assert len(updated) == 1
    assert json.loads(updated[0]["detail"]) == {"content": True, "due_at": "2099-01-02T02:30:00+00:00"}


def test_a_change_to_a_post_already_published_leaves_that_delivery_alone_with_a_warning(workspace, engine):
    workspace.post("p.toml", 'to = ["latihan"]\ntext = "Terbit"\n')
    e = engine()
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    published = e.one(post_id="p")
    assert published["state"] == "published"
    workspace.post("p.toml", 'to = ["latihan"]\ntext = "Terbit, diubah"\n')
    with capture_logs() as logs:
        e.syncer.run()
    after = e.one(post_id="p")
    assert after["message"] == published["message"]
    assert after["state"] == "published"
    assert any(log["event"] == "sync.change_after_publish" and log["log_level"] == "warning" for log in logs)


def test_a_removed_file_cancels_its_pending_deliveries_with_an_audit_event(workspace, engine):
    workspace.post("keep.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Tetap"\n')
    workspace.post("gone.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan", "arsip"]\ntext = "Hilang"\n')
    e = engine()
    e.syncer.run()
    workspace.remove("gone.toml")
    report = e.syncer.run()
    assert report.cancelled == 2
    assert {r["state"] for r in e.deliveries(post_id="gone")} == {"cancelled"}
    assert e.one(post_id="keep")["state"] == "pending"
    for row in e.deliveries(post_id="gone"):
        last = e.events(delivery_id=row["id"])[-1]
        assert last["event"] == "cancelled"
        assert json.loads(last["detail"]) == {"reason": "post file removed"}


def test_a_missing_posts_folder_cancels_nothing_and_says_so(workspace, engine):
    workspace.post("a.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "A"\n')
    e = engine()
    e.syncer.run()
    shutil.rmtree(workspace.root / "posts")
    with capture_logs() as logs:
        report = e.syncer.run()
    assert report.error and "does not exist" in report.error and "nothing was cancelled" in report.error
    assert e.one(post_id="a")["state"] == "pending"
    assert any(log["event"] == "sync.refused" and log["log_level"] == "error" for log in logs)


def test_a_suddenly_empty_posts_folder_cancels_nothing(workspace, engine):
    workspace.post("a.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "A"\n')
    workspace.post("b.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "B"\n')
    e = engine()
    e.syncer.run()
    workspace.remove("a.toml")
    workspace.remove("b.toml")
    report = e.syncer.run()
    assert report.error and "suddenly empty" in report.error
    assert {r["state"] for r in e.deliveries()} == {"pending"}


def test_an_invalid_file_keeps_what_the_database_had_and_every_other_file_still_syncs(workspace, engine):
    workspace.post("a.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi satu"\n')
    e = engine()
    e.syncer.run()
    workspace.post("a.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi dua"\nwarna = "merah"\n')
    workspace.post("b.toml", 'to = ["arsip"]\ntext = "Baru"\n')
    with capture_logs() as logs:
        report = e.syncer.run()
    assert report.created == 1
    kept = e.one(post_id="a")
    assert kept["state"] == "pending"
    assert json.loads(kept["message"])["text"] == "Versi satu"
    assert e.one(post_id="b")["state"] == "pending"
    invalid = [log for log in logs if log["event"] == "sync.file_invalid"]
    assert invalid and invalid[0]["file"] == "a.toml" and invalid[0]["line"] == 4
    assert "warna" in invalid[0]["problem"]


def test_an_unchanged_folder_is_not_parsed_again(workspace, engine):
    for i in range(5):
        workspace.post(f"p{i}.toml", f'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Post {i}"\n')
    e = engine()
    assert e.syncer.run().parsed == 5
    second = e.syncer.run()
    assert second.parsed == 0 and not second.changed


def test_an_account_removed_from_to_has_its_pending_delivery_cancelled(workspace, engine):
    workspace.post("p.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan", "arsip"]\ntext = "Dua akun"\n')
    e = engine()
    e.syncer.run()
    workspace.post("p.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Dua akun"\n')
    e.syncer.run()
    assert e.one(account="arsip")["state"] == "cancelled"
    assert e.one(account="latihan")["state"] == "pending"


def test_a_copied_file_of_a_published_post_is_held_as_duplicate(workspace, engine):
    body = 'to = ["latihan"]\ntext = "Pengumuman penting"\n'
    workspace.post("asli.toml", body)
    e = engine()
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    workspace.post("salinan.toml", body)
    with capture_logs() as logs:
        e.syncer.run()
    copy = e.one(post_id="salinan")
    assert (copy["state"], copy["hold_reason"]) == ("held", "duplicate")
    assert any(log["event"] == "sync.duplicate_held" and log["same_as"] == "asli" for log in logs)


def test_a_copy_made_before_either_is_sent_is_held_too(workspace, engine):
    body = 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Pengumuman"\n'
    workspace.post("a.toml", body)
    e = engine()
    e.syncer.run()
    workspace.post("b.toml", body)
    e.syncer.run()
    assert e.one(post_id="b")["hold_reason"] == "duplicate"


def test_allow_repeat_lets_the_same_content_publish_again(workspace, engine):
    workspace.post("a.toml", 'to = ["latihan"]\ntext = "Sama"\n')
    e = engine()
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    workspace.post("b.toml", 'to = ["latihan"]\ntext = "Sama"\nallow_repeat = true\n')
    e.syncer.run()
    assert e.one(post_id="b")["state"] == "pending"


def test_a_renamed_pending_file_is_not_held_as_its_own_duplicate(workspace, engine):
    body = 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Dipindah"\n'
    workspace.post("lama.toml", body)
    e = engine()
    e.syncer.run()
    workspace.remove("lama.toml")
    workspace.post("baru.toml", body)
    e.syncer.run()
    assert e.one(post_id="lama")["state"] == "cancelled"
    assert e.one(post_id="baru")["state"] == "pending"


def test_a_repeat_has_one_occurrence_at_a_time_and_the_next_follows_once_it_is_published(workspace, engine):
    workspace.post("harian.toml", 'to = ["latihan"]\nrepeat = "0 8 * * *"\ntext = "Selamat pagi"\n')
    e = engine()
    now = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)  # 10:00 in Jakarta
    e.syncer.run(now=now)
    first = e.one(post_id="harian")
    assert first["due_at"] == datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)  # tomorrow 08:00 WIB
    assert first["occurrence"] == "2026-11-27T01:00:00Z"
    e.syncer.run(now=now)
    assert len(e.deliveries(post_id="harian")) == 1  # one at a time
    # Publish it through the dispatcher at its time; the next occurrence appears at once.
    d = e.dispatcher()
    with e.db.write() as conn:
        conn.execute(D.update().values(
            due_at=utcnow() - timedelta(seconds=1), ready_at=utcnow() - timedelta(seconds=1),
            deadline=utcnow() + timedelta(hours=1)))
    e.run_until_idle(d)
    rows = e.deliveries(post_id="harian")
    assert [r["state"] for r in rows] == ["published", "pending"]
    assert rows[1]["due_at"] > rows[0]["due_at"]


def test_a_repeat_stops_after_until(workspace, engine):
    workspace.post("r.toml", """
        to = ["latihan"]
        at = 2026-11-26T00:00:00
        repeat = "0 8 * * *"
        until = 2026-11-26T12:00:00
        text = "Sekali saja"
    """)
    e = engine()
    e.syncer.run(now=datetime(2026, 11, 25, 17, 0, tzinfo=timezone.utc))
    rows = e.deliveries(post_id="r")
    assert [r["occurrence"] for r in rows] == ["2026-11-26T01:00:00Z"]
    # Mark it published; there is no next occurrence before `until`.
    with e.db.write() as conn:
        conn.execute(D.update().values(state=State.PUBLISHED.value, published_at=utcnow()))
    e.syncer.run(now=datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc))
    assert len(e.deliveries(post_id="r")) == 1


# --- what the syncer keeps between passes: each file's size, mtime, post id and content hash,
# not the parsed post, so a pass that must write a post it did not parse reads the file again ---


def _failing_once(monkeypatch, post_id: str) -> None:
    """The next pass fails (and rolls back) when it comes to create `post_id`."""
    from publisher.sync import Syncer

    real = Syncer._create
    failed: list[bool] = []

    def create(self, spec, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if spec.id == post_id and not failed:
            failed.append(True)
            raise RuntimeError("disk on fire")
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(Syncer, "_create", create)


def test_a_pass_cut_short_is_finished_by_the_next_though_no_file_changed(workspace, engine, monkeypatch):
    for name in "abc":
        workspace.post(f"{name}.toml", f'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Post {name}"\n')
    e = engine()
    _failing_once(monkeypatch, "b")
    with pytest.raises(RuntimeError):
        e.syncer.run()
    assert e.deliveries() == []  # the chunk's transaction was rolled back
    report = e.syncer.run()  # the files are as the failed pass read them: their posts are read again
    assert (report.created, report.parsed) == (3, 0)
    assert sorted(r["post_id"] for r in e.deliveries()) == ["a", "b", "c"]
    assert json.loads(e.one(post_id="b")["message"])["text"] == "Post b"
    again = e.syncer.run()
    assert (again.parsed, again.changed) == (0, False)


def test_a_file_rewritten_with_the_same_size_and_mtime_after_a_pass_cut_short_is_read_afresh(
    workspace, engine, monkeypatch,
):
    workspace.post("a.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi 1"\n')
    path = workspace.post("b.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi 1"\n')
    e = engine()
    _failing_once(monkeypatch, "b")
    with pytest.raises(RuntimeError):
        e.syncer.run()
    stat = path.stat()
    path.write_text('at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi 2"\n')  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    report = e.syncer.run()
    # `a` is written; `b` is not what the cache says it is: it waits for the next pass, as a new file.
    assert report.created == 1 and [r["post_id"] for r in e.deliveries()] == ["a"]
    report = e.syncer.run()
    assert (report.parsed, report.created) == (1, 1)
    assert json.loads(e.one(post_id="b")["message"])["text"] == "Versi 2"
    assert not e.syncer.run().changed


def test_a_second_file_with_the_same_id_takes_over_the_post_once_the_first_is_removed(workspace, engine):
    workspace.post("a/first.toml", 'id = "sama"\nat = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Satu"\n')
    workspace.post("b/second.toml", 'id = "sama"\nat = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Dua"\n')
    e = engine()
    report = e.syncer.run()
    assert report.created == 1
    assert [(p.path.as_posix().endswith("b/second.toml"), p.field) for p in report.problems] == [(True, "id")]
    assert json.loads(e.one(post_id="sama")["message"])["text"] == "Satu"
    workspace.remove("a/first.toml")
    report = e.syncer.run()
    assert (report.parsed, report.updated, report.problems) == (0, 1, [])  # the second file was not parsed again
    assert json.loads(e.one(post_id="sama")["message"])["text"] == "Dua"


def test_a_restarted_syncer_reads_every_file_and_writes_nothing_when_the_database_has_them(workspace, engine):
    for i in range(5):
        workspace.post(f"p{i}.toml", f'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Post {i}"\n')
    workspace.post("rusak.toml", 'to = ["latihan"]\ntext = "Rusak"\nwarna = "merah"\n')
    e = engine()
    assert e.syncer.run().created == 5
    events = len(e.events())
    restarted = engine()
    report = restarted.syncer.run()
    assert (report.parsed, report.changed, len(report.problems)) == (6, False, 1)
    assert len(restarted.events()) == events
    workspace.remove("p0.toml")
    report = restarted.syncer.run()
    assert (report.parsed, report.removed, report.cancelled) == (0, 1, 1)
