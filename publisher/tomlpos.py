"""Line numbers for key paths in TOML source, which `tomllib` does not report.

A small scanner walks the source once, noting the line where every key, table and array element
starts, so a validation error on `("media", 1, "alt")` can point at the line an operator edits.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from functools import lru_cache

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}#\r\n]+")
_ERROR_POSITION = re.compile(r"\(at line (\d+), column \d+\)$")
_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def line_of(source: str, path: KeyPath) -> int | None:
    """The line where `path` is written, else where its nearest written parent is, else None."""
    lines = _positions(source)
    for end in range(len(path), 0, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def parse_error_line(exc: tomllib.TOMLDecodeError, source: str | None = None) -> int | None:
    """The line `tomllib` names in its error message.

    Errors found at the end of the document carry no line; given the `source`, that is its last.
    """
    match = _ERROR_POSITION.search(str(exc))
    if match:
        return int(match.group(1))
    if source is not None:
        return max(len(source.splitlines()), 1)
    return None


def parse_error_message(exc: tomllib.TOMLDecodeError) -> str:
    """The error message without its position, which the caller reports as the line."""
    return re.sub(r"\s*\(at (?:line \d+, column \d+|end of document)\)$", "", str(exc))


@lru_cache(maxsize=64)
def _positions(source: str) -> dict[KeyPath, int]:
    scanner = _Scanner(source)
    try:
        scanner.document()
    except (_Stop, RecursionError):
        pass  # invalid (or absurdly nested) TOML: keep what was found before the error
    return scanner.lines


class _Stop(Exception):
    """The scanner met something it cannot read; positions found so far still hold."""


class _Scanner:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", source)]
        # For `[[array.of.tables]]`: how many elements each array has so far, so that later
        # headers and keys inside it get the index of its last element, as TOML defines.
        self._array_tables: dict[KeyPath, int] = {}

    # --- helpers -------------------------------------------------------------------------

    def _line(self, pos: int) -> int:
        return bisect.bisect_right(self._line_starts, pos)

    def _peek(self, text: str) -> bool:
        return self.source.startswith(text, self.pos)

    def _note(self, path: KeyPath, pos: int) -> None:
        self.lines.setdefault(path, self._line(pos))

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces and tabs, comments, and line breaks when `newlines` is set."""
        src = self.source
        while self.pos < len(src):
            char = src[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = src.find("\n", self.pos)
                self.pos = len(src) if end < 0 else end
            else:
                return

    def _expect(self, text: str) -> None:
        if not self._peek(text):
            raise _Stop
        self.pos += len(text)

    # --- grammar -------------------------------------------------------------------------

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.source):
                return
            start = self.pos
            if self._peek("[["):
                self.pos += 2
                keys = self._key()
                self._expect("]]")
                parent = self._resolve(keys[:-1]) + (keys[-1],)
                index = self._array_tables.get(parent, 0)
                self._array_tables[parent] = index + 1
                table = parent + (index,)
                self._note(parent, start)
                self._note(table, start)
            elif self._peek("["):
                self.pos += 1
                table = self._resolve(self._key())
                self._expect("]")
                # `[variants.x]` is also where `variants` first appears.
                for end in range(1, len(table) + 1):
                    self._note(table[:end], start)
            else:
                self._key_value(table)

    def _resolve(self, keys: KeyPath) -> KeyPath:
        """A header's keys, with the current index inserted after every array of tables."""
        path: KeyPath = ()
        for key in keys:
            path += (key,)
            if path in self._array_tables:
                path += (self._array_tables[path] - 1,)
        return path

    def _key_value(self, table: KeyPath) -> None:
        start = self.pos
        keys = self._key()
        for end in range(1, len(keys) + 1):
            self._note(table + keys[:end], start)
        self._skip_blank(newlines=False)
        self._expect("=")
        self._skip_blank(newlines=False)
        self._value(table + keys)

    def _key(self) -> KeyPath:
        keys: list[str | int] = []
        while True:
            self._skip_blank(newlines=False)
            if self._peek('"') or self._peek("'"):
                keys.append(self._string())
            else:
                match = _BARE_KEY.match(self.source, self.pos)
                if not match:
                    raise _Stop
                keys.append(match.group())
                self.pos = match.end()
            self._skip_blank(newlines=False)
            if not self._peek("."):
                return tuple(keys)
            self.pos += 1

    def _value(self, path: KeyPath) -> None:
        if self._peek("["):
            self._array(path)
        elif self._peek("{"):
            self._inline_table(path)
        elif self._peek('"') or self._peek("'"):
            self._string()
        else:
            # Numbers, booleans, dates (which may hold a space): up to a separator or comment.
            match = _SCALAR.match(self.source, self.pos)
            if not match:
                raise _Stop
            self.pos = match.end()

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self._peek("]"):
                self.pos += 1
                return
            self._note(path + (index,), self.pos)
            self._value(path + (index,))
            self._skip_blank(newlines=True)
            if self._peek(","):
                self.pos += 1
                index += 1
            elif not self._peek("]"):
                raise _Stop

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            # Inline tables are one line in TOML 1.0; newlines are accepted here all the same,
            # as TOML 1.1 allows them and the scanner only has to find lines, not judge.
            self._skip_blank(newlines=True)
            if self._peek("}"):
                self.pos += 1
                return
            self._key_value(path)
            self._skip_blank(newlines=True)
            if self._peek(","):
                self.pos += 1
            elif not self._peek("}"):
                raise _Stop

    def _string(self) -> str:
        src = self.source
        for quote in ('"""', "'''"):
            if self._peek(quote):
                self._multi_line_string(quote)
                return ""  # multi-line strings are values, never keys
        if self._peek("'"):
            end = src.find("'", self.pos + 1)
            if end < 0:
                raise _Stop
            text = src[self.pos + 1 : end]
            self.pos = end + 1
            return text
        pos = self.pos + 1
        while pos < len(src) and src[pos] != '"':
            if src[pos] == "\n":
                raise _Stop
            pos += 2 if src[pos] == "\\" else 1
        if pos >= len(src):
            raise _Stop
        raw = src[self.pos + 1 : pos]
        self.pos = pos + 1
        return _ESCAPE.sub(_unescape, raw)

    def _multi_line_string(self, quote: str) -> None:
        src = self.source
        pos = self.pos + 3
        while pos < len(src):
            if quote == '"""' and src[pos] == "\\":
                pos += 2  # an escaped quote cannot close the string
            elif src.startswith(quote, pos):
                # Up to two quotes may sit just before the closing delimiter.
                run = 3
                while run < 5 and src.startswith(quote[0], pos + run):
                    run += 1
                self.pos = pos + run
                return
            else:
                pos += 1
        raise _Stop


def _unescape(match: re.Match[str]) -> str:
    escape = match.group()[1:]
    if escape[0] in "uU" and len(escape) > 1:
        code = int(escape[1:], 16)
        return chr(code) if code <= 0x10FFFF else match.group()  # invalid TOML: tomllib says so
    return _SIMPLE_ESCAPES.get(escape, escape)
