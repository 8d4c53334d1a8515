"""The operator's workflow end to end: approval, blackout windows and team folders, through
`siar run --once` and the database (SQLite and PostgreSQL, through `siar_database`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.process import query, run_siar

pytestmark = pytest.mark.slow

BASE = """
[daemon]
timezone = "Asia/Jakarta"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


def deliveries(workspace) -> dict[str, dict]:
    return {r["post_id"]: dict(r) for r in query(workspace.database, "SELECT * FROM delivery")}


def events(workspace, post_id: str) -> list[tuple[str, str, dict]]:
    rows = query(workspace.database, "SELECT * FROM audit_event WHERE post_id = :p ORDER BY seq", p=post_id)
    return [(r["event"], r["actor"], json.loads(r["detail"]) if r["detail"] else {}) for r in rows]


def outbox(workspace, account: str = "latihan") -> list[dict]:
    folder = workspace.state / "outbox" / account
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def test_with_approval_required_a_post_waits_until_a_person_approves_it_and_a_change_needs_approval_again(
    workspace, siar_database
):
    workspace.write_settings(BASE.replace("[daemon]\n", "[daemon]\nrequire_approval = true\n"))
    workspace.post("himbauan.toml", 'to = ["latihan"]\ntext = "Himbauan resmi"\n')
    workspace.post("disetujui.toml", 'to = ["latihan"]\ntext = "Sudah disetujui"\napproved_by = "Kabid Humas"\n')
    assert run_siar(workspace.root, "run", "--once").returncode == 0  # waiting for a person is no failure
    rows = deliveries(workspace)
    assert (rows["himbauan"]["state"], rows["himbauan"]["hold_reason"]) == ("held", "approval")
    assert rows["disetujui"]["state"] == "published"

    approve = run_siar(workspace.root, "approve", "himbauan", "--by", "Sekretaris Daerah")
    assert approve.returncode == 0, approve.stderr
    assert run_siar(workspace.root, "run", "--once").returncode == 0
    assert deliveries(workspace)["himbauan"]["state"] == "published"
    approved = [e for e in events(workspace, "himbauan") if e[0] == "approved"]
    assert approved and approved[0][2]["by"] == "Sekretaris Daerah" and approved[0][1] != "daemon"
    assert "approved_by" not in (workspace.root / "posts" / "himbauan.toml").read_text()  # file untouched

    # A pending post approved, then edited: held again until approved again.
    workspace.post("besok.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi satu"\n')
    run_siar(workspace.root, "run", "--once")
    assert run_siar(workspace.root, "approve", "besok", "--by", "Kabid").returncode == 0
    assert deliveries(workspace)["besok"]["state"] == "pending"
    workspace.post("besok.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Versi dua"\n')
    run_siar(workspace.root, "run", "--once")
    row = deliveries(workspace)["besok"]
    assert (row["state"], row["hold_reason"]) == ("held", "approval")
    assert ("held", "daemon", {"reason": "approval", "why": "content changed; approve again"}) in events(workspace,
                                                                                                       "besok")


def test_a_blackout_window_holds_deliveries_due_inside_it_and_cancels_where_told(workspace, siar_database):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = (now - timedelta(minutes=5)).isoformat(), (now + timedelta(hours=2)).isoformat()
    workspace.write_settings(BASE + f"""
[[blackout]]
start = {start}
end = {end}
accounts = ["latihan"]
reason = "Masa tenang pemilihan"

[[blackout]]
start = {start}
end = {end}
accounts = ["arsip"]
reason = "Hari berkabung nasional"
action = "cancel"
""")
    workspace.post("tenang.toml", 'to = ["latihan"]\ntext = "Ditahan"\n')
    workspace.post("batal.toml", 'to = ["arsip"]\ntext = "Dibatalkan"\n')
    run_siar(workspace.root, "run", "--once")
    rows = deliveries(workspace)
    held = rows["tenang"]
    assert (held["state"], held["hold_reason"]) == ("held", "blackout")
    assert held["ready_at"].startswith(end[:19].replace("T", " "))  # released when the window ends
    assert rows["batal"]["state"] == "cancelled"
    assert outbox(workspace) == [] and outbox(workspace, "arsip") == []
    reasons = [e[2].get("blackout") for e in events(workspace, "tenang") if e[0] == "held"]
    assert reasons == ["Masa tenang pemilihan"]
    assert [e[2].get("blackout") for e in events(workspace, "batal") if e[0] == "cancelled"] == [
        "Hari berkabung nasional"]


def test_a_held_blackout_delivery_goes_out_once_the_window_has_ended(workspace, siar_database):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    workspace.write_settings(BASE + f"""
[[blackout]]
start = {(now - timedelta(minutes=5)).isoformat()}
end = {(now + timedelta(seconds=10)).isoformat()}
reason = "Jeda singkat"
""")
    workspace.post("jeda.toml", 'to = ["latihan"]\ntext = "Setelah jeda"\n')
    run_siar(workspace.root, "run", "--once")
    assert deliveries(workspace)["jeda"]["state"] == "held"
    import time

    time.sleep(max(0.0, (now + timedelta(seconds=10.5) - datetime.now(timezone.utc)).total_seconds()))
    assert run_siar(workspace.root, "run", "--once").returncode == 0
    assert deliveries(workspace)["jeda"]["state"] == "published"
    assert [e[2] for e in events(workspace, "jeda") if e[0] == "released"] == [{"reason": "blackout window ended"}]


def test_a_team_folder_may_only_target_its_own_accounts(workspace, siar_database):
    workspace.write_settings(BASE + """
[accounts.kab-ogan]
platform = "outbox"

[teams.palembang]
folder = "posts/palembang"
accounts = ["latihan", "arsip"]

[teams.ogan]
folder = "posts/ogan"
accounts = ["kab-ogan"]
""")
    workspace.post("palembang/benar.toml", 'to = ["latihan"]\ntext = "Milik Palembang"\n')
    bad = workspace.post("ogan/salah.toml", 'to = ["kab-ogan", "latihan"]\ntext = "Menyeberang"\n')
    check = run_siar(workspace.root, "check")
    assert check.returncode == 1
    assert f"{bad}:1: error: to[1]: account 'latihan' does not belong to team 'ogan'" in check.stdout
    run = run_siar(workspace.root, "run", "--once")
    assert run.returncode == 1
    rows = deliveries(workspace)
    assert rows["palembang/benar"]["state"] == "published"
    assert "ogan/salah" not in rows  # nothing from the offending file reaches any account
