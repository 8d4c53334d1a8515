"""The `siar` parser: a command imports only what it uses, and the tools' help stays their own."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from publisher.cli import TOOLS, build_parser


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_tools_help_in_the_command_list_is_the_one_its_module_declares(name: str) -> None:
    module_name, help_text = TOOLS[name]
    assert help_text == importlib.import_module(module_name).HELP


@pytest.mark.parametrize("argv", [["report", "--json"], ["--config", "x", "calendar"], ["--config=x", "import", "f"],
                                  ["--conf", "x", "report"]])
def test_a_tool_named_among_the_words_is_parsed_by_its_own_parser(argv: list[str]) -> None:
    args = build_parser(argv).parse_args(argv)
    assert args.handler.__module__ == TOOLS[args.command][0]


def test_a_post_named_like_a_tool_does_not_change_the_command() -> None:
    argv = ["show", "report"]
    args = build_parser(argv).parse_args(argv)
    assert args.command == "show" and args.post == "report"


def test_help_and_a_status_import_neither_the_tools_nor_the_daemons_libraries() -> None:
    probe = (
        "import sys\n"
        "from publisher.cli import build_parser\n"
        "build_parser(['status']).parse_args(['status'])\n"
        "heavy = ('apscheduler', 'requests', 'prometheus_client', 'alembic', 'sqlalchemy', 'pydantic', 'structlog',\n"
        "         'publisher.importer', 'publisher.calendar', 'publisher.report', 'publisher.posts')\n"
        "print(sorted(m for m in sys.modules if m in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
