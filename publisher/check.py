"""`siar check`, offline: the settings, then every post file against its platforms' limits."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import replace
from pathlib import Path

from publisher.posts import scan_posts
from publisher.problems import ConfigInvalid, FileProblem
from publisher.settings import Settings, load_settings


def check_all(
    config_dir: Path, environ: MutableMapping[str, str] | None = None
) -> tuple[Settings | None, list[FileProblem]]:
    """Every problem in the configuration: the settings' first; the posts' when the settings load."""
    try:
        settings = load_settings(config_dir, environ)
    except ConfigInvalid as exc:
        return None, exc.problems
    problems = list(settings.warnings)
    scan = scan_posts(settings, platform_checks=True)
    if scan.folder_error is not None:
        problems.append(FileProblem(settings.posts_dir, None, None, scan.folder_error))
    problems.extend(scan.problems)
    return settings, problems


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
