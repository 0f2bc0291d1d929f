"""The update request: sources validated and normalised, bad ones refused with the field."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from llmos.errors import BadRequestError, ConflictError
from llmos.osupdate.request import (
    DIR_SOURCE,
    URL_SOURCE,
    Request,
    Source,
    parse_request,
    parse_request_bytes,
    parse_source,
    submit,
)


def no_dirs(path: str) -> bool:
    return False


@pytest.mark.parametrize(("raw", "url"), [
    ("http://10.0.2.2:8080/updates", "http://10.0.2.2:8080/updates/"),
    ("https://updates.example.com/llmos/", "https://updates.example.com/llmos/"),
    ("HTTP://host", "http://host/"),
    ("  http://host:1/a/b  ", "http://host:1/a/b/"),
    ("http://[fd00::1]:8080/x", "http://[fd00::1]:8080/x/"),
])
def test_a_url_becomes_a_url_file_source_ending_in_a_slash(raw: str, url: str) -> None:
    assert parse_source(raw, no_dirs) == Source(URL_SOURCE, url)


@pytest.mark.parametrize("raw", [
    "http://user:pw@host/x", "http://host/a b", "http://host/a\"b", "http://host/a'b",
    "http://host/x?y=1", "http://host/x#f", "http://host/a\nb", "http://host:99999/",
    "http://", "http:///x", "ftp://host/x", "file:///etc", "relative/dir", "", "   ",
    "http://host/$(reboot)", "/dir/with space", "/a/../etc", "x" * 2000,
])
def test_anything_else_is_refused_naming_the_source(raw: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_source(raw, lambda p: True)
    assert caught.value.param == "source"


def test_a_local_directory_must_exist(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path) + "/", lambda p: Path(p).is_dir()) == \
        Source(DIR_SOURCE, str(tmp_path))
    with pytest.raises(BadRequestError, match="not an existing directory"):
        parse_source(str(tmp_path / "absent"), lambda p: Path(p).is_dir())


def test_requests_and_their_json() -> None:
    update = parse_request({"action": "update", "source": "http://h/u"}, no_dirs)
    assert update == Request("update", Source(URL_SOURCE, "http://h/u/"))
    assert json.loads(update.to_json()) == {"action": "update", "source": "http://h/u/"}
    assert parse_request_bytes(b'{"action": "reboot"}', no_dirs) == Request("reboot")
    for bad in (b"[]", b"not json", b'{"action": "format-disk"}', b"{}"):
        with pytest.raises(BadRequestError) as caught:
            parse_request_bytes(bad, no_dirs)
        assert caught.value.param == "action"
    with pytest.raises(BadRequestError) as caught:
        parse_request({"action": "update"}, no_dirs)
    assert caught.value.param == "source"


def test_submit_writes_once_and_refuses_while_pending(tmp_path: Path) -> None:
    path = tmp_path / "os-update" / "request"
    submit(path, Request("reboot"))
    assert json.loads(path.read_bytes()) == {"action": "reboot"}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConflictError):
        submit(path, Request("update", Source(URL_SOURCE, "http://h/")))
    assert json.loads(path.read_bytes()) == {"action": "reboot"}  # the first one stands
    assert [p.name for p in path.parent.iterdir()] == ["request"]  # no temporary left
