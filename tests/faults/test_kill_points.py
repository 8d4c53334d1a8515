"""A kill at every named point, deterministically, for every adapter (issue 4, item 2).

For each of the twelve adapters, one post goes out through `siar run --once` with SIAR_FAULTS set
so the process SIGKILLs itself at one point:
- `after_claim` (leased, nothing sent), `after_sending` (`sending` committed, nothing sent),
  `after_publish` (the platform answered, nothing recorded);
- `after_save=kill#N` for every checkpoint of the adapter's flow: between the steps of each
  multi-step flow (a container made, not published; an upload session saved, no bytes; a media
  upload done, no post; the first WhatsApp recipient sent, the others not; …);
- `in_flight`: the test itself SIGKILLs the daemon while the irreversible request is held open on
  the platform, which has already acted on it (the request left, no answer came back);
then the daemon is started again without faults, and the pass rule checked against what the fake
platform counted: published exactly once where the adapter can ask the platform (lookup), else
published once or `unknown`, sent at most once — the irreversible step never happens twice.

`after_save=kill#{N+1}` (one more than the flow has) must not fire: it runs the flow to the end,
which pins each flow's number of checkpoints (SAVES) and checks the untroubled path too.

The restart runs in-process (the same `Daemon.run_once` as `siar run --once`, on the same files):
it saves a second interpreter start for each of the ~80 cases; the crash itself is a real SIGKILL.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest

from publisher import audit
from publisher.daemon import Daemon
from publisher.db import Database
from publisher.settings import load_settings
from tests.conftest import Workspace
from tests.faults.fleet import ALL_PLATFORMS, IRREVERSIBLE, MEDIA_URL, NO_LOOKUP, RECIPIENTS, Fleet
from tests.support.fakeserver import Answer, Seen
from tests.support.process import query, run_siar, siar_env

pytestmark = pytest.mark.slow

SETTINGS = f"""
[daemon]
timezone = "Asia/Jakarta"
media_url = "{MEDIA_URL}"
lease = "1500ms"
http_timeout = "700ms"
shutdown_grace = "2s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"
"""

# Checkpoints (`job.save`) in each adapter's flow for the post `Fleet.post(rich=True)` writes.
SAVES = {
    "outbox": 0,
    "webhook": 0,
    "facebook": 4,  # album: photo 1 unpublished, photo 2 unpublished, `since` (feed request next), post id
    "instagram": 2,  # container made (before media_publish), media id
    "threads": 2,  # container made (before threads_publish), media id
    "x": 3,  # image uploaded, its alt text set, `post_requested_at` (POST /2/tweets next)
    "youtube": 3,  # upload session (before any byte), `final` (before the last chunk), video id
    "whatsapp": 6,  # per recipient: `sending` before the request, then its wamid
    "telegram": 1,  # the photo sent, its message id (the long text goes next, as a message)
    "mastodon": 4,  # media uploaded, media processed, `posting_at` (status request next), status id
    "bluesky": 3,  # blob uploaded, `createdAt` (createRecord next), record URI
    "linkedin": 1,  # image uploaded (POST /rest/posts next)
}
MARK = "kf-0001"
MIGRATIONS = threading.Lock()  # Alembic's context is process-global: one migration at a time


class Restart(Daemon):
    """The daemon started again in this process (restarts run side by side)."""

    def prepare(self, **kwargs):  # noqa: ANN003, ANN201
        with MIGRATIONS:
            return super().prepare(**kwargs)


def points(platform: str) -> list[str]:
    found = ["after_claim", "after_sending", "after_publish"]
    if platform in IRREVERSIBLE:
        found.append("in_flight")
    found += [f"after_save=kill#{n}" for n in range(1, SAVES[platform] + 2)]
    return found


@dataclasses.dataclass
class Case:
    platform: str
    point: str
    root: Path
    fleet: Fleet
    workspace: Workspace

    @property
    def db(self) -> Path:
        return self.workspace.state / "siar.db"

    def delivery(self) -> dict:
        (row,) = query(self.db, "SELECT * FROM delivery")
        return dict(row)

    def made(self) -> dict[str, int]:
        return {part: n for (m, part), n in self.fleet.created("akun", self.workspace).items() if m == MARK}


def prepare(platform: str, point: str, root: Path) -> Case:
    workspace = Workspace(root)
    fleet = Fleet(workspace.root)
    fleet.add(platform, "akun")
    fleet.write(workspace, SETTINGS)
    fleet.post(workspace, MARK, ["akun"], rich=True)
    return Case(platform, point, root, fleet, workspace)


def hold_irreversible(case: Case) -> tuple[threading.Event, threading.Event]:
    """The platform acts on the irreversible request, then holds its answer until released."""
    method, pattern = IRREVERSIBLE[case.platform]
    arrived, release = threading.Event(), threading.Event()

    def hold(seen: Seen, given: Answer) -> Answer | None:
        if "*/" in (seen.header("Content-Range") or "") or release.is_set():
            return None  # YouTube's status probe is a question, not the upload
        arrived.set()
        return dataclasses.replace(given, hold=release)

    case.fleet.intercept("akun", method, pattern, hold)
    return arrived, release


def crash(case: Case) -> subprocess.CompletedProcess[str] | None:
    """The first run, killed at the case's point; None when the point let it run to the end."""
    if case.point == "in_flight":
        arrived, release = hold_irreversible(case)
        proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--once", "--config",
                                 str(case.workspace.root)], env=siar_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert arrived.wait(60), "the irreversible request never arrived"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        return None
    spec = case.point if "=" in case.point else f"{case.point}=kill"
    return run_siar(case.workspace.root, "run", "--once", env=siar_env(SIAR_FAULTS=spec), timeout=90)


def restart(case: Case) -> None:
    """Start again without faults once the dead daemon's lease has run out."""
    expires = case.delivery()["lease_expires"]
    if expires is not None:
        when = datetime.fromisoformat(str(expires)).replace(tzinfo=timezone.utc)
        time.sleep(max(0.0, (when - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    settings = load_settings(case.workspace.root, environ=dict(os.environ))
    Restart(settings).run_once()


def check(case: Case) -> list[str]:
    """Run one case; what broke the pass rule (empty: it held)."""
    problems: list[str] = []
    first = crash(case)
    normal_end = case.point == f"after_save=kill#{SAVES[case.platform] + 1}"
    if first is not None:
        expected = 0 if normal_end else -signal.SIGKILL
        if first.returncode != expected:
            return [f"first run exited {first.returncode}, expected {expected}: {first.stderr[-600:]}"]
    at_kill, row = case.made(), case.delivery()
    if not normal_end:
        expected_state = "claimed" if case.point == "after_claim" else "sending"
        if row["state"] != expected_state:
            problems.append(f"killed in state {row['state']}, expected {expected_state}")
        if case.point in ("after_claim", "after_sending") and at_kill:
            problems.append(f"the platform made {at_kill} before the request was sent")
        if case.point in ("after_publish", "in_flight") and not at_kill:
            problems.append("the platform made nothing before the kill: the point came too early")
        restart(case)
    row, made = case.delivery(), case.made()
    state = row["state"]
    twice = {part: n for part, n in made.items() if n > 1}
    if twice:
        problems.append(f"made twice: {twice}")
    if state == "published" and not made:
        problems.append("recorded published but the platform never made it")
    if case.platform in NO_LOOKUP:
        if state not in ("published", "unknown"):
            problems.append(f"ended {state}, expected published or unknown")
        if case.point == "after_claim" and state != "published":
            problems.append(f"killed before sending, yet ended {state}")
        if state == "unknown" and made != at_kill:
            problems.append(f"unknown, yet sent again after the crash: {at_kill} → {made}")
    elif state != "published":
        problems.append(f"ended {state} though the platform can be asked: {row['last_error']}")
    if case.platform == "whatsapp" and state == "published":
        missed = [n for n in RECIPIENTS if n not in made]
        if len(missed) > (0 if case.point in ("after_claim", "after_sending") or normal_end else 1):
            problems.append(f"recipients never sent to: {missed}")
    db = Database(f"sqlite:///{case.db}")
    try:
        with db.read() as conn:
            _, broken = audit.verify(conn)
    finally:
        db.dispose()
    if broken is not None:
        problems.append(f"audit chain broken: {broken}")
    return problems


def run(case: Case) -> list[str]:
    try:
        return check(case)
    except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
        return [f"{type(exc).__name__}: {exc}"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict[str, list[str]]]:
    """Every platform's every case, run side by side (they wait on leases and sleep in flows)."""
    root = tmp_path_factory.mktemp("kill-points")
    cases = [prepare(platform, point, root / platform / re.sub(r"\W+", "-", point))
             for platform in ALL_PLATFORMS for point in points(platform)]
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            problems = list(pool.map(run, cases))
    finally:
        for case in cases:
            case.fleet.close()
    found: dict[str, dict[str, list[str]]] = {platform: {} for platform in ALL_PLATFORMS}
    for case, listed in zip(cases, problems):
        found[case.platform][case.point] = listed
    return found


@pytest.mark.parametrize("platform", ALL_PLATFORMS)
def test_a_kill_at_every_point_of_the_flow_never_loses_and_never_repeats_the_irreversible_step(platform, outcomes):
    assert set(outcomes[platform]) == set(points(platform))
    failed = {point: problems for point, problems in outcomes[platform].items() if problems}
    assert not failed, "\n".join(f"{platform} {point}: {'; '.join(p)}" for point, p in failed.items())
