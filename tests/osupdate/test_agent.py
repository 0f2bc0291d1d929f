"""The update agent end to end, with a fake at the subprocess boundary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from llmos import cli
from llmos.osupdate.agent import Agent, Paths
from llmos.osupdate.system import Completed

LIST_JSON = '{"current":"2","all":["2","1"],"appstreamUrls":[]}'


class FakeSystem:
    """Answers each command by its verb; records what ran."""

    def __init__(self, answers: dict[str, Completed]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed:
        self.calls.append(list(argv))
        key = "json-list" if "--json=short" in argv else argv[-1]
        return self.answers.get(key, Completed(0, "", ""))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "50-usr.transfer.in").write_text("[Source]\nType=@SOURCE_TYPE@\n"
                                                  "Path=@SOURCE_PATH@\n")
    return Paths(tmp_path / "os-update" / "request", tmp_path / "state", templates)


def agent(paths: Paths, fake: FakeSystem, lines: list[str]) -> Agent:
    return Agent(paths, fake, "1", lambda: 1000.0, lines.append, sysupdate="/sd-sysupdate")


def request(paths: Paths, doc: object) -> None:
    paths.request.parent.mkdir(parents=True, exist_ok=True)
    paths.request.write_text(json.dumps(doc))


def status(paths: Paths) -> dict[str, object]:
    doc: dict[str, object] = json.loads(paths.status.read_text())
    return doc


def test_an_update_is_staged(paths: Paths) -> None:
    fake = FakeSystem({"update": Completed(0, "", "Installed version 2.\n"),
                       "json-list": Completed(0, LIST_JSON, "")})
    lines: list[str] = []
    request(paths, {"action": "update", "source": "http://10.0.2.2:8080/u"})
    assert agent(paths, fake, lines)() == 0
    assert not paths.request.exists()
    defs = paths.state_dir / "sysupdate.d"
    assert (defs / "50-usr.transfer").read_text() == \
        "[Source]\nType=url-file\nPath=http://10.0.2.2:8080/u/\n"
    assert fake.calls[0] == ["/sd-sysupdate", f"--definitions={defs}", "--no-pager", "update"]
    assert fake.calls[1][-3:] == ["--offline", "--json=short", "list"]
    doc = status(paths)
    assert {k: doc[k] for k in ("state", "running", "staged", "error", "source")} == \
        {"state": "staged", "running": "1", "staged": "2", "error": None,
         "source": "http://10.0.2.2:8080/u/"}
    assert doc["log_tail"] == ["Installed version 2."]
    assert lines[0].startswith("osupdate: downloading from http://10.0.2.2:8080/u/")
    assert lines[-1] == "osupdate: version 2 staged; reboot to start it"


def test_a_plain_table_is_read_when_there_is_no_json(paths: Paths) -> None:
    table = "  VERSION INSTALLED AVAILABLE ASSESSMENT\n  1 ✓ ✓ current\n"
    fake = FakeSystem({"json-list": Completed(1, "", "Unknown option --json"),
                       "list": Completed(0, table, "")})
    request(paths, {"action": "update", "source": str(paths.templates)})
    assert agent(paths, fake, [])() == 0
    assert status(paths)["state"] == "up-to-date"
    assert "Type=regular-file" in (paths.state_dir / "sysupdate.d/50-usr.transfer").read_text()


def test_a_refused_download_fails_with_sysupdate_s_words(paths: Paths) -> None:
    fake = FakeSystem({"update": Completed(1, "", "Acquiring...\nSHA256SUMS signature "
                                                  "does not verify, refusing.\n")})
    lines: list[str] = []
    request(paths, {"action": "update", "source": "https://updates.example/"})
    assert agent(paths, fake, lines)() == 1
    doc = status(paths)
    assert doc["state"] == "failed" and doc["staged"] is None
    assert str(doc["error"]).endswith("does not verify, refusing.")
    assert len(fake.calls) == 1  # no list after a failed update
    assert lines[-1].startswith("osupdate: failed: ")


@pytest.mark.parametrize("doc", [{"action": "update", "source": "http://u:p@h/"},
                                 {"action": "rm -rf"}, "not an object"])
def test_a_bad_request_is_refused_and_taken(paths: Paths, doc: object) -> None:
    fake = FakeSystem({})
    request(paths, doc)
    assert agent(paths, fake, [])() == 1
    assert not paths.request.exists() and fake.calls == []
    assert status(paths)["state"] == "failed"
    assert "refused the request" in str(status(paths)["error"])


def test_no_request_file(paths: Paths) -> None:
    assert agent(paths, FakeSystem({}), [])() == 1
    assert "cannot read the request" in str(status(paths)["error"])


def test_reboot_keeps_the_staged_version(paths: Paths) -> None:
    fake = FakeSystem({"update": Completed(0, "", ""), "json-list": Completed(0, LIST_JSON, "")})
    request(paths, {"action": "update", "source": "http://h/"})
    agent(paths, fake, [])()
    request(paths, {"action": "reboot"})
    assert agent(paths, fake, [])() == 0
    assert fake.calls[-1] == ["systemctl", "reboot"]
    assert {k: status(paths)[k] for k in ("state", "staged")} == \
        {"state": "rebooting", "staged": "2"}


def test_a_failed_reboot(paths: Paths) -> None:
    fake = FakeSystem({"reboot": Completed(1, "", "Access denied\n")})
    request(paths, {"action": "reboot"})
    assert agent(paths, fake, [])() == 1
    assert (status(paths)["state"], status(paths)["error"]) == ("failed", "Access denied")


def test_the_command_line(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    request(paths, {"action": "update", "source": "ftp://nope/"})
    code = cli.main(["osupdate-agent", "--request", str(paths.request), "--state-dir",
                     str(paths.state_dir), "--templates", str(paths.templates)])
    assert code == 1
    assert "osupdate: failed: refused the request" in capsys.readouterr().out


def test_a_request_through_a_symlink_or_too_large_is_not_read(paths: Paths,
                                                               tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"action": "reboot"}')
    paths.request.parent.mkdir(parents=True, exist_ok=True)
    paths.request.symlink_to(secret)
    fake = FakeSystem({})
    assert agent(paths, fake, [])() == 1
    assert fake.calls == [] and not paths.request.is_symlink() and secret.exists()
    assert "cannot read the request" in str(status(paths)["error"])
    paths.request.write_text('{"action": "reboot", "pad": "' + "x" * 70_000 + '"}')
    assert agent(paths, fake, [])() == 1
    assert fake.calls == [] and not paths.request.exists()
