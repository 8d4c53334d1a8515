"""Bad input, fuzzed (issue 4, item 8): post files and `siar.toml`s that no operator means to
write — NUL bytes, lone surrogates, right-to-left text, joined emoji, megabytes of text, years 1
and 9999, wall-clock times a daylight-saving change skips, a media file of several gigabytes,
symlinks out of (or looping inside) the media folder, tables nested thousands deep, random keys.

For every such file: `siar check` (`check_all`) and the daemon's sync never raise; each bad file
gets its own problem naming the file (and the field where there is one); and a good post beside
the bad ones is still synced and, being due, published through an outbox account.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.base import BaseAdapter, Job, Limits, Message, Receipt, Transient
from adapters.outbox import OutboxAdapter
from publisher.check import check_all
from publisher.db import Database
from publisher.dispatch import CountingSession, Dispatcher
from publisher.posts import scan_posts
from publisher.problems import FileProblem
from publisher.settings import AccountSettings, Settings, load_settings
from publisher.store import D, P
from publisher.sync import Syncer
from tests.support import media as media_files
from tests.support.process import run_siar, siar_env

HUGE = 3 * 1024**3  # "several GB", as a sparse file: nothing is written
TOKEN = "fuzz-token-0123456789"
ENV = {"FUZZ_TOKEN": TOKEN}
GOOD_TEXT = "Tetap terbit, apa pun isi berkas di sebelahnya"

SETTINGS = """\
[daemon]
timezone = "Europe/Paris"
media = "{media}"
concurrency = 4
max_lateness = "1h"
sync_every = "1s"
lease = "30s"
http_timeout = "5s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "4s"

[accounts.latihan]
platform = "outbox"

[accounts.kanal]
platform = "telegram"
bot_token = "${{FUZZ_TOKEN}}"
chat = "@kanal"
api_base = "http://127.0.0.1:9"

[accounts.toot]
platform = "mastodon"
instance = "https://mastodon.example"
token = "${{FUZZ_TOKEN}}"
api_base = "http://127.0.0.1:9"

[accounts.kicau]
platform = "x"
token = "${{FUZZ_TOKEN}}"
refresh_token = "${{FUZZ_TOKEN}}"
client_id = "siar-fuzz"
api_base = "http://127.0.0.1:9"

[accounts.langit]
platform = "bluesky"
handle = "siar.example"
app_password = "${{FUZZ_TOKEN}}"
api_base = "http://127.0.0.1:9"
"""
ACCOUNTS = ("latihan", "kanal", "toot", "kicau", "langit")
# What only a bug in Siar would say: a check that raised, swallowed by the loader.
BUG_WORDS = ("failed to check this post", "Traceback", "RecursionError", "OverflowError")


# --- the folders ---------------------------------------------------------------------------------


def _scratch(prefix: str) -> Path:
    shm = Path("/dev/shm")
    memory = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=memory))


@lru_cache(maxsize=1)
def shared_media() -> Path:
    """One media folder for every example (the huge file is hashed once per process):
    a real image, a sparse video of several GB, a symlink out of the folder, a symlink loop,
    a subfolder."""
    folder = _scratch("siar-fuzz-media-")
    atexit.register(shutil.rmtree, folder, True)
    media_files.write(folder, "ada.png", media_files.png_bytes())
    with open(folder / "besar.mp4", "wb") as handle:
        handle.truncate(HUGE)
    (folder / "sub").mkdir()
    os.symlink("/etc/hostname", folder / "keluar.png")
    os.symlink("lingkar.png", folder / "lingkar.png")
    return folder


@lru_cache(maxsize=1)
def template_database() -> bytes:
    folder = _scratch("siar-fuzz-db-")
    try:
        db = Database(f"sqlite:///{folder / 'siar.db'}")
        db.migrate()
        db.dispose()
        return (folder / "siar.db").read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def settings_text() -> str:
    return SETTINGS.format(media=shared_media())


class Folder:
    """A configuration folder: siar.toml, posts/ with a good post due now, state/ with a database."""

    def __init__(self, root: Path, settings_source: str | bytes | None = None) -> None:
        self.root = root
        (root / "posts").mkdir(parents=True)
        (root / "state").mkdir()
        (root / "state" / "siar.db").write_bytes(template_database())
        source = settings_text() if settings_source is None else settings_source
        data = source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass")
        (root / "siar.toml").write_bytes(data)
        self.write("baik.toml", f'to = ["latihan"]\ntext = "{GOOD_TEXT}"\n')

    @property
    def posts(self) -> Path:
        return self.root / "posts"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        path.write_bytes(data)
        return path

    def settings(self) -> Settings:
        return load_settings(self.root, environ=dict(ENV))


@pytest.fixture
def folders() -> Iterator[Any]:
    made: list[Path] = []

    def make(settings_source: str | bytes | None = None) -> Folder:
        root = _scratch("siar-fuzz-")
        made.append(root)
        return Folder(root / "config", settings_source)

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


# --- running it ----------------------------------------------------------------------------------


class Unreachable(BaseAdapter):
    """Every account that is not an outbox: the network is never touched in-process."""

    platform = "unreachable"
    limits = Limits(media_max=10)

    def publish(self, message: Message, job: Job) -> Receipt:
        raise Transient("offline in this test")

    def whoami(self) -> str:
        return self.name


def offline(settings: Settings) -> Any:
    def build(account: AccountSettings) -> BaseAdapter:
        if account.platform == "outbox":
            config = account.adapter_config(settings.state_dir, settings.http_timeout.total_seconds())
            return OutboxAdapter(config, CountingSession())
        return Unreachable({"name": account.name}, CountingSession())

    return build


def no_bug_words(problems: list[FileProblem]) -> None:
    for problem in problems:
        assert not any(word in problem.message for word in BUG_WORDS), str(problem)


def check_sync_and_publish(folder: Folder, bad: list[Path]) -> list[FileProblem]:
    """The properties every bad-input example must keep; returns check's problems."""
    settings, problems = check_all(folder.root, environ=dict(ENV))
    assert settings is not None, [str(p) for p in problems]
    no_bug_words(problems)
    for problem in problems:
        assert problem.path == settings.config_file or problem.path.is_relative_to(folder.posts), str(problem)
        assert str(problem)  # renders as a `path:line: severity: field: message` line
    good = folder.posts / "baik.toml"
    assert not [p for p in problems if p.path == good], [str(p) for p in problems if p.path == good]

    # Every file that did not become a post has an error naming it; the others are posts.
    scan = scan_posts(settings)
    errors = {p.path for p in problems if p.is_error}
    for path in bad:
        rel = path.relative_to(folder.posts).as_posix()
        if rel in scan.bad_paths:
            assert path in errors, f"{rel} was refused without a problem naming it"
        else:
            assert path not in errors and any(spec.path == rel for spec in scan.posts.values()), rel

    db = Database(settings.database)
    dispatcher = Dispatcher(db, settings, owner="fuzz", adapter_override=offline(settings))
    try:
        report = Syncer(db, settings).run()
        assert report.error is None, report.error
        # The daemon refuses what `siar check` refuses, for the same reasons (check also gives advice).
        assert {str(p) for p in report.problems if p.is_error} == {str(p) for p in problems if p.is_error}
        assert {str(p) for p in report.problems} <= {str(p) for p in problems}
        for _ in range(10):  # posts that turned out valid may be ahead of it on the same account
            started = dispatcher.dispatch()
            assert dispatcher.drain(timeout=30)
            with db.read() as conn:
                row = conn.execute(select(D).where(D.c.post_id == "baik")).mappings().one()
            if row["state"] == "published" or not started:
                break
        assert row["state"] == "published", dict(row)
        sent = json.loads((settings.state_dir / "outbox" / "latihan" / f"{row['key']}.json").read_text())
        assert sent["text"] == GOOD_TEXT
        with db.read() as conn:
            stored = set(conn.execute(select(P.c.path)).scalars())
        assert stored <= {spec.path for spec in scan.posts.values()}, "a refused file reached the database"
    finally:
        dispatcher.stop(5)
        db.dispose()
    return problems


# --- what a bad post file can hold ---------------------------------------------------------------

NUL = "\x00"
LONE_SURROGATE = "\ud800"  # written raw: the file is then not UTF-8
RTL = "\u202eالسلام عليكم\u202c ושלום"
JOINED = "👩\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇮🇩 👍🏽"
MEGABYTE = "x" * 1_000_000

pieces = st.sampled_from(["Halo", NUL, RTL, JOINED, "e\u0301", "\u200b", "\ufeff", '"', "\\", "\n", "'''", "#",
                          "${FUZZ_TOKEN}", "x" * 300])
nasty_text = st.one_of(st.lists(pieces, min_size=1, max_size=5).map("".join), st.text(max_size=40))
# A megabyte now and then (it is parsed three times per example: check, scan, sync).
post_text = st.one_of(nasty_text, nasty_text, nasty_text, st.just(MEGABYTE))
extreme_times = st.sampled_from([
    datetime(9999, 12, 31, 23, 59, 59),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
    datetime(9999, 12, 30, 12, 0, tzinfo=timezone.utc),
    datetime(1, 1, 1, 0, 0),
    datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))),
    datetime(1, 1, 3, 0, 0, tzinfo=timezone.utc),
    datetime(2026, 3, 29, 2, 30),  # skipped by the spring change in Europe/Paris
    datetime(2026, 10, 25, 2, 30),  # happens twice in Europe/Paris
    datetime(2099, 1, 1, 8, 0),
])
times = st.one_of(
    extreme_times,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                 timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=14)),
                                            timezone(timedelta(hours=-12))])),
    st.sampled_from(["9999-12-31T23:59:59-23:59", "besok pagi", "2026-12-01", "0001-01-01T00:00:00"]),
)
scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), nasty_text, times)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3), max_leaves=8)
media_tables = st.fixed_dictionaries(
    {"file": st.sampled_from(["ada.png", "besar.mp4", "keluar.png", "lingkar.png", "sub", "tidak-ada.png",
                              "../siar.toml", "/etc/passwd", "a" + NUL + "b.png", "n" * 300 + ".png"]) | nasty_text},
    optional={"alt": nasty_text | scalars},
)
durations = st.sampled_from(["99999999999d", "999999999d", "1e400s", "-1h", "0s", "sebentar", "1h30m", "36501d"]) | scalars
crons = st.sampled_from(["0 8 * * MON", "* * * * *", "0 0 31 2 *", "*/0 * * * *", "61 * * * *", "@daily",
                         "0 8 * *", "0 8 * * 1-5,SUN", "0 25 * * *", "0 8 1 * MON"]) | nasty_text
targets = st.lists(st.sampled_from([*ACCOUNTS, "tidak-ada", "lat" + NUL + "ihan", JOINED]), max_size=4)


class Raw(str):
    """TOML text written as is (nesting thousands deep, which a recursive writer cannot write)."""


def deep(depth: int, kind: str) -> Raw:
    return Raw("[" * depth + "1" + "]" * depth if kind == "list" else "{ a = " * depth + "1" + " }" * depth)


post_fields = st.fixed_dictionaries({}, optional={
    "id": nasty_text,
    "at": st.one_of(extreme_times, extreme_times, extreme_times, times, scalars),
    "to": targets | scalars,
    "text": post_text | scalars,
    "link": st.sampled_from(["https://example.go.id/a", "bukan tautan", "http://[::1", "https://a.b/" + NUL,
                             "javascript:alert(1)"]) | nasty_text,
    "title": nasty_text,
    "media": st.lists(media_tables, max_size=3) | scalars,
    "variants": st.dictionaries(st.sampled_from(ACCOUNTS) | nasty_text,
                                st.fixed_dictionaries({}, optional={"text": nasty_text, "media": st.lists(media_tables,
                                                                                                           max_size=2)})
                                | anything, max_size=2),
    "repeat": crons,
    "until": st.one_of(extreme_times, times),
    "max_lateness": durations,
    "allow_repeat": st.booleans() | scalars,
    "approved_by": nasty_text,
})
random_keys = st.dictionaries(st.text(min_size=1, max_size=12) | st.sampled_from(["warna", NUL, RTL, JOINED]),
                              anything, max_size=2)
nesting = st.one_of(st.none(), st.none(), st.none(), st.tuples(st.sampled_from([40, 400, 3000]), st.sampled_from(["list", "table"])))


# --- writing TOML, including what no TOML writer would ------------------------------------------


_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')


def toml_string(text: str) -> str:
    """A TOML basic string: NUL and other controls as escapes; a lone surrogate stays raw (the
    file is then not UTF-8)."""
    return '"' + _ESCAPED.sub(lambda m: "\\" + m.group() if m.group() in '"\\' else f"\\u{ord(m.group()):04x}",
                              text) + '"'


def toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(key)} = {toml_value(value)}\n" for key, value in data.items())


file_names = st.sampled_from(["rusak.toml", "تجربة.toml", "👩\u200d👩\u200d👧\u200d👦.toml", "sub/dalam.toml",
                              "a b.toml", "\u202etxt.toml", "z" * 200 + ".toml"])


@st.composite
def bad_posts(draw: Any) -> tuple[str, str | bytes]:
    fields = draw(post_fields)
    fields.update(draw(random_keys))
    nested = draw(nesting)
    if nested is not None:
        fields["z"] = deep(*nested)
    text = toml_document(fields)
    how = draw(st.sampled_from(["as is", "as is", "as is", "as is", "raw", "truncated", "bytes"]))
    if how == "raw":  # a raw NUL, or a lone surrogate (the file is then not UTF-8), or a BOM
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from([NUL, LONE_SURROGATE, "\ufeff"])) + text[cut:]
    elif how == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "bytes":
        return draw(file_names), draw(st.binary(max_size=200))
    return draw(file_names), text


FUZZ = settings(max_examples=int(os.environ.get("SIAR_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(files=st.lists(bad_posts(), min_size=1, max_size=3, unique_by=lambda item: item[0]))
def test_fuzzed_post_files_never_crash_check_or_sync_and_never_block_a_good_post(folders: Any, files: Any) -> None:
    folder = folders()
    written = [folder.write(name, content) for name, content in files]
    check_sync_and_publish(folder, written)


# --- the cases the issue names, each with the problem it must give -------------------------------

# (file name, content, field of the expected error or None for the whole file, words in its message);
# field "" means the file is valid and must be published like any other.
NAMED_CASES = [
    ("nul-teks.toml", 'to = ["latihan"]\ntext = "a\\u0000b"\n', "text", "NUL"),
    ("nul-id.toml", 'id = "a\\u0000b"\nto = ["latihan"]\ntext = "x"\n', "id", "NUL"),
    ("nul-mentah.toml", 'to = ["latihan"]\ntext = "a\x00b"\n', None, "Illegal character"),
    ("surrogat.toml", 'to = ["latihan"]\ntext = "a' + LONE_SURROGATE + 'b"\n', None, "not UTF-8"),
    ("surrogat-escape.toml", 'to = ["latihan"]\ntext = "a\\ud800b"\n', None, "Unicode scalar"),
    ("rtl.toml", f'to = ["latihan"]\ntext = "{RTL}"\n', "", ""),
    ("emoji.toml", f'to = ["latihan", "langit", "kicau"]\ntext = "{JOINED}"\n', "", ""),
    ("sejuta.toml", f'to = ["latihan"]\ntext = "{MEGABYTE}"\n', "", ""),
    ("sejuta-telegram.toml", f'to = ["kanal"]\ntext = "{MEGABYTE}"\n', "text", "the limit is 4096"),
    ("tahun-9999.toml", 'to = ["latihan"]\ntext = "x"\nat = 9999-12-31T23:59:59\n', "at", "calendar"),
    ("tahun-9999-offset.toml", 'to = ["latihan"]\ntext = "x"\nat = 9999-12-31T23:59:59-05:00\n', "at", "calendar"),
    ("tahun-1.toml", 'to = ["latihan"]\ntext = "x"\nat = 0001-01-01T00:00:00\n', "at", "calendar"),
    ("tahun-1-ulang.toml", 'to = ["latihan"]\ntext = "x"\nat = 0001-01-01T00:00:00Z\nrepeat = "0 0 1 1 *"\n',
     "at", "calendar"),
    ("sampai-9999.toml", 'to = ["latihan"]\ntext = "x"\nrepeat = "0 8 * * *"\nuntil = 9999-12-31T00:00:00\n',
     "until", "calendar"),
    ("tidak-ada-waktunya.toml", 'to = ["latihan"]\ntext = "x"\nat = 2026-03-29T02:30:00\n', "at", "does not exist"),
    ("video-besar.toml", 'to = ["kanal"]\ntext = "x"\nmedia = [{ file = "besar.mp4", alt = "a" }]\n',
     "media[0]", f"{HUGE} bytes"),
    ("video-besar-outbox.toml", 'to = ["latihan"]\ntext = "y"\nmedia = [{ file = "besar.mp4", alt = "a" }]\n', "", ""),
    ("keluar.toml", 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "keluar.png", alt = "a" }]\n',
     "media[0].file", "outside the media folder"),
    ("naik.toml", 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "../siar.toml", alt = "a" }]\n',
     "media[0].file", "outside the media folder"),
    ("lingkar.toml", 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "lingkar.png", alt = "a" }]\n',
     "media[0].file", "cannot be used"),
    ("nama-panjang.toml", 'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "' + "n" * 300 + '.png" }]\n',
     "media[0].file", "cannot be used"),
    ("dalam-sekali.toml", 'to = ["latihan"]\ntext = "x"\nz = ' + "[" * 3000 + "]" * 3000 + "\n",
     None, "nested too deeply"),
    ("dalam.toml", 'to = ["latihan"]\ntext = "x"\nz = ' + "{a=" * 200 + "1" + "}" * 200 + "\n", "z", "nested too deeply"),
    ("bertitik.toml", 'to = ["latihan"]\ntext = "x"\n' + ".".join(["a"] * 3000) + " = 1\n", "a", "nested too deeply"),
    ("varian-dalam.toml", 'to = ["latihan"]\ntext = "x"\n[variants.latihan' + ".a" * 500 + "]\nb = 1\n",
     "variants", "nested too deeply"),
    ("kunci-acak.toml", 'to = ["latihan"]\ntext = "x"\nwarna = "merah"\n', "warna", "unknown key"),
    ("kunci-nul.toml", 'to = ["latihan"]\ntext = "x"\n"k\\u0000" = 1\n', '"k\\u0000"', "NUL"),
    ("terlambat.toml", 'to = ["latihan"]\ntext = "x"\nmax_lateness = "99999999999d"\n', "max_lateness", "too long"),
    ("terlambat-tak-hingga.toml", 'to = ["latihan"]\ntext = "x"\nmax_lateness = inf\n', "max_lateness", "duration"),
    ("cron-nol.toml", 'to = ["latihan"]\ntext = "x"\nrepeat = "*/0 * * * *"\n', "repeat", "cron"),
]


def test_each_named_bad_input_gets_a_clear_problem_and_the_good_posts_still_go(folders: Any) -> None:
    folder = folders()
    paths = [folder.write(name, content) for name, content, _, _ in NAMED_CASES]
    # Files that are not files: a FIFO (reading it would wait forever), a symlink to nothing,
    # one of 20 MB (sparse: nothing is written).
    os.mkfifo(folder.posts / "pipa.toml")
    os.symlink("tidak-ada.toml", folder.posts / "patah.toml")
    with open(folder.posts / "raksasa.toml", "wb") as handle:
        handle.truncate(20_000_000)
    others = {"pipa.toml": "not a regular file", "patah.toml": "symbolic link to nothing", "raksasa.toml": "10 MB"}
    problems = check_sync_and_publish(folder, paths + [folder.posts / name for name in others])

    errors = [p for p in problems if p.is_error]
    source = {name: content for name, content, _, _ in NAMED_CASES}
    for name, _, field, words in NAMED_CASES:
        mine = [p for p in errors if p.path == folder.posts / name]
        if field == "":
            assert not mine, [str(p) for p in mine]
            continue
        assert any((p.field == field or (field and (p.field or "").startswith((field + ".", field + "["))))
                   and words in p.message for p in mine), (name, [str(p) for p in mine])
        for problem in mine:
            if problem.field and isinstance(source[name], str) and problem.field.split(".")[0].split("[")[0] in source[name]:
                assert problem.line is not None, str(problem)  # a field written in the file has its line
    for name, words in others.items():
        assert any(p.path == folder.posts / name and words in p.message for p in errors), name


# --- siar.toml -----------------------------------------------------------------------------------

DAEMON_KEYS = ["database", "timezone", "max_lateness", "sync_every", "lease", "http_timeout", "shutdown_grace",
               "concurrency", "posts", "state", "media_url", "log_level", "metrics", "require_approval"]
# Strange but valid: every one of these must leave a working daemon.
strange_values = st.sampled_from([
    "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu", "Europe/Paris", "UTC", "36500d", "0.5s", "1d",
    "1h30m", 1, 1000, "debug", True, "state-" + RTL, "state-" + JOINED, "https://cdn.example/" + JOINED + "/",
])
settings_values = st.one_of(
    strange_values,
    strange_values,
    scalars,
    st.sampled_from(["Asia/Jakarta", "Europe/Paris", "a" * 5000, "../../etc/passwd", "", "UTC" + NUL, RTL,
                     "postgresql://[::1", "sqlite:///" + "d" * 300 + "/siar.db", "sqlite:///" + RTL + ".db",
                     "99999999999d", "36501d", "1e400s", "0s", 10**30, -1, 0, 1001, float("inf")]),
)


@st.composite
def bad_settings(draw: Any) -> str | bytes:
    text = settings_text()
    change = draw(st.sampled_from(["daemon", "daemon", "daemon", "daemon", "retry", "account", "blackout", "random",
                                   "deep", "bytes", "raw"]))
    if change == "daemon":
        key = draw(st.sampled_from([*DAEMON_KEYS, "warna"]))
        value = draw(settings_values)
        if key in ("posts", "media", "state") and isinstance(value, str):
            value = "x" + value.replace("..", "")  # stay inside the folder: the test must not scan all of /
        text = text.replace("[daemon]\n", f"[daemon]\n{toml_key(key)} = {toml_value(value)}\n", 1)
        text = _drop_duplicate_key(text, key)
    elif change == "retry":
        key = draw(st.sampled_from(["attempts", "first_delay", "max_delay", "jitter"]))
        text = text.replace("[retry]\n", f"[retry]\n{key} = {toml_value(draw(settings_values))}\n", 1)
        text = _drop_duplicate_key(text, key)
    elif change == "account":
        name = draw(st.sampled_from(["baru", "latihan-2", RTL, JOINED, NUL, "a.b", "x" * 100]))
        table = draw(st.dictionaries(st.sampled_from(["platform", "token", "chat", "api_base", "min_interval",
                                                      "max_per_day", "name", "state_dir", "warna"]),
                                     settings_values | st.sampled_from(["outbox", "telegram", "friendster"]),
                                     max_size=4))
        text += f"\n[accounts.{toml_key(name)}]\n" + toml_document(table)
    elif change == "blackout":
        start, end = draw(times), draw(times)
        text += f"\n[[blackout]]\nstart = {toml_value(start)}\nend = {toml_value(end)}\nreason = {toml_value(draw(nasty_text))}\n"
    elif change == "random":
        text = toml_document(draw(st.dictionaries(st.text(min_size=1, max_size=10), anything, min_size=1,
                                                          max_size=3))) + text
    elif change == "deep":
        text += "\n" + toml_document({"daemon2": deep(draw(st.sampled_from([40, 400, 3000])),
                                                      draw(st.sampled_from(["list", "table"])))})
    elif change == "bytes":
        return draw(st.binary(max_size=300))
    else:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from([NUL, LONE_SURROGATE, "\ufeff", "[", '"'])) + text[cut:]
    return text


def _drop_duplicate_key(text: str, key: str) -> str:
    """Keep the fuzzed value, not the one the base settings already had (TOML refuses both)."""
    lines = text.split("\n")
    seen = False
    kept = []
    for line in lines:
        if line.startswith(f"{key} = "):
            if seen:
                continue
            seen = True
        kept.append(line)
    return "\n".join(kept)


@FUZZ
@given(source=bad_settings())
def test_fuzzed_settings_never_crash_and_always_name_the_problem(folders: Any, source: str | bytes) -> None:
    folder = folders(source)
    settings, problems = check_all(folder.root, environ=dict(ENV))
    no_bug_words(problems)
    config = folder.root / "siar.toml"
    if settings is None:
        assert any(p.is_error and p.path == config for p in problems), [str(p) for p in problems]
        return
    for problem in problems:
        assert problem.path == config or problem.path.is_relative_to(folder.root), str(problem)
    if settings.posts_dir == folder.posts and "latihan" in settings.accounts:
        # Still usable: the good post goes out as ever.
        settings_db = folder.root / "state" / "siar.db"
        db = Database(f"sqlite:///{settings_db}")
        dispatcher = Dispatcher(db, settings, owner="fuzz", adapter_override=offline(settings))
        try:
            assert Syncer(db, settings).run().error is None
            dispatcher.dispatch()
            assert dispatcher.drain(timeout=30)
            with db.read() as conn:
                state, reason = conn.execute(select(D.c.state, D.c.hold_reason).where(D.c.post_id == "baik")).one()
            waiting = {("held", "blackout")} | ({("held", "approval")} if settings.require_approval else set())
            assert state == "published" or (state, reason) in waiting, (state, reason)
        finally:
            dispatcher.stop(5)
            db.dispose()


SETTINGS_CASES = [
    ("nul", '[daemon]\nposts = "po\\u0000sts"\n', "daemon.posts", "NUL"),
    ("deep", "[daemon]\nz = " + "[" * 3000 + "]" * 3000 + "\n", None, "nested too deeply"),
    ("deep-dotted", ".".join(["a"] * 3000) + " = 1\n", "a", "nested too deeply"),
    ("surrogate", '[daemon]\ntimezone = "Asia/' + LONE_SURROGATE + '"\n', None, "cannot be read"),
    ("rtl-zone", f'[daemon]\ntimezone = "{RTL}"\n', "daemon.timezone", "unknown time zone"),
    ("long-zone", '[daemon]\ntimezone = "' + "a" * 5000 + '"\n', "daemon.timezone", "unknown time zone"),
    ("huge-duration", '[daemon]\nlease = "99999999999d"\n', "daemon.lease", "too long"),
    ("longest-duration", '[daemon]\nlease = "999999999d"\nhttp_timeout = "999999998d"\n', "daemon.lease", "too long"),
    ("nan", "[retry]\nfirst_delay = nan\n", "retry.first_delay", "duration"),
    ("concurrency", "[daemon]\nconcurrency = 1000000000000000000\n", "daemon.concurrency", "less than or equal"),
    ("attempts", "[retry]\nattempts = 100000\n", "retry.attempts", "less than or equal"),
    ("blackout-9999", '[[blackout]]\nstart = 9999-12-31T00:00:00\nend = 9999-12-31T23:59:59\nreason = "x"\n',
     "blackout[0].start", "calendar"),
    ("blackout-1", '[[blackout]]\nstart = 0001-01-01T00:00:00\nend = 2026-01-01T00:00:00\nreason = "x"\n',
     "blackout[0].start", "calendar"),
    ("account-duration", '[accounts.pelan]\nplatform = "outbox"\nmin_interval = "99999999999d"\n',
     "accounts.pelan.min_interval", "too long"),
    ("random-key", "[daemon]\nwarna = 1\n", "daemon.warna", "unknown key"),
]


@pytest.mark.parametrize(("name", "source", "field", "words"), SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES])
def test_each_named_bad_setting_gets_a_clear_problem(folders: Any, name: str, source: str, field: str | None,
                                                     words: str) -> None:
    folder = folders(source)
    settings, problems = check_all(folder.root, environ=dict(ENV))
    assert settings is None
    no_bug_words(problems)
    assert any(p.path == folder.root / "siar.toml" and words in p.message
               and (p.field == field or (field and (p.field or "").startswith(field + "."))) for p in problems), \
        [str(p) for p in problems]


def test_a_settings_file_that_is_not_a_file_is_refused_not_waited_on(folders: Any) -> None:
    folder = folders()
    (folder.root / "siar.toml").unlink()
    os.mkfifo(folder.root / "siar.toml")
    settings, problems = check_all(folder.root, environ=dict(ENV))
    assert settings is None
    assert [p.message for p in problems] == ["is not a regular file"]


# --- the real commands ----------------------------------------------------------------------------

PROCESS_POSTS = {name: content for name, content, _, _ in NAMED_CASES
                 if name in ("nul-teks.toml", "surrogat.toml", "rtl.toml", "emoji.toml", "tahun-9999-offset.toml",
                             "tahun-1.toml", "tidak-ada-waktunya.toml", "video-besar.toml", "keluar.toml",
                             "lingkar.toml", "dalam-sekali.toml", "bertitik.toml", "terlambat.toml")}


def _no_traceback(result: Any) -> None:
    assert result.returncode in (0, 1), (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_the_real_commands_report_bad_input_and_keep_going(folders: Any) -> None:
    folder = folders()
    for name, content in PROCESS_POSTS.items():
        folder.write(name, content)
    os.mkfifo(folder.posts / "pipa.toml")
    env = siar_env(**ENV)

    check = run_siar(folder.root, "check", env=env)
    _no_traceback(check)
    assert check.returncode == 1
    for name in ("nul-teks", "surrogat", "tahun-9999-offset", "tahun-1", "tidak-ada-waktunya", "video-besar",
                 "keluar", "lingkar", "dalam-sekali", "bertitik", "terlambat", "pipa"):
        assert f"{name}.toml" in check.stdout, name

    run = run_siar(folder.root, "run", "--once", env=env)
    _no_traceback(run)
    outbox = folder.root / "state" / "outbox" / "latihan"
    texts = {json.loads(path.read_text())["text"] for path in outbox.glob("*.json")}
    assert {GOOD_TEXT, RTL, JOINED} <= texts


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nul", "deep", "surrogate", "huge-duration", "concurrency", "blackout-9999"])
def test_the_real_commands_refuse_bad_settings_without_a_traceback(folders: Any, name: str) -> None:
    source = next(case[1] for case in SETTINGS_CASES if case[0] == name)
    folder = folders(source)
    env = siar_env(**ENV)
    for args in (("check",), ("run", "--once")):
        result = run_siar(folder.root, *args, env=env)
        _no_traceback(result)
        assert result.returncode == 1, (args, result.stdout, result.stderr[-2000:])
