"""`siar import`: a content calendar (CSV, or XLSX when openpyxl is installed) made into post files.

Each row becomes one TOML post file and is validated by the very reader the daemon and `siar check`
use (`publisher.posts.load_post`), so a row is accepted exactly when the file it makes would be.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import time as clock
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from publisher.posts import AdapterCache, load_post, scan_posts
from publisher.redact import redact
from publisher.settings import Settings, find_config_dir, load_settings

OK, PROBLEMS, USAGE = 0, 1, 2

COLUMNS = ("date", "time", "accounts", "text", "media", "link", "alt", "id", "title")
REQUIRED = ("date", "time", "accounts", "text")
PROGRESS_MIN_ROWS = 100  # smaller calendars finish before a bar would be worth drawing
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_TIME = re.compile(r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?")
_DAY_FIRST = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")
_SLUG_WORDS = 6
_SLUG_MAX = 60


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowProblem:
    """One problem with one row; `row` is the spreadsheet's row number (the header is row 1)."""

    source: str
    row: int
    column: str | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        column = f"{self.column}: " if self.column else ""
        return f"{self.source}:{self.row}: {self.severity}: {column}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


@dataclass(frozen=True)
class Planned:
    """A valid row: the post file it makes."""

    row: int
    post_id: str
    path: Path
    toml: str
    at: datetime  # as written: naive means the daemon's time zone
    accounts: tuple[str, ...]
    text: str
    unchanged: bool  # the file exists already with this very content


@dataclass
class ImportResult:
    rows: int = 0
    planned: list[Planned] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def bad_rows(self) -> set[int]:
        return {p.row for p in self.problems if p.is_error}


class CalendarUnreadable(Exception):
    """The file cannot be read as a calendar at all (encoding, format, header)."""


# --- TOML, written by hand so that every string is escaped exactly --------------------------


_BASIC_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or code == 0x7F


def toml_string(value: str) -> str:
    """A TOML basic string (one line)."""
    out = []
    for char in value:
        if char in _BASIC_ESCAPES:
            out.append(_BASIC_ESCAPES[char])
        elif _control(char):
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_multiline(value: str) -> str:
    """A TOML multi-line basic string, as an operator writes post text.

    TOML drops the newline right after the opening delimiter; the one before the closing
    delimiter stays in the value (the post reader strips it), and it keeps a quote at the end of
    the text from touching the delimiter. A third quote in a row is escaped so no run of quotes
    can close the string early.
    """
    out = []
    quotes = 0
    for char in value.replace("\r\n", "\n").replace("\r", "\n"):
        if char == '"':
            quotes += 1
            if quotes == 3:
                out.append('\\"')
                quotes = 0
            else:
                out.append('"')
            continue
        quotes = 0
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\t":
            out.append(char)
        elif _control(char):
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"""\n' + "".join(out) + '\n"""'


def post_toml(
    *, post_id: str, at: datetime, to: Sequence[str], text: str, link: str | None, title: str | None,
    media: Sequence[tuple[str, str | None]], source: str, row: int,
) -> str:
    """The post file for one row, in the layout of the operators' own files."""
    # The calendar's file name only: a path from the operator's own machine does not belong in a
    # file that a shared repository keeps.
    name = Path(source).name.replace("\n", " ")
    lines = [f"# Imported from {name}, row {row}.", f"id = {toml_string(post_id)}"]
    lines.append(f"at = {at.isoformat()}")
    lines.append("to = [" + ", ".join(toml_string(name) for name in to) + "]")
    if title is not None:
        lines.append(f"title = {toml_string(title)}")
    lines.append("text = " + (toml_multiline(text) if "\n" in text or "\r" in text else toml_string(text)))
    if link is not None:
        lines.append(f"link = {toml_string(link)}")
    if media:
        lines.append("media = [")
        for file, alt in media:
            alt_part = f", alt = {toml_string(alt)}" if alt is not None else ""
            lines.append(f"  {{ file = {toml_string(file)}{alt_part} }},")
        lines.append("]")
    return "\n".join(lines) + "\n"


# --- reading the calendar ------------------------------------------------------------------------


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (lower-cased) and each non-blank row with its spreadsheet row number."""
    if path.suffix.lower() == ".xlsx":
        header, rows = _read_xlsx(path)
    else:
        header, rows = _read_csv(path)
    header = [cell.strip().lower() for cell in header]
    return header, [(number, cells) for number, cells in rows if any(cell.strip() for cell in cells)]


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        # utf-8-sig: spreadsheets put a byte-order mark before the first column's name.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CalendarUnreadable(
            f"is not UTF-8 text (byte {exc.start}); save it from the spreadsheet as \"CSV UTF-8\""
        ) from None
    if not text.strip():
        raise CalendarUnreadable("is empty; the first row names the columns: " + ", ".join(COLUMNS))
    first_line = text.splitlines()[0]
    # Spreadsheets in locales with a decimal comma (Indonesian among them) save CSV with `;`.
    delimiter = max((",", ";", "\t"), key=lambda d: sum(c.strip().lower() in COLUMNS for c in first_line.split(d)))
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    # A record is a spreadsheet row even when a quoted cell spans several lines of the file.
    return records[0], list(enumerate(records[1:], start=2))


def _read_xlsx(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        import openpyxl
    except ImportError:
        raise CalendarUnreadable(
            "is a spreadsheet (.xlsx) and openpyxl is not installed: `pip install openpyxl`, "
            "or save the sheet as CSV UTF-8"
        ) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged or foreign file
        raise CalendarUnreadable(f"cannot be read as a spreadsheet: {exc}") from None
    try:
        sheet = book.worksheets[0]  # the first sheet, not whichever was last selected
        rows = [list(values) for values in sheet.iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        raise CalendarUnreadable("has an empty first sheet; its first row names the columns: " + ", ".join(COLUMNS))
    header = [_cell_text(value) for value in rows[0]]
    return header, [(number, [_cell_text(value) for value in values]) for number, values in enumerate(rows[1:], 2)]


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV export would hold, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- one row -------------------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    cells: dict[str, str]
    problems: list[RowProblem]
    source: str
    at_column: str = "time"  # where the time came from, for problems about `at`

    def get(self, column: str) -> str:
        return self.cells.get(column, "").strip()

    def problem(self, column: str | None, message: str, severity: str = "error") -> None:
        self.problems.append(RowProblem(self.source, self.number, column, message, severity))


def _parse_when(row: _Row) -> datetime | None:
    """The row's date and time as a datetime (naive: the daemon's time zone)."""
    date_text, time_text = row.get("date"), row.get("time")
    if not date_text:
        row.problem("date", "is empty; write the day like 2026-11-25")
        return None
    try:
        day = date.fromisoformat(date_text)
    except ValueError:
        day = None
    if day is None:
        try:
            moment = datetime.fromisoformat(date_text)
        except ValueError:
            hint = ""
            if _DAY_FIRST.fullmatch(date_text):
                hint = "; spreadsheets disagree on day/month order, so only year-month-day is read"
            row.problem("date", f"expected a date like 2026-11-25 (year-month-day), got {date_text!r}{hint}")
            return None
        if time_text:
            row.problem("time", f"the date {date_text!r} already holds a time; leave one of them")
            return None
        row.at_column = "date"
        return moment
    if not time_text:
        row.problem("time", "is empty; write the time like 08:00")
        return None
    match = _TIME.fullmatch(time_text)
    try:
        if match is None:
            raise ValueError
        hour, minute, second = (int(part) if part else 0 for part in match.groups())
        return datetime.combine(day, time(hour, minute, second))
    except ValueError:
        row.problem("time", f"expected a time like 08:00 (24-hour), got {time_text!r}")
        return None


def _split(text: str, separators: str) -> list[str]:
    return [item.strip() for item in re.split(f"[{re.escape(separators)}]", text)] if text.strip() else []


def _media(row: _Row) -> list[tuple[str, str | None]]:
    """The media files with their alt texts; problems noted, and the files that can be checked
    kept, so the post reader still judges them."""
    files = _split(row.get("media"), ";")
    alts = _split(row.get("alt"), ";")
    while files and not files[-1]:
        files.pop()  # a trailing `;` is a habit, not an empty item
    while alts and not alts[-1]:
        alts.pop()
    for index, file in enumerate(files):
        if not file:
            row.problem("media", f"item {index + 1} is empty (files are separated by ';')")
    if len(alts) > len(files):
        row.problem("alt", f"has {len(alts)} texts for {len(files)} media file{'' if len(files) == 1 else 's'}; "
                           "give one per file, "
                           "in the same order, separated by ';'")
    return [(file, alts[index] if index < len(alts) and alts[index] else None)
            for index, file in enumerate(files) if file]


def slug(day: date | None, text: str, fallback: str = "post") -> str:
    """A file-safe id from the date and the first words of the text: `2026-11-25-selamat-hari-guru`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)[:_SLUG_WORDS]
    body = "-".join(words) or fallback
    prefix = f"{day.isoformat()}-" if day else ""
    result = prefix + body
    while len(result) > _SLUG_MAX and "-" in body:
        body = body.rsplit("-", 1)[0]
        result = prefix + body
    return result[:_SLUG_MAX]


# --- the import ----------------------------------------------------------------------------------


ProgressHook = Callable[[int, int], None]  # (rows done, rows in all)


def import_calendar(
    source: Path, settings: Settings, into: Path, *, dry_run: bool = False,
    progress: ProgressHook | None = None, shown_as: str | None = None,
) -> ImportResult:
    """Validate every row; unless `dry_run`, write the post file of every row without errors.

    Raises CalendarUnreadable when the file is not a calendar at all.
    """
    name = shown_as or str(source)
    header, rows = read_table(source)
    result = ImportResult(rows=len(rows))
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise CalendarUnreadable(
            f"the header row lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(it has: {', '.join(c for c in header if c) or 'nothing'}; known: {', '.join(COLUMNS)})"
        )
    for column in dict.fromkeys(c for c in header if c and c not in COLUMNS):
        result.problems.append(RowProblem(name, 1, None, f"column {column!r} is not imported "
                                                         f"(known: {', '.join(COLUMNS)})", "warning"))
    existing = _existing_ids(settings)
    adapters = AdapterCache(settings)
    taken: dict[str, int] = {}  # id → the row that has it
    with _scratch_file(into) as scratch:
        for done, (number, cells) in enumerate(rows, start=1):
            row = _Row(number, {}, result.problems, name)
            if len(cells) > len(header):
                row.problem(None, f"has {len(cells)} cells but the header has {len(header)} columns "
                                  "(a cell with a separator in it needs quotes)")
            else:
                row.cells = {column: cells[i] if i < len(cells) else "" for i, column in enumerate(header) if column}
                planned = _plan(row, settings, into, scratch, adapters, existing, taken)
                if planned is not None:
                    result.planned.append(planned)
            if progress is not None:
                progress(done, len(rows))
    result.problems.sort(key=lambda p: (p.row, COLUMNS.index(p.column) if p.column in COLUMNS else -1))
    if not dry_run:
        for planned in result.planned:
            if not planned.unchanged:
                _write_atomically(planned.path, planned.toml)
                result.written.append(planned.path)
    return result


def _plan(
    row: _Row, settings: Settings, into: Path, scratch: Path, adapters: AdapterCache,
    existing: dict[str, Path], taken: dict[str, int],
) -> Planned | None:
    before = len(row.problems)
    at = _parse_when(row)
    media = _media(row)
    to = [name for name in _split(row.get("accounts"), ",;") if name]
    text = row.get("text").replace("\r\n", "\n").replace("\r", "\n")
    given_id = row.get("id")
    if given_id and not _ID.fullmatch(given_id):
        row.problem("id", f"{given_id!r} cannot name a file: use letters, digits, '.', '-' and '_' "
                          "(at most 120), starting with a letter or digit")
        given_id = ""
    post_id = given_id or _free_slug(at, text, media, taken)
    if given_id and given_id in taken:
        row.problem("id", f"{given_id!r} is also the id of row {taken[given_id]}")
    taken.setdefault(post_id, row.number)
    # With a problem already found the row is not written, but the post reader still checks the
    # other columns (a placeholder stands in for a time that could not be read).
    ok = at is not None and len(row.problems) == before
    at = at or datetime(2000, 1, 1)
    toml = post_toml(post_id=post_id, at=at, to=to, text=text, link=row.get("link") or None,
                     title=row.get("title") or None, media=media, source=row.source, row=row.number)
    scratch.write_text(toml, encoding="utf-8")
    _spec, found = load_post(scratch, settings, adapters=adapters)
    for problem in found:
        if problem.field == "at" and not ok:
            continue  # a placeholder time; the real problem is reported already
        column, message = _column(problem.field, problem.message, row, media)
        row.problem(column, message, problem.severity)
    target = into / f"{post_id}.toml"
    unchanged = False
    other = existing.get(post_id)
    if other is not None and other != target:
        row.problem("id", f"{post_id!r} is already the id of {_shown(other)}; ids must be unique")
    elif target.exists():
        unchanged = _same_post(target, toml)
        if not unchanged:
            row.problem("id", f"{_shown(target)} exists with other content; edit or remove that file, "
                              "or give this row another id")
    if not ok or any(p.is_error for p in row.problems[before:]):
        return None
    return Planned(row=row.number, post_id=post_id, path=target, toml=toml, at=at, accounts=tuple(to),
                   text=text.strip(), unchanged=unchanged)


def _free_slug(at: datetime | None, text: str, media: list[tuple[str, str | None]], taken: dict[str, int]) -> str:
    """The row's slug; `-2`, `-3`… when an earlier row of this calendar has it already.

    Rows are numbered in calendar order, so importing the same calendar again gives the same ids
    (and finds its files unchanged). A slug another file holds is not worked around but reported:
    that file may be this row before an edit, and two posts must not come of one row.
    """
    fallback = Path(media[0][0]).stem if media else "post"
    base = slug(at.date() if at else None, text, fallback)
    candidate, counter = base, 1
    while candidate in taken:
        counter += 1
        candidate = f"{base}-{counter}"
    return candidate


def _column(field_path: str | None, message: str, row: _Row, media: list[tuple[str, str | None]]) -> tuple[str | None, str]:
    """The calendar column a post-file problem belongs to, and its message there."""
    if not field_path:
        return None, message
    root = re.match(r"[^.\[]+", field_path)
    key = root.group() if root else field_path
    index = re.search(r"\[(\d+)\]", field_path)
    if key == "media":
        column = "alt" if field_path.endswith(".alt") else "media"
        if index and len(media) > 1:
            message = f"item {int(index.group(1)) + 1}: {message}"
        return column, message
    columns = {"at": row.at_column, "to": "accounts", "text": "text", "link": "link", "title": "title", "id": "id"}
    return columns.get(key, key), message


def _existing_ids(settings: Settings) -> dict[str, Path]:
    """The id of every valid post file there is now, with its path."""
    scan = scan_posts(settings, platform_checks=False)
    return {post_id: settings.posts_dir / spec.path for post_id, spec in scan.posts.items()}


def _same_post(path: Path, toml: str) -> bool:
    """Whether the file holds this post; comments and layout aside."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) == tomllib.loads(toml)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


@contextmanager
def _scratch_file(into: Path) -> Iterator[Path]:
    """A hidden file in the target folder to validate each row in.

    It sits where the real file will, so rules that depend on the folder (a team's folder may
    only target its own accounts) judge it as they will judge the real file; the leading dot
    keeps the daemon's sync and `siar check` from ever reading it. Folders made for it alone
    (a dry run into a new folder) are removed again.
    """
    made: list[Path] = []
    folder = into
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    into.mkdir(parents=True, exist_ok=True)
    scratch = into / f".siar-import-{os.getpid()}.toml"
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)
        for folder in made:
            try:
                folder.rmdir()  # only if still empty: a real run has written into it
            except OSError:
                break


def _write_atomically(path: Path, text: str) -> None:
    """A running daemon syncing meanwhile sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _shown(path: Path) -> str:
    """A path as the operator typed it, more or less: relative to the working folder when inside it."""
    base = Path.cwd()
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line bar on stderr for big calendars; silent when stderr is not a terminal (logs, CI)."""

    def __init__(self, label: str, stream: IO[str] | None = None, *,
                 min_total: int = PROGRESS_MIN_ROWS, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.width = width
        self.min_total = min_total
        self.drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_total or not _is_terminal(self.stream):
            return
        now = clock.monotonic()
        if done < total and now - self._last < 0.1:
            return  # redrawing for every row would cost more than the rows
        self._last = now
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {100 * done // total:3d}%")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            # Clear the bar so the report that follows starts on a clean line.
            self.stream.write("\r" + " " * (len(self.label) + self.width + 24) + "\r")
            self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- the command ---------------------------------------------------------------------------------

HELP = "turn a content calendar (CSV or XLSX) into post files"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common_parent: argparse.ArgumentParser) -> None:
    """Add `siar import FILE [--dry-run] [--into DIR]`."""
    parser = subparsers.add_parser(
        "import", parents=[common_parent], help=HELP,
        description=HELP + ". Columns: date, time, accounts, text, media, link, alt (and optionally "
        "id, title). Each row is checked as a post file is; rows with problems are not written.",
    )
    parser.add_argument("file", metavar="FILE", help="the calendar: .csv (UTF-8) or .xlsx (needs openpyxl)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing: show each file that would be written and every problem")
    parser.add_argument("--into", metavar="DIR",
                        help="folder for the files, inside the posts folder; a relative path is taken from "
                             "the configuration folder, like posts/2026-11 (default: the posts folder)")
    parser.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    settings = load_settings(find_config_dir(getattr(args, "config", None)))
    source = Path(args.file)
    if not source.is_file():
        return _usage(err, f"{source}: no such file")
    if source.suffix.lower() not in (".csv", ".xlsx", ".txt", ".tsv"):
        return _usage(err, f"{source}: expected a .csv or .xlsx file")
    into = Path(os.path.abspath(settings.config_dir / args.into)) if args.into else settings.posts_dir
    if not into.is_relative_to(settings.posts_dir):
        return _usage(err, f"--into {args.into}: {into} is not inside the posts folder {settings.posts_dir}, "
                           "so the daemon would never read the files (a relative path is taken from "
                           f"the configuration folder {settings.config_dir})")
    try:
        bar = Progress(f"importing {source.name}", err)
        try:
            result = import_calendar(source, settings, into, dry_run=args.dry_run, progress=bar, shown_as=str(source))
        finally:
            bar.close()
    except CalendarUnreadable as exc:
        print(redact(f"{source}: error: {exc}"), file=out)
        return PROBLEMS

    if args.dry_run:
        for planned in result.planned:
            aware = planned.at if planned.at.tzinfo else planned.at.replace(tzinfo=settings.timezone)
            when = aware.strftime("%a %Y-%m-%d %H:%M %z")
            first = planned.text.splitlines()[0] if planned.text else "(media only)"
            verb = "unchanged" if planned.unchanged else "would write"
            print(redact(f"{verb} {_shown(planned.path)}: {when} to {', '.join(planned.accounts)}: "
                         f"{_short(first)}"), file=out)
    for problem in result.problems:
        print(redact(str(problem)), file=out)
    bad = len(result.bad_rows)
    unchanged = sum(1 for planned in result.planned if planned.unchanged)
    written = len(result.planned) - unchanged
    parts = [f"{result.rows} rows", f"{written} {'to write' if args.dry_run else 'written'} to {_shown(into)}"]
    if unchanged:
        parts.append(f"{unchanged} unchanged")
    if bad:
        parts.append(f"{bad} with problems (not {'to be ' if args.dry_run else ''}written)")
    print(redact(f"{source}: " + ", ".join(parts) + (" (dry run: nothing written)" if args.dry_run else "")), file=out)
    return PROBLEMS if bad else OK


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage(err: IO[str], message: str) -> int:
    print(redact(f"siar import: error: {message}"), file=err)
    return USAGE
