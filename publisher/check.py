"""`siar check`, offline: the settings, then every post file against its platforms' limits."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import replace
from pathlib import Path

from publisher.posts import scan_posts
from publisher.problems import ConfigInvalid, FileProblem, sort_problems
from publisher.quality import LinkChecker, link_problems, quality_problems
from publisher.settings import Settings, load_settings


def check_all(
    config_dir: Path, environ: MutableMapping[str, str] | None = None, *, settings_only: bool = False,
    quality: bool = True, online: bool = False,
) -> tuple[Settings | None, list[FileProblem]]:
    """Every problem in the configuration: the settings' first; the posts' when the settings load.

    `quality` adds the editor's warnings (alt text, hashtags, blackouts, …); `online` also asks
    every link whether it answers.
    """
    try:
        settings = load_settings(config_dir, environ)
    except ConfigInvalid as exc:
        return None, exc.problems
    if settings_only:
        return settings, list(settings.warnings)
    problems: list[FileProblem] = []
    scan = scan_posts(settings, platform_checks=True)
    if scan.folder_error is not None:
        problems.append(FileProblem(settings.posts_dir, None, None, scan.folder_error))
    problems.extend(scan.problems)
    checker = LinkChecker(settings.state_dir) if online else None
    for spec in scan.posts.values():
        path = settings.posts_dir / spec.path
        if quality:
            problems.extend(quality_problems(spec, settings, path))
        if checker is not None:
            problems.extend(link_problems(spec, path, checker))
    if checker is not None:
        checker.save()
    # The settings' warnings first, then the posts' problems in file and line order.
    return settings, list(settings.warnings) + sort_problems(problems)


def github_annotation(problem: FileProblem) -> str:
    """A GitHub Actions workflow command, so a pull request shows the problem on its line."""
    def escape(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    props = [f"file={escape(str(problem.path))}"]
    if problem.line is not None:
        props.append(f"line={problem.line}")
    if problem.field:
        props.append(f"title={escape(problem.field).replace(',', '%2C').replace(':', '%3A')}")
    return f"::{problem.severity} {','.join(props)}::{escape(problem.message)}"


def format_problems(problems: Iterable[FileProblem], *, relative_to: Path | None = None) -> str:
    """One `path:line: severity: field: message` line per problem.

    With `relative_to` (the working directory, say), paths under it are shown relative to it,
    as compilers and linters do, so editors and CI annotations can open them.
    """
    lines = []
    for problem in problems:
        if relative_to is not None and problem.path.is_relative_to(relative_to):
            problem = replace(problem, path=problem.path.relative_to(relative_to))
        lines.append(str(problem))
    return "\n".join(lines)
