"""The update agent's and the admin page's one adapter to the running system: commands
(systemd-sysupdate, systemctl, systemd-bless-boot) and os-release. Everything else in
``llmos.osupdate`` is pure and takes what this gives it."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SYSUPDATE = "/usr/lib/systemd/systemd-sysupdate"
BLESS_BOOT = "/usr/lib/systemd/systemd-bless-boot"
SYSTEMCTL = "systemctl"
OS_RELEASE = (Path("etc/os-release"), Path("usr/lib/os-release"))
ASSESSMENTS = ("good", "bad", "indeterminate", "clean")


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed: ...


def run(argv: Sequence[str], timeout_s: float) -> Completed:
    """Run ``argv``, output captured; a missing program is exit 127, a timeout 124."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                              timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: not found")
    except PermissionError as exc:
        return Completed(126, "", f"{argv[0]}: {exc.strerror}")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else exc.stdout or ""
        return Completed(124, out, f"{shlex.join(argv)}: no answer within {timeout_s:.0f} s")
    return Completed(done.returncode, done.stdout, done.stderr)


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines (values optionally quoted, shell style); comments skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#") or not key.isidentifier():
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        out[key] = words[0] if words else ""
    return out


def os_release(root: Path = Path("/")) -> Mapping[str, str]:
    """/etc/os-release, else /usr/lib/os-release (empty when neither can be read)."""
    for rel in OS_RELEASE:
        try:
            return parse_os_release((root / rel).read_text())
        except OSError:
            continue
    return {}


def image_version(root: Path = Path("/")) -> str | None:
    """The booted image's ``IMAGE_VERSION`` (None on a host, which has none)."""
    return os_release(root).get("IMAGE_VERSION") or None


def parse_assessment(done: Completed) -> str:
    """``systemd-bless-boot status``'s answer: good, bad, indeterminate, clean or unknown."""
    words = done.stdout.split()
    word = words[-1].lower() if words else ""
    return word if word in ASSESSMENTS else "unknown"


#: The admin page asks from inside the supervisor's sandbox, which may open no block device:
#: bless-boot then cannot probe that the ESP mounted at /efi is one, and answers nothing
#: unless told to trust the mount (the ESP is mounted by efi.mount, from the signed image).
RELAX_ESP_CHECKS = "SYSTEMD_RELAX_ESP_CHECKS=1"
ENV = "/usr/bin/env"


#: Written by systemd-bless-boot.service (root) right after it marked this boot good
#: (image: systemd-bless-boot.service.d/10-llmos-esp.conf): the answer without the sandbox.
BLESSED_FILE = Path("/run/llmos-boot-assessment")


def boot_assessment(runner: Runner = run, program: str = BLESS_BOOT,
                    blessed_file: Path = BLESSED_FILE) -> str:
    """This boot's assessment by boot counting ("unknown" where bless-boot is absent)."""
    try:
        return parse_assessment(Completed(0, blessed_file.read_text(), ""))
    except OSError:
        pass
    if not Path(program).exists():
        return "unknown"
    return parse_assessment(runner([ENV, RELAX_ESP_CHECKS, program, "status"], 5.0))
