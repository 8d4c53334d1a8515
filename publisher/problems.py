"""What is wrong with an operator's file, as `path:line: error: field: message` lines.

Validation collects every problem of a file before reporting (borgmatic's habit), so one run of
`siar check` shows the operator everything to fix, each with the file, line and field.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from publisher.tomlpos import KeyPath, line_of

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Characters that would hide or reorder what a message shows (NUL, escapes, right-to-left
# overrides): written as TOML escapes, so the operator sees exactly what is in the file.
_UNSEEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class FileProblem:
    """One problem in one file; `line` and `field` are None when they cannot be known."""

    path: Path
    line: int | None
    field: str | None
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {self.severity}: {field}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class ConfigInvalid(Exception):
    """Settings that cannot be used; `problems` holds every one found, warnings included."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def sort_problems(problems: Iterable[FileProblem]) -> list[FileProblem]:
    """By file, then line; problems without a line (about the whole file) first."""
    return sorted(problems, key=lambda p: (str(p.path), p.line or 0))


def field_name(path: KeyPath) -> str:
    """A key path as an operator would write it: `variants.pemkot-x.media[0].alt`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if len(part) <= 60 else part[:57] + "..."
            key = part if _BARE_KEY.fullmatch(part) else '"' + visible(shown.replace('"', '\\"')) + '"'
            text += f".{key}" if text else key
    return text


def visible(text: str) -> str:
    """`text` with control and direction characters written as TOML escapes (`\\u0000`)."""
    return _UNSEEN.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


NESTING_MAX = 32  # tables and lists inside one another: no operator's file needs more


def too_deep(value: Any, limit: int = NESTING_MAX) -> KeyPath | None:
    """Where parsed TOML nests deeper than `limit`, or None. Iterative: it is what guards the
    recursive walks (validation, `${VAR}` substitution, redaction) from a file nested thousands deep."""
    stack: list[tuple[KeyPath, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if len(path) > limit:
            return path
        if isinstance(item, dict):
            stack.extend((path + (key,), sub) for key, sub in item.items())
        elif isinstance(item, list):
            stack.extend((path + (index,), sub) for index, sub in enumerate(item))
    return None


def nul_paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Where a NUL character sits in parsed TOML, in a key or a string: no platform, database
    column or file name takes one."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield path + (key,)
            else:
                yield from nul_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_paths(item, path + (index,))
    elif isinstance(value, str) and "\x00" in value:
        yield path


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """Names the keys that are accepted, and the likely one when it looks like a typo."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (known: {', '.join(names)})"


def validation_problems(
    file: Path, source: str, error: ValidationError, model: type[BaseModel], prefix: KeyPath = ()
) -> list[FileProblem]:
    """Translate pydantic's errors for `model` into problems with lines and operator wording.

    `prefix` is where the validated table sits in the file (`("daemon",)` for `[daemon]`).
    """
    problems = []
    for item in error.errors():
        loc: KeyPath = tuple(item["loc"])
        path = prefix + loc
        problems.append(
            FileProblem(file, line_of(source, path), field_name(path), _message(item, model, loc))
        )
    return problems


def describe(value: Any) -> str:
    """A short, TOML-looking rendering of a value for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return '"' + visible(shown.replace('"', '\\"')) + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


_TYPE_WORDS = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
}


def _message(item: Any, model: type[BaseModel], loc: KeyPath) -> str:
    kind = item["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = parent.model_fields if parent is not None else ()
        return unknown_key_message(str(loc[-1]), known)
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {describe(item['input'])}"
    message = str(item["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if message.startswith("Input should"):
        return message.replace("Input should", "should", 1) + f", got {describe(item['input'])}"
    return message


def _model_at(model: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    """The model that validates the table at `loc`, following fields, lists and dicts."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (list, tuple, dict):
            annotation = get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, …]` → X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
