"""Transfer templates rendered for a source; what ``systemd-sysupdate list`` says."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.errors import ConfigError
from llmos.osupdate.request import DIR_SOURCE, URL_SOURCE, Source
from llmos.osupdate.sysupdate import (
    Row,
    parse_list,
    parse_list_json,
    parse_list_table,
    write_definitions,
)

TEMPLATE = """[Source]
Type=@SOURCE_TYPE@
Path=@SOURCE_PATH@
MatchPattern=llmos_@v.usr.raw
"""

# systemd 257, as printed on a terminal (UTF-8), columns as format-table aligns them
TABLE_257 = """\
  VERSION INSTALLED AVAILABLE ASSESSMENT
● 2           ✓         ✓     current
  1           ✓               installed
"""
# a non-UTF-8 locale: ASCII glyphs
TABLE_ASCII = """\
  VERSION INSTALLED AVAILABLE ASSESSMENT
* 10          +         +     current
  9           +               installed+obsolete
  11                    +     candidate
"""
# the shorthand of a bug report: columns collapsed, "-" for an empty cell
TABLE_LOOSE = """\
  VERSION INSTALLED AVAILABLE ASSESSMENT
● 2 ✓ ✓ current
  1 ✓ - obsolete
  3 - ✓ available
"""


def test_templates_are_rendered_into_a_fresh_folder(tmp_path: Path) -> None:
    templates, out = tmp_path / "t", tmp_path / "state" / "sysupdate.d"
    templates.mkdir()
    (templates / "50-usr.transfer.in").write_text(TEMPLATE)
    (templates / "60-uki.transfer.in").write_text(TEMPLATE.replace("usr.raw", "efi"))
    (templates / "README").write_text("not a template")
    out.mkdir(parents=True)
    (out / "stale.transfer").write_text("from an earlier run")
    written = write_definitions(templates, out, Source(URL_SOURCE, "http://h:8/u/"))
    assert [p.name for p in written] == ["50-usr.transfer", "60-uki.transfer"]
    assert sorted(p.name for p in out.iterdir()) == ["50-usr.transfer", "60-uki.transfer"]
    text = (out / "50-usr.transfer").read_text()
    assert "Type=url-file\nPath=http://h:8/u/\n" in text and "@" not in text.replace("@v", "")
    write_definitions(templates, out, Source(DIR_SOURCE, "/media/usb"))
    assert "Type=regular-file\nPath=/media/usb\n" in (out / "60-uki.transfer").read_text()


def test_no_templates_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no transfer templates"):
        write_definitions(tmp_path, tmp_path / "out", Source(URL_SOURCE, "http://h/"))


def test_the_json_of_list_names_the_newest_installed() -> None:
    assert parse_list_json('{"current":"2","all":["2","1"],"appstreamUrls":[]}') == "2"
    assert parse_list_json('{"current+pending":"3","all":["3","2"]}') == "3"
    assert parse_list_json('{"current":null,"all":[]}') is None
    with pytest.raises(ValueError):
        parse_list_json('[{"version": "2"}]')
    with pytest.raises(ValueError):
        parse_list_json(TABLE_257)


@pytest.mark.parametrize(("table", "rows"), [
    (TABLE_257, [Row("2", True, "current"), Row("1", True, "installed")]),
    (TABLE_ASCII, [Row("10", True, "current"), Row("9", True, "installed+obsolete"),
                   Row("11", False, "candidate")]),
    (TABLE_LOOSE, [Row("2", True, "current"), Row("1", True, ""), Row("3", False, "available")]),
])
def test_the_table_of_list_is_parsed(table: str, rows: list[Row]) -> None:
    assert parse_list_table(table) == rows


def test_without_a_known_assessment_the_check_mark_decides() -> None:
    table = ("  VERSION INSTALLED AVAILABLE ASSESSMENT\n"
             "  5           ✓               strange\n"
             "  6                     ✓     weird\n")
    assert parse_list_table(table) == [Row("5", True, ""), Row("6", False, "")]


def test_parse_list_takes_json_then_a_table() -> None:
    assert parse_list(['{"current":"2","all":["2"]}']) == "2"
    assert parse_list(["garbage", TABLE_ASCII]) == "10"
    with pytest.raises(ValueError):
        parse_list(["No update sets found.", ""])
