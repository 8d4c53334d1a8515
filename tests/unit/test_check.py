"""`siar check`: the settings' problems, then every post file's, one line each."""

from __future__ import annotations

from pathlib import Path

from publisher.check import check_all, format_problems
from publisher.problems import ConfigInvalid, FileProblem
from tests.unit.data import SETTINGS, make_config


def test_a_clean_configuration_has_no_problems(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (config / "posts" / "halo.toml").write_text('to = ["latihan", "hook"]\ntext = "Halo"\n')
    settings, problems = check_all(config, {})
    assert settings is not None and settings.config_dir == config
    assert problems == []


def test_broken_settings_are_reported_and_the_posts_are_not_read(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings='[daemon]\nlease = "30s"\n')
    (config / "posts" / "rusak.toml").write_text("not toml")
    settings, problems = check_all(config, {})
    assert settings is None
    assert [str(p) for p in problems] == [
        f"{config}/siar.toml:2: error: daemon.lease: is 30s; it must be longer than twice http_timeout (30s) "
        "so that a claim outlives a request that times out"
    ]


def test_settings_warnings_come_before_every_post_problem(tmp_path: Path) -> None:
    config = make_config(tmp_path, settings=SETTINGS.replace('"${HOOK_SECRET}"', '"literal-secret"'))
    (config / "posts" / "b.toml").write_text('to = ["latihan"]\ntext = ""\n')
    (config / "posts" / "a.toml").write_text('to = ["hook"]\ntext = "x"\nlink = "www.example.go.id"\n')
    settings, problems = check_all(config, {})
    assert settings is not None
    assert [str(p) for p in problems] == [
        f"{config}/siar.toml:11: warning: accounts.hook.secret: is written in siar.toml; put secrets in .env as ${{VAR}}",
        f'{config}/posts/a.toml:3: error: link: expected an http(s) URL, got "www.example.go.id"',
        f"{config}/posts/b.toml:2: error: text: is empty and there is no media: a post needs text or media",
    ]


def test_a_missing_posts_folder_is_an_error_of_the_check(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    (config / "posts").rmdir()
    _, problems = check_all(config, {})
    assert [str(p) for p in problems] == [
        f"{config}/posts: error: the posts folder {config}/posts does not exist or is not a folder"
    ]


def test_format_problems_prints_one_line_each_relative_to_a_folder_when_asked(tmp_path: Path) -> None:
    problems = [
        FileProblem(tmp_path / "config" / "siar.toml", 3, "daemon.timezone", "unknown time zone 'X'"),
        FileProblem(tmp_path / "config" / "posts" / "a.toml", None, None, "cannot be read: Permission denied"),
        FileProblem(Path("/elsewhere/b.toml"), 7, "text", "is long", "warning"),
    ]
    assert format_problems(problems, relative_to=tmp_path) == (
        "config/siar.toml:3: error: daemon.timezone: unknown time zone 'X'\n"
        "config/posts/a.toml: error: cannot be read: Permission denied\n"
        "/elsewhere/b.toml:7: warning: text: is long"
    )
    assert format_problems(problems[:1]) == f"{tmp_path}/config/siar.toml:3: error: daemon.timezone: unknown time zone 'X'"


def test_config_invalid_lists_every_problem_in_its_message(tmp_path: Path) -> None:
    error = ConfigInvalid(
        [FileProblem(tmp_path / "a", 1, "x", "one"), FileProblem(tmp_path / "a", 2, None, "two")]
    )
    assert str(error) == f"{tmp_path}/a:1: error: x: one\n{tmp_path}/a:2: error: two"
    assert len(error.problems) == 2
