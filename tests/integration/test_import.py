"""`siar import`: a content calendar becomes post files that pass `siar check`; every bad row is
named with its row and column, is not written, and a dry run writes nothing at all."""

from __future__ import annotations

import argparse
import csv
import io
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher import importer
from tests.support import media as media_files
from tests.support.process import run_siar

HEADER = ["date", "time", "accounts", "text", "media", "link", "alt", "id", "title"]
LINE = re.compile(r"^(?P<file>[^:]+):(?P<row>\d+): (?P<severity>error|warning): (?P<column>[a-z]+): (?P<message>.+)$")


def siar_import(workspace, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`siar import …` through a parser built from the module's own `register`, in-process."""
    parser = argparse.ArgumentParser(prog="siar")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    importer.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["import", *argv, "--config", str(workspace.root)])
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=HEADER, delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def good_row(i: int) -> dict[str, str]:
    """Row i of a realistic calendar: quotes, commas, backslashes, several lines, emoji, media."""
    day = 1 + i % 28
    text = f'Info #{i}: jadwal "Posyandu", Kelurahan {i % 7}; bawa KTP \\ KK 😀'
    if i % 3 == 0:
        text += f"\nBaris kedua untuk pengumuman {i}.\n\nSalam, Humas"
    return {
        "date": f"2027-01-{day:02d}",
        "time": f"{8 + i % 10:02d}:{(i * 7) % 60:02d}",
        "accounts": "latihan; arsip" if i % 2 else "latihan,arsip",
        "text": text,
        "media": "peta.png;foto.jpg" if i % 5 == 0 else ("peta.png" if i % 5 == 1 else ""),
        "link": f"https://example.go.id/info/{i}" if i % 4 == 0 else "",
        "alt": "Peta lokasi;Foto petugas" if i % 5 == 0 else ("Peta lokasi" if i % 5 == 1 else ""),
        "id": f"info-{i}" if i % 10 == 0 else "",
        "title": "",
    }


# Row index (0-based among data rows) → what is wrong with it and the column it must be reported in.
BAD_ROWS: dict[int, tuple[dict[str, str], str, str]] = {
    17: ({"date": "25/01/2027"}, "date", "year-month-day"),
    120: ({"time": "8 pagi"}, "time", "expected a time like 08:00"),
    233: ({"accounts": "latihan; pemkot-zz"}, "accounts", "unknown account 'pemkot-zz'"),
    301: ({"media": "tidak-ada.png", "alt": "x"}, "media", "'tidak-ada.png' is not in the media folder"),
    402: ({"text": "   ", "media": "", "alt": ""}, "text", "is empty and there is no media"),
    555: ({"link": "bukan tautan"}, "link", "expected an http(s) URL"),
    640: ({"media": "peta.png", "alt": "satu;dua"}, "alt", "has 2 texts for 1 media file;"),
    777: ({"id": "info-10"}, "id", "is also the id of row 12"),
    888: ({"media": "peta.png", "alt": "a" * 1001}, "alt", "the limit is 1000"),
    990: ({"media": "../siar.toml", "alt": ""}, "media", "outside the media folder"),
}


def calendar(path: Path, rows: int = 1000) -> Path:
    data = [good_row(i) for i in range(rows)]
    for index, (change, _column, _words) in BAD_ROWS.items():
        data[index].update(change)
    return write_csv(path, data)


@pytest.fixture
def stocked(workspace):
    media_files.write(workspace.root / "media", "peta.png", media_files.png_bytes())
    media_files.write(workspace.root / "media", "foto.jpg", media_files.jpeg_bytes())
    return workspace


def toml_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.toml")) if folder.exists() else []


@pytest.mark.slow  # `siar check` runs as a subprocess
def test_a_thousand_row_calendar_with_ten_bad_rows_writes_990_files_names_ten_errors_and_passes_check(
    stocked, tmp_path, capsys
):
    source = calendar(tmp_path / "kalender.csv")

    code, out, err = siar_import(stocked, str(source), "--into", "posts/2027-01", capsys=capsys)

    assert code == 1
    assert err == ""  # stderr is no terminal here: no progress bar
    errors = [LINE.match(line) for line in out.splitlines() if ": error: " in line]
    assert all(errors), out
    # Spreadsheet rows: the header is row 1, data row i is row i + 2.
    assert {(int(m["row"]), m["column"]) for m in errors} == {(i + 2, col) for i, (_, col, _) in BAD_ROWS.items()}
    for match in errors:
        assert match["file"] == str(source)
        assert BAD_ROWS[int(match["row"]) - 2][2] in match["message"], match.string
    assert out.splitlines()[-1] == f"{source}: 1000 rows, 990 written to {stocked.root / 'posts' / '2027-01'}, " \
                                   "10 with problems (not written)"

    written = toml_files(stocked.root / "posts")
    assert len(written) == 990
    assert not list((stocked.root / "posts").rglob(".*"))  # no scratch or temporary file left behind
    ids = {tomllib.loads(path.read_text(encoding="utf-8"))["id"] for path in written}
    assert len(ids) == 990 and "info-10" in ids and "info-770" in ids

    check = run_siar(stocked.root, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "no problems found"


def test_a_dry_run_writes_nothing_and_shows_each_file_it_would_write_and_every_problem(stocked, tmp_path, capsys):
    source = calendar(tmp_path / "kalender.csv")

    code, out, _err = siar_import(stocked, str(source), "--into", "posts/2027-01", "--dry-run", capsys=capsys)

    assert code == 1
    assert toml_files(stocked.root / "posts") == []
    assert not (stocked.root / "posts" / "2027-01").exists()  # not even the folder
    would = [line for line in out.splitlines() if line.startswith("would write ")]
    assert len(would) == 990
    assert len([line for line in out.splitlines() if ": error: " in line]) == 10
    assert "(dry run: nothing written)" in out.splitlines()[-1]
    first = next(line for line in would if "/info-0.toml" in line)
    assert first.endswith("Fri 2027-01-01 08:00 +0700 to latihan, arsip: Info #0: jadwal \"Posyandu\", "
                          "Kelurahan 0; bawa KTP \\ KK 😀")


def test_a_written_file_holds_exactly_what_the_row_said_escaped_for_toml(stocked, tmp_path, capsys):
    source = write_csv(tmp_path / "k.csv", [good_row(0), good_row(1)])

    code, out, _ = siar_import(stocked, str(source), capsys=capsys)

    assert code == 0, out
    path = stocked.root / "posts" / "info-0.toml"
    raw = path.read_text(encoding="utf-8")
    assert 'text = """\n' in raw  # several lines are written as a multi-line string
    data = tomllib.loads(raw)
    assert data == {
        "id": "info-0",
        "at": tomllib.loads("x = 2027-01-01T08:00:00")["x"],
        "to": ["latihan", "arsip"],
        "text": good_row(0)["text"] + "\n",  # the line before the closing quotes; the reader strips it
        "link": "https://example.go.id/info/0",
        "media": [{"file": "peta.png", "alt": "Peta lokasi"}, {"file": "foto.jpg", "alt": "Foto petugas"}],
    }
    assert raw.startswith("# Imported from k.csv, row 2.\n")
    second = tomllib.loads((stocked.root / "posts" / "2027-01-02-info-1-jadwal-posyandu-kelurahan-1.toml").read_text())
    assert second["to"] == ["latihan", "arsip"] and second["text"] == good_row(1)["text"]


def test_importing_the_same_calendar_again_finds_every_file_unchanged_and_rewrites_none(stocked, tmp_path, capsys):
    source = write_csv(tmp_path / "k.csv", [good_row(i) for i in range(6)])
    assert siar_import(stocked, str(source), capsys=capsys)[0] == 0
    before = {p: p.stat().st_mtime_ns for p in toml_files(stocked.root / "posts")}

    code, out, _ = siar_import(stocked, str(source), capsys=capsys)

    assert code == 0, out
    assert out.strip().endswith("6 rows, 0 written to " + str(stocked.root / "posts") + ", 6 unchanged")
    assert {p: p.stat().st_mtime_ns for p in toml_files(stocked.root / "posts")} == before


def test_a_row_whose_file_was_imported_before_with_other_content_is_refused_not_doubled(stocked, tmp_path, capsys):
    row = good_row(1)
    assert siar_import(stocked, str(write_csv(tmp_path / "k.csv", [row])), capsys=capsys)[0] == 0
    # The operator fixes a typo late in the text: same date and first words, so the same id.
    row["text"] = row["text"].replace("KK", "Kartu Keluarga")

    code, out, _ = siar_import(stocked, str(write_csv(tmp_path / "k.csv", [row])), capsys=capsys)

    assert code == 1
    assert "k.csv:2: error: id: " in out and "exists with other content" in out
    assert len(toml_files(stocked.root / "posts")) == 1  # never a second post of one row


def test_an_id_another_post_file_already_has_is_an_error_naming_that_file(stocked, tmp_path, capsys):
    stocked.post("lama.toml", 'id = "info-0"\nto = ["latihan"]\ntext = "Lama"\n')

    code, out, _ = siar_import(stocked, str(write_csv(tmp_path / "k.csv", [good_row(0)])), capsys=capsys)

    assert code == 1
    assert re.search(r"k\.csv:2: error: id: 'info-0' is already the id of .*lama\.toml; ids must be unique", out)


def test_a_semicolon_separated_calendar_from_an_indonesian_spreadsheet_is_read_the_same(stocked, tmp_path, capsys):
    source = tmp_path / "k.csv"
    source.write_text("\ufeff" + "Date;Time;Accounts;Text\n2027-02-01;07.30;latihan;Apel pagi, semua hadir\n",
                      encoding="utf-8")

    code, out, _ = siar_import(stocked, str(source), capsys=capsys)

    assert code == 0, out
    (path,) = toml_files(stocked.root / "posts")
    assert path.name == "2027-02-01-apel-pagi-semua-hadir.toml"
    data = tomllib.loads(path.read_text())
    assert data["text"] == "Apel pagi, semua hadir" and data["to"] == ["latihan"]
    assert data["at"].isoformat() == "2027-02-01T07:30:00"


def test_a_calendar_without_a_required_column_writes_nothing_and_says_which(stocked, tmp_path, capsys):
    source = tmp_path / "k.csv"
    source.write_text("date,text\n2027-02-01,Halo\n")

    code, out, _ = siar_import(stocked, str(source), capsys=capsys)

    assert code == 1
    assert out.strip() == f"{source}: error: the header row lacks the columns time, accounts (it has: date, text; " \
                          "known: date, time, accounts, text, media, link, alt, id, title)"


def test_a_calendar_that_is_not_utf8_is_refused_with_how_to_save_it(stocked, tmp_path, capsys):
    source = tmp_path / "k.csv"
    source.write_bytes("date,time,accounts,text\n2027-02-01,08:00,latihan,Caf\u00e9\n".encode("latin-1"))

    code, out, _ = siar_import(stocked, str(source), capsys=capsys)

    assert code == 1 and "is not UTF-8 text" in out and "CSV UTF-8" in out


def test_into_a_folder_outside_the_posts_folder_is_bad_usage(stocked, tmp_path, capsys):
    source = write_csv(tmp_path / "k.csv", [good_row(0)])

    code, _out, err = siar_import(stocked, str(source), "--into", "media", capsys=capsys)

    assert code == 2
    assert "is not inside the posts folder" in err
    assert toml_files(stocked.root / "media") == toml_files(stocked.root / "posts") == []


def test_a_team_folder_rule_is_applied_to_rows_imported_into_that_folder(stocked, tmp_path, capsys):
    stocked.add_settings('\n[teams.utara]\nfolder = "posts/utara"\naccounts = ["latihan"]\n')
    rows = [good_row(1), {**good_row(3), "accounts": "latihan"}]

    code, out, _ = siar_import(stocked, str(write_csv(tmp_path / "k.csv", rows)), "--into", "posts/utara",
                               capsys=capsys)

    assert code == 1
    assert re.search(r"k\.csv:2: error: accounts: account 'arsip' does not belong to team 'utara'", out), out
    assert [p.parent.name for p in toml_files(stocked.root / "posts")] == ["utara"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_only_on_a_terminal_and_only_for_big_calendars():
    terminal = FakeTerminal()
    bar = importer.Progress("importing k.csv", terminal)
    for done in range(1, 501):
        bar(done, 500)
    bar.close()
    drawn = terminal.getvalue()
    assert drawn.startswith("\rimporting k.csv [")
    assert "[##############################] 500/500 100%" in drawn  # the last row is always drawn
    assert drawn.count("\r") < 60  # redrawn at most ten times a second, not per row
    assert drawn.endswith("\r")  # and cleared

    small = FakeTerminal()
    importer.Progress("x", small)(5, 10)
    piped = io.StringIO()
    importer.Progress("x", piped)(500, 500)
    assert small.getvalue() == "" and piped.getvalue() == ""


def test_an_xlsx_calendar_is_read_with_its_date_and_time_cells(stocked, tmp_path, capsys):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl is optional: .xlsx import needs it")
    from datetime import date, time

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Date", "Time", "Accounts", "Text", "Media", "Alt"])
    sheet.append([date(2027, 3, 1), time(9, 15), "latihan", "Dari lembar kerja", "peta.png", "Peta"])
    sheet.append([date(2027, 3, 2), time(9, 15), "pemkot-zz", "Akun salah", None, None])
    book.save(tmp_path / "k.xlsx")

    code, out, _ = siar_import(stocked, str(tmp_path / "k.xlsx"), capsys=capsys)

    assert code == 1
    assert f"{tmp_path / 'k.xlsx'}:3: error: accounts: unknown account 'pemkot-zz'" in out
    (path,) = toml_files(stocked.root / "posts")
    data = tomllib.loads(path.read_text())
    assert data["at"].isoformat() == "2027-03-01T09:15:00" and data["media"] == [{"file": "peta.png", "alt": "Peta"}]


# --- the TOML writer -----------------------------------------------------------------------------

# Any text an operator could paste, control characters and runs of quotes included.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_any_string_survives_the_toml_writer_unchanged(value):
    assert tomllib.loads(f"v = {importer.toml_string(value)}")["v"] == value
    normalised = value.replace("\r\n", "\n").replace("\r", "\n")
    assert tomllib.loads(f"v = {importer.toml_multiline(value)}")["v"] == normalised + "\n"


def test_quotes_at_the_edges_and_in_runs_do_not_close_a_multiline_string_early():
    for value in ['"', '""', '"""', '""""""', 'a"""b', 'ends with "', '\\"""', "\\"]:
        assert tomllib.loads(f"v = {importer.toml_multiline(value)}")["v"] == value + "\n"


def test_the_id_of_a_row_without_one_is_a_slug_of_its_date_and_first_words():
    from datetime import date

    assert importer.slug(date(2026, 11, 25), "Selamat Hari Guru Nasional! Terima kasih guru-guru") == \
        "2026-11-25-selamat-hari-guru-nasional-terima-kasih"
    assert importer.slug(date(2026, 11, 25), "Ça va? Ñandú — 😀") == "2026-11-25-ca-va-nandu"
    assert importer.slug(date(2026, 11, 25), "", "peta") == "2026-11-25-peta"
    assert len(importer.slug(date(2026, 11, 25), "x" * 200)) == 60
