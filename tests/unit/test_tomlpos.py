"""Finding the line of a key path in TOML source."""

from __future__ import annotations

import tomllib

import pytest

from publisher.tomlpos import line_of, parse_error_line, parse_error_message

SOURCE = '''\
# a post
id = "hari-guru"
text = """
Selamat Hari Guru! [not.a.header]
key = "not a key" \\"""
"""
at = 2026-11-25 08:00:00 # a space-separated datetime
media = [
  { file = "a.jpg", alt = "first" },
  { file = "b.jpg", alt = 'second, with ] and }' },
]
to = ["x", "y",
      "z"]
a."b.c".d = 1

[variants.pemkot-x]
text = "short"
media = [{ file = "c.jpg" }]

[variants."quoted name"]
link = "https://example.go.id"

[[item]]
name = "one"

[[item]]
name = "two"

[item.detail]
size = 3
'''


def test_the_source_used_here_is_valid_toml() -> None:
    data = tomllib.loads(SOURCE)
    assert data["item"][1]["detail"]["size"] == 3


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("id",), 2),
        (("text",), 3),
        (("at",), 7),
        (("media",), 8),
        (("media", 0), 9),
        (("media", 0, "alt"), 9),
        (("media", 1, "alt"), 10),
        (("to", 0), 12),
        (("to", 2), 13),
        (("a", "b.c", "d"), 14),
        (("variants",), 16),
        (("variants", "pemkot-x"), 16),
        (("variants", "pemkot-x", "text"), 17),
        (("variants", "pemkot-x", "media", 0, "file"), 18),
        (("variants", "quoted name", "link"), 21),
        (("item", 0, "name"), 24),
        (("item", 1), 26),
        (("item", 1, "name"), 27),
        (("item", 1, "detail", "size"), 30),
    ],
)
def test_line_of_finds_keys_tables_and_array_elements(path: tuple[str | int, ...], line: int) -> None:
    assert line_of(SOURCE, path) == line


def test_line_of_ignores_headers_and_keys_inside_multi_line_strings() -> None:
    assert line_of(SOURCE, ("not", "a", "header")) is None
    assert line_of(SOURCE, ("key",)) is None


def test_line_of_falls_back_to_the_nearest_parent_that_is_written() -> None:
    assert line_of(SOURCE, ("media", 7, "file")) == 8  # no 8th element: the `media` line
    assert line_of(SOURCE, ("variants", "pemkot-x", "title")) == 16  # the table's header
    assert line_of(SOURCE, ("nowhere",)) is None


def test_line_of_finds_what_comes_before_an_error_in_invalid_toml() -> None:
    source = 'to = ["x"]\ntext = "open\nlink = 1\n'
    assert line_of(source, ("to",)) == 1
    assert line_of(source, ("link",)) is None


def test_parse_error_line_reads_the_line_from_the_message() -> None:
    with pytest.raises(tomllib.TOMLDecodeError) as caught:
        tomllib.loads('id = "x"\n\nto = [1,,]\n')
    assert parse_error_line(caught.value) == 3
    assert parse_error_message(caught.value) == "Invalid value"


def test_parse_error_line_at_the_end_of_the_document_is_the_last_line_when_the_source_is_given() -> None:
    source = 'id = "x"\nto = ["a",\n'
    with pytest.raises(tomllib.TOMLDecodeError) as caught:
        tomllib.loads(source)
    assert parse_error_line(caught.value) is None
    assert parse_error_line(caught.value, source) == 2
    assert parse_error_message(caught.value) == "Invalid value"
