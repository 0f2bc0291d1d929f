"""The adapter's pure parts: os-release, bless-boot's answer; and running a command."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from llmos.osupdate.system import (
    Completed,
    boot_assessment,
    image_version,
    parse_assessment,
    parse_os_release,
    run,
)


def test_os_release_values_unquoted() -> None:
    text = 'NAME="LLM OS"\nIMAGE_VERSION=2\n# c\nID=debian\nPRETTY_NAME=\'LLM OS 2\'\nbad line\n'
    assert parse_os_release(text) == {"NAME": "LLM OS", "IMAGE_VERSION": "2", "ID": "debian",
                                      "PRETTY_NAME": "LLM OS 2"}


def test_image_version_from_etc_then_usr_lib(tmp_path: Path) -> None:
    assert image_version(tmp_path) is None
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text("IMAGE_VERSION=3\n")
    assert image_version(tmp_path) == "3"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nIMAGE_VERSION="4"\n')
    assert image_version(tmp_path) == "4"


def test_the_boot_assessment() -> None:
    for word in ("good", "bad", "indeterminate", "clean"):
        assert parse_assessment(Completed(0, f"{word}\n", "")) == word
    assert parse_assessment(Completed(1, "", "Failed to ...")) == "unknown"
    assert boot_assessment(program="/nonexistent/systemd-bless-boot",
                           blessed_file=Path("/nonexistent")) == "unknown"


def test_the_assessment_is_asked_with_relaxed_esp_checks(tmp_path: Path) -> None:
    """From the sandbox bless-boot cannot probe the ESP's block device: it is told to trust
    the mount, else it answers nothing and the page would say "unknown" on every boot."""
    program = tmp_path / "systemd-bless-boot"
    program.write_text("")
    seen: list[list[str]] = []

    def runner(argv: Sequence[str], timeout_s: float) -> Completed:
        seen.append(list(argv))
        return Completed(0, "good\n", "")

    assert boot_assessment(runner, str(program), tmp_path / "none") == "good"
    assert seen == [["/usr/bin/env", "SYSTEMD_RELAX_ESP_CHECKS=1", str(program), "status"]]


def test_run_captures_and_maps_missing_programs_and_timeouts() -> None:
    done = run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], 30)
    assert (done.returncode, done.stdout) == (3, "out\n")
    assert run(["/nonexistent/program"], 5).returncode == 127
    slow = run([sys.executable, "-c", "import time; time.sleep(5)"], 0.5)
    assert slow.returncode == 124 and "no answer" in slow.stderr


def test_the_answer_bless_boot_left_is_read_first(tmp_path: Path) -> None:
    blessed = tmp_path / "assessment"
    blessed.write_text("good\n")

    def runner(argv: Sequence[str], timeout_s: float) -> Completed:
        raise AssertionError("not asked: the file says it")

    assert boot_assessment(runner, "/nonexistent", blessed) == "good"
