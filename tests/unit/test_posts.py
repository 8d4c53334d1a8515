"""Post files: what a good one becomes, and every problem of a broken one named with its line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters import registry
from publisher.posts import Content, MediaRef, PostSpec, cron_weekdays, load_post, scan_posts, to_utc
from publisher.settings import Settings, load_settings
from tests.support import media as media_files
from tests.unit.data import SETTINGS, make_config

TINY_ACCOUNT = '\n[accounts.kecil]\nplatform = "tiny"\n'
POST_KEYS = "allow_repeat, approved_by, at, id, link, max_lateness, media, repeat, text, title, to, until, variants"
UTC = timezone.utc
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture
def tiny_platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registers `tests.unit.data:TinyAdapter` as platform `tiny`, the way a package would."""
    entries = dict(registry._entries())
    entries["tiny"] = EntryPoint(name="tiny", value="tests.unit.data:TinyAdapter", group=registry.GROUP)
    monkeypatch.setattr(registry, "_entries", lambda: entries)
    registry.adapter_class.cache_clear()
    yield
    registry.adapter_class.cache_clear()


@pytest.fixture
def config(tmp_path: Path, tiny_platform: None) -> Path:
    config = make_config(tmp_path, settings=SETTINGS + TINY_ACCOUNT)
    outside = media_files.write(tmp_path / "private", "ktp.png", media_files.png_bytes())
    (config / "media" / "keluar.png").symlink_to(outside)
    return config


@pytest.fixture
def settings(config: Path) -> Settings:
    return load_settings(config, {})


def write_post(settings: Settings, name: str, text: str) -> Path:
    path = settings.posts_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(settings: Settings, name: str, text: str) -> list[str]:
    spec, problems = load_post(write_post(settings, name, text), settings)
    assert spec is None
    return [str(problem) for problem in problems]


# --- good posts --------------------------------------------------------------------------------

HARI_GURU = '''\
id = "hari-guru-2026"
at = 2026-11-25T08:00:00
to = ["latihan", "hook"]
text = """
Selamat Hari Guru Nasional!
"""
link = "https://example.go.id/hari-guru"
media = [{ file = "photo.png", alt = "Guru mengajar di kelas" }]

[variants.hook]
text = "Hari Guru"
'''


def test_a_good_post_becomes_a_spec_with_the_variant_merged_over_the_base(settings: Settings) -> None:
    spec, problems = load_post(write_post(settings, "2026-11/hari-guru.toml", HARI_GURU), settings)
    assert problems == []
    assert spec is not None
    assert spec.id == "hari-guru-2026"
    assert spec.path == "2026-11/hari-guru.toml"
    assert spec.to == ("latihan", "hook")
    base = Content(
        text="Selamat Hari Guru Nasional!",
        link="https://example.go.id/hari-guru",
        media=(MediaRef("photo.png", "Guru mengajar di kelas"),),
    )
    assert spec.content == base
    assert spec.content_for("latihan") == base
    assert spec.content_for("hook") == Content(text="Hari Guru", link=base.link, media=base.media)
    assert (spec.repeat, spec.until, spec.max_lateness, spec.allow_repeat) == (None, None, None, False)


def test_a_naive_time_is_read_in_the_daemon_time_zone_and_stored_as_utc(settings: Settings) -> None:
    spec, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    assert spec is not None and spec.at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert spec.at.tzinfo is UTC


@pytest.mark.parametrize(
    "written",
    ["2026-11-25T10:00:00+09:00", '"2026-11-25T10:00:00+09:00"', '"2026-11-25 01:00:00Z"', '"2026-11-25T08:00"'],
)
def test_an_offset_is_kept_and_an_iso_string_is_accepted(settings: Settings, written: str) -> None:
    spec, problems = load_post(write_post(settings, "a.toml", f'at = {written}\nto = ["latihan"]\ntext = "x"\n'), settings)
    assert problems == []
    assert spec is not None and spec.at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def test_the_id_defaults_to_the_path_under_posts_without_toml(settings: Settings) -> None:
    spec, _ = load_post(write_post(settings, "2026-11/pengumuman.toml", 'to = ["latihan"]\ntext = "x"\n'), settings)
    assert spec is not None and spec.id == "2026-11/pengumuman"
    assert spec.at is None  # as soon as possible


def test_every_optional_field_is_read(settings: Settings) -> None:
    spec, problems = load_post(
        write_post(
            settings,
            "mingguan.toml",
            'at = 2026-01-04T08:00:00\nto = ["latihan"]\ntext = "Info mingguan"\ntitle = "Info"\n'
            'repeat = "0 8 * * 0"\nuntil = 2026-03-01T00:00:00\nmax_lateness = "15m"\nallow_repeat = true\n',
        ),
        settings,
    )
    assert problems == []
    assert spec is not None
    assert spec.content.title == "Info"
    assert spec.repeat == "0 8 * * 0"
    assert spec.until == datetime(2026, 2, 28, 17, 0, tzinfo=UTC)
    assert spec.max_lateness == timedelta(minutes=15)
    assert spec.allow_repeat is True


def test_to_message_gives_adapters_absolute_media_paths_and_public_urls(settings: Settings) -> None:
    spec, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    assert spec is not None
    message = spec.content_for("hook").to_message(spec.id, settings.media_dir, settings.media_url)
    assert (message.post_id, message.text, message.link) == ("hari-guru-2026", "Hari Guru", spec.content.link)
    (media,) = message.media
    assert media.path == (settings.media_dir / "photo.png").resolve()
    assert media.path.is_absolute()
    assert media.url == "https://cdn.example.go.id/siar/photo.png"
    assert media.alt == "Guru mengajar di kelas"
    assert spec.content.to_message("x", settings.media_dir, None).media[0].url is None


def test_a_spec_survives_its_json_and_its_hash_is_stable(settings: Settings) -> None:
    spec, _ = load_post(write_post(settings, "a.toml", 'repeat = "0 8 * * 1"\n' + HARI_GURU), settings)
    assert spec is not None
    again = PostSpec.from_json(spec.to_json())
    assert again == spec
    assert again.content_hash == spec.content_hash
    assert spec.to_json() == again.to_json()


def test_a_copied_post_under_another_name_and_id_has_the_same_fingerprint(settings: Settings) -> None:
    first, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    copy = HARI_GURU.replace('id = "hari-guru-2026"', 'id = "salinan"').replace(
        '"""\nSelamat Hari Guru Nasional!\n"""', '"Selamat Hari Guru Nasional!   "'
    )
    second, _ = load_post(write_post(settings, "b/copy.toml", copy), settings)
    assert first is not None and second is not None
    assert first.fingerprint == second.fingerprint
    assert first.content_hash != second.content_hash


def test_the_fingerprint_changes_with_the_media_bytes_and_the_targets(settings: Settings) -> None:
    first, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    reordered, _ = load_post(
        write_post(settings, "b.toml", HARI_GURU.replace('["latihan", "hook"]', '["hook", "latihan"]')), settings
    )
    only_latihan = HARI_GURU.replace('["latihan", "hook"]', '["latihan"]').split("[variants.hook]")[0]
    fewer, _ = load_post(write_post(settings, "c.toml", only_latihan), settings)
    assert first is not None and reordered is not None and fewer is not None
    assert reordered.fingerprint == first.fingerprint
    assert fewer.fingerprint != first.fingerprint
    media_files.write(settings.media_dir, "photo.png", media_files.png_bytes(width=9))
    changed, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    assert changed is not None and changed.fingerprint != first.fingerprint


# --- times and repeats -------------------------------------------------------------------------


def test_cron_day_of_week_0_and_7_are_sunday_as_in_cron(settings: Settings) -> None:
    spec, problems = load_post(
        write_post(settings, "a.toml", 'at = 2026-01-01T00:00:00\nto = ["latihan"]\ntext = "x"\nrepeat = "0 8 * * 0"\n'),
        settings,
    )
    assert problems == []
    assert spec is not None
    trigger = spec.cron_trigger(settings.timezone)
    assert trigger is not None
    first = trigger.get_next_fire_time(None, spec.at)
    assert first == datetime(2026, 1, 4, 8, 0, tzinfo=JAKARTA)  # 4 January 2026 is a Sunday
    assert first.strftime("%A") == "Sunday"


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", ["mon", "tue", "wed", "thu", "fri"]),
        ("MON-FRI", ["mon", "tue", "wed", "thu", "fri"]),
        ("5-7", ["sun", "fri", "sat"]),
        ("fri-sun", ["sun", "fri", "sat"]),
        ("*/2", ["sun", "tue", "thu", "sat"]),
        ("1-5/2", ["mon", "wed", "fri"]),
        ("0,3", ["sun", "wed"]),
        ("*", "*"),
    ],
)
def test_cron_weekdays_become_names_as_cron_reads_them(field: str, days: str | list[str]) -> None:
    assert cron_weekdays(field) == (days if isinstance(days, str) else ",".join(days))


def test_repeat_occurrences_start_at_at_and_stop_at_until(settings: Settings) -> None:
    spec, _ = load_post(
        write_post(
            settings,
            "a.toml",
            'at = 2026-01-05T00:00:00\nuntil = 2026-01-20T00:00:00\nto = ["latihan"]\ntext = "x"\nrepeat = "30 7 * * 1-5/2"\n',
        ),
        settings,
    )
    assert spec is not None
    trigger = spec.cron_trigger(settings.timezone)
    assert trigger is not None
    fires, previous, now = [], None, spec.at
    while (nxt := trigger.get_next_fire_time(previous, now)) is not None:
        fires.append(nxt.strftime("%a %d %H:%M"))
        previous, now = nxt, nxt + timedelta(seconds=1)
    assert fires == [
        "Mon 05 07:30", "Wed 07 07:30", "Fri 09 07:30", "Mon 12 07:30", "Wed 14 07:30", "Fri 16 07:30", "Mon 19 07:30",
    ]


def test_a_post_without_repeat_has_no_trigger(settings: Settings) -> None:
    spec, _ = load_post(write_post(settings, "a.toml", HARI_GURU), settings)
    assert spec is not None and spec.cron_trigger(settings.timezone) is None


def test_a_local_time_skipped_by_daylight_saving_is_an_error(tmp_path: Path, tiny_platform: None) -> None:
    config = make_config(tmp_path, settings=SETTINGS.replace("Asia/Jakarta", "Europe/Berlin"))
    settings = load_settings(config, {})
    path = write_post(settings, "dst.toml", 'to = ["latihan"]\ntext = "x"\nat = 2026-03-29T02:30:00\n')
    spec, problems = load_post(path, settings)
    assert spec is None
    assert [str(p) for p in problems] == [
        f"{path}:3: error: at: 2026-03-29T02:30:00 does not exist in Europe/Berlin: the clocks skip it; "
        "choose another time or give an offset"
    ]
    fine, _ = load_post(write_post(settings, "ok.toml", 'to = ["latihan"]\ntext = "x"\nat = 2026-03-29T03:30:00\n'), settings)
    assert fine is not None and fine.at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_to_utc_explains_how_to_write_a_time() -> None:
    with pytest.raises(ValueError, match="write the time too, like 2026-11-25T08:00:00"):
        to_utc("2026-11-25", JAKARTA)
    with pytest.raises(ValueError, match="write the date too, like 2026-11-25T08:00"):
        to_utc("08:00", JAKARTA)


# --- broken posts ------------------------------------------------------------------------------

BROKEN = [
    pytest.param(
        'to = ["latihan"]\ntext = "Selamat pagi\nlink = "https://example.go.id"\n',
        ["{path}:2: error: Illegal character '\\n'"],
        id="bad TOML",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\ntilte = "Judul"\nfoto = "a.png"\n',
        [
            f"{{path}}:3: error: tilte: unknown key; did you mean 'title'? (known: {POST_KEYS})",
            f"{{path}}:4: error: foto: unknown key (known: {POST_KEYS})",
        ],
        id="unknown keys",
    ),
    pytest.param(
        'to = ["latihan", "pemkot-fb", "latihan"]\ntext = "x"\n',
        [
            "{path}:1: error: to[1]: unknown account 'pemkot-fb' (known: hook, kecil, latihan)",
            "{path}:1: error: to[2]: names 'latihan' twice",
        ],
        id="an unknown account and a repeated one",
    ),
    pytest.param(
        'to = []\ntext = "x"\n',
        ["{path}:1: error: to: is empty: name at least one account (known: hook, kecil, latihan)"],
        id="an empty to",
    ),
    pytest.param(
        'title = "Judul"\n',
        [
            "{path}: error: to: is required: the accounts to publish to (known: hook, kecil, latihan)",
            "{path}: error: text: is empty and there is no media: a post needs text or media",
        ],
        id="no to and no text at all",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = 2026-11-25\n',
        ["{path}:3: error: at: is a date without a time; write the time too, like 2026-11-25T08:00:00"],
        id="at as a bare date",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = 08:00:00\n',
        ["{path}:3: error: at: is a time without a date; write the date too, like 2026-11-25T08:00:00"],
        id="at as a bare time",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = "besok pagi"\n',
        ["{path}:3: error: at: is not a date and time; write it like 2026-11-25T08:00:00, without quotes"],
        id="at as words",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = 20261125\n',
        ["{path}:3: error: at: expected a date and time like 2026-11-25T08:00:00, got 20261125"],
        id="at as a number",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nrepeat = "0 8 * *"\n',
        [
            "{path}:3: error: repeat: has 4 fields; a cron expression has 5: minute hour day month weekday, "
            "like '0 8 * * MON'"
        ],
        id="a cron with four fields",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nrepeat = "61 8 * * *"\n',
        [
            "{path}:3: error: repeat: is not a valid cron expression: Error validating expression '61': "
            "the last value (61) is higher than the maximum value (59)"
        ],
        id="a cron minute out of range",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nrepeat = "0 8 * * SUNDAY"\n',
        ["{path}:3: error: repeat: is not a valid cron expression: 'sunday' is not a weekday (0-7 or SUN-SAT)"],
        id="a cron weekday that is not one",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nrepeat = "0 8 1 * MON"\n',
        [
            "{path}:3: error: repeat: restricts both the day of the month and the day of the week, which cron "
            "and Siar read differently; restrict only one (or write two posts)"
        ],
        id="a cron with both day fields",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = 2026-01-01T00:00:00\nrepeat = "0 8 30 2 *"\n',
        ["{path}:4: error: repeat: never fires"],
        id="a cron that never fires",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nuntil = 2026-12-31T00:00:00\n',
        ["{path}:3: error: until: needs `repeat`: it ends a repeating post"],
        id="until without repeat",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nat = 2026-12-31T00:00:00\nrepeat = "0 8 * * *"\nuntil = 2026-12-01T00:00:00\n',
        ["{path}:5: error: until: must be after `at`"],
        id="until before at",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "photo.png" }, { file = "hilang.jpg" }]\n',
        ["{path}:3: error: media[1].file: 'hilang.jpg' is not in the media folder {media}"],
        id="missing media",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [\n  { file = "photo.png" },\n  { file = "../siar.toml" },\n]\n',
        ["{path}:5: error: media[1].file: '../siar.toml' resolves to {config}/siar.toml, outside the media folder {media}"],
        id="media escaping the media folder through dot-dot",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "keluar.png" }]\n',
        ["{path}:3: error: media[0].file: 'keluar.png' resolves to {private}/ktp.png, outside the media folder {media}"],
        id="media escaping the media folder through a symlink",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "/etc/hostname" }]\n',
        ["{path}:3: error: media[0].file: '/etc/hostname' resolves to /etc/hostname, outside the media folder {media}"],
        id="media given as an absolute path",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [{ file = "photo.png", alt = "' + "a" * 1001 + '" }]\n',
        ["{path}:3: error: media[0].alt: is 1001 characters long; the limit is 1000"],
        id="an over-long alt",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nmedia = [{ alt = "no file" }, "photo.png"]\n',
        [
            "{path}:3: error: media[0].file: is required",
            '{path}:3: error: media[1]: expected a table, got "photo.png"',
        ],
        id="media entries without a file",
    ),
    pytest.param(
        'to = ["latihan", "hook"]\ntext = "   "\n',
        ["{path}:2: error: text: is empty and there is no media: a post needs text or media"],
        id="empty text with no media",
    ),
    pytest.param(
        'to = ["latihan", "hook"]\ntext = "x"\n[variants.hook]\ntext = ""\n',
        ["{path}:4: error: variants.hook.text: is empty and there is no media: a post needs text or media"],
        id="a variant that empties the text",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nlink = "example.go.id/berita"\n',
        ['{path}:3: error: link: expected an http(s) URL, got "example.go.id/berita"'],
        id="a link without a scheme",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\n\n[variants.hook]\ntext = "y"\n\n[variants.latihan]\nlnk = "https://example.go.id"\n',
        [
            "{path}:4: error: variants.hook: 'hook' is not one of this post's accounts (to: latihan)",
            "{path}:8: error: variants.latihan.lnk: unknown key; did you mean 'link'? (known: link, media, text, title)",
        ],
        id="a variant for an account not in to and an unknown variant key",
    ),
    pytest.param(
        'to = ["latihan"]\ntext = "x"\nallow_repeat = "yes"\nmax_lateness = "sebentar"\nid = ""\n',
        [
            '{path}:3: error: allow_repeat: expected true or false, got "yes"',
            "{path}:4: error: max_lateness: expected a duration like '30s', '10m', '2h' or '1d', got 'sebentar'",
            "{path}:5: error: id: must not be empty",
        ],
        id="wrong types",
    ),
    pytest.param(
        'to = ["latihan", "kecil"]\ntext = "Selamat Hari Guru Nasional!"\n',
        ["{path}:2: error: text: for kecil (tiny): is 27 characters long; the limit is 20"],
        id="a platform's text limit exceeded",
    ),
    pytest.param(
        'to = ["latihan", "kecil"]\ntext = "Singkat"\n'
        'media = [{ file = "photo.png" }]\n\n[variants.kecil]\ntext = "Selamat Hari Guru Nasional!"\n'
        'media = [{ file = "photo.png" }, { file = "video/clip.mp4" }]\n',
        [
            "{path}:6: error: variants.kecil.text: for kecil (tiny): is 27 characters long; the limit is 20",
            "{path}:7: error: variants.kecil.media: for kecil (tiny): has 2 files; the limit is 1",
            "{path}:7: error: variants.kecil.media[1]: for kecil (tiny): video/clip.mp4 is video/mp4; "
            "this platform takes image",
        ],
        id="a platform's limits exceeded by a variant",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_a_broken_post_file_reports_exactly_its_problems(
    settings: Settings, tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = settings.posts_dir / "rusak.toml"
    found = problems_of(settings, "rusak.toml", text)
    values = {"path": path, "media": settings.media_dir, "config": settings.config_dir, "private": tmp_path / "private"}
    assert found == [line.format(**values) for line in expected]


def test_all_problems_of_a_post_file_are_reported_at_once(settings: Settings) -> None:
    path = write_post(
        settings,
        "semua.toml",
        """\
at = 2026-11-25
to = ["latihan", "pemkot-fb"]
text = "x"
link = "ftp://example.go.id"
media = [
  { file = "../siar.toml" },
  { file = "hilang.png", alt = "hilang" },
]
repeat = "0 8 * * * *"
colour = "merah"

[variants.pemkot-x]
text = "y"
""",
    )
    spec, problems = load_post(path, settings)
    assert spec is None
    media = settings.media_dir
    assert [str(p) for p in problems] == [
        f"{path}:1: error: at: is a date without a time; write the time too, like 2026-11-25T08:00:00",
        f"{path}:2: error: to[1]: unknown account 'pemkot-fb' (known: hook, kecil, latihan)",
        f'{path}:4: error: link: expected an http(s) URL, got "ftp://example.go.id"',
        f"{path}:6: error: media[0].file: '../siar.toml' resolves to {settings.config_dir}/siar.toml, "
        f"outside the media folder {media}",
        f"{path}:7: error: media[1].file: 'hilang.png' is not in the media folder {media}",
        f"{path}:9: error: repeat: has 6 fields; a cron expression has 5: minute hour day month weekday, "
        "like '0 8 * * MON'",
        f"{path}:10: error: colour: unknown key (known: {POST_KEYS})",
        f"{path}:12: error: variants.pemkot-x: 'pemkot-x' is not one of this post's accounts (to: latihan, pemkot-fb)",
    ]


def test_platform_checks_can_be_turned_off(settings: Settings) -> None:
    path = write_post(settings, "a.toml", 'to = ["kecil"]\ntext = "Selamat Hari Guru Nasional!"\n')
    spec, problems = load_post(path, settings, platform_checks=False)
    assert spec is not None and problems == []


def test_an_account_whose_adapter_cannot_be_built_is_a_problem_of_the_post(config: Path) -> None:
    (config / "siar.toml").write_text(SETTINGS + TINY_ACCOUNT + '\n[accounts.kecil2]\nplatform = "tiny"\nstyle = "bold"\n')
    settings = load_settings(config, {})
    path = write_post(settings, "a.toml", 'to = ["latihan", "kecil2"]\ntext = "x"\n')
    spec, problems = load_post(path, settings)
    assert spec is None
    assert [str(p) for p in problems] == [
        f"{path}:1: error: to[1]: for kecil2 (tiny): the account's settings are unusable: style must be 'plain'"
    ]


# --- scanning the folder -----------------------------------------------------------------------


def test_a_scan_loads_the_good_files_beside_the_broken_ones(settings: Settings) -> None:
    write_post(settings, "2026-11/hari-guru.toml", HARI_GURU)
    write_post(settings, "2026-11/rusak.toml", 'to = ["latihan"]\ntext = ""\n')
    write_post(settings, "2026-12/natal.toml", 'to = ["latihan"]\ntext = "Selamat Natal"\n')
    write_post(settings, "bad-toml.toml", "to = [\n")
    write_post(settings, ".draft.toml", "this is not toml")
    write_post(settings, ".git/config.toml", "neither is this")
    write_post(settings, "notes.txt", "not a post")
    scan = scan_posts(settings)
    assert sorted(scan.posts) == ["2026-12/natal", "hari-guru-2026"]
    assert scan.bad_paths == {"2026-11/rusak.toml", "bad-toml.toml"}
    assert scan.files == 4
    assert scan.folder_error is None
    assert [str(p) for p in scan.problems] == [
        f"{settings.posts_dir}/2026-11/rusak.toml:2: error: text: is empty and there is no media: "
        "a post needs text or media",
        f"{settings.posts_dir}/bad-toml.toml:1: error: Invalid value",
    ]


def test_a_duplicate_id_is_an_error_on_the_later_file_naming_the_other(settings: Settings) -> None:
    first = write_post(settings, "a/first.toml", HARI_GURU)
    second = write_post(settings, "b/second.toml", HARI_GURU.replace("Nasional", "Nasional 2026"))
    scan = scan_posts(settings)
    assert list(scan.posts) == ["hari-guru-2026"]
    assert scan.posts["hari-guru-2026"].path == "a/first.toml"
    assert scan.bad_paths == {"b/second.toml"}
    assert [str(p) for p in scan.problems] == [
        f"{second}:1: error: id: 'hari-guru-2026' is also the id of {first}; ids must be unique"
    ]


def test_a_missing_posts_folder_is_a_folder_error_not_an_empty_scan(settings: Settings) -> None:
    settings.posts_dir.rmdir()
    scan = scan_posts(settings)
    assert scan.folder_error == f"the posts folder {settings.posts_dir} does not exist or is not a folder"
    assert (scan.posts, scan.files) == ({}, 0)


def test_an_unreadable_subfolder_is_a_folder_error(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    write_post(settings, "ok.toml", 'to = ["latihan"]\ntext = "x"\n')
    locked = settings.posts_dir / "locked"
    locked.mkdir()
    write_post(settings, "locked/hidden.toml", 'to = ["latihan"]\ntext = "y"\n')
    real_scandir = os.scandir

    def scandir(top: str) -> Any:
        # What listing a folder one may not read does (root could list it, so it is simulated).
        if Path(top) == locked:
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(top)

    monkeypatch.setattr("publisher.posts.os.scandir", scandir)
    scan = scan_posts(settings)
    assert scan.folder_error == f"cannot read {locked}: Permission denied"
    assert list(scan.posts) == ["ok"]
