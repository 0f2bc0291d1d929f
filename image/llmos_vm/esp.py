"""Files on the EFI system partition of a raw disk image, without mounting it (mtools).

What a person does by hand on hardware (copy ``llmos/provision.key`` onto the ESP of the
flashed disk), done to an image file: used by the boot tests of ESP provisioning.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from llmos_vm import disk
from llmos_vm.errors import VmError

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VmError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}",
                      "apt-get install mtools; is the file a raw disk image?")
    return done.stdout


def offset(image: Path) -> int:
    """Byte offset of the ESP inside the raw image (from its GPT)."""
    return disk.partition(image, ESP_TYPE)[0]


def _target(image: Path) -> str:
    return f"{image}@@{offset(image)}"


def put(image: Path, dest: str, data: bytes) -> None:
    """Write ``data`` to ``dest`` (e.g. "llmos/provision.key") on the image's ESP."""
    target = _target(image)
    parts = dest.strip("/").split("/")
    for i in range(1, len(parts)):
        directory = "/".join(parts[:i])
        if not _exists(target, directory):
            _run(["mmd", "-i", target, "::/" + directory])
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        _run(["mcopy", "-o", "-i", target, f.name, "::/" + "/".join(parts)])


def list_dir(image: Path, directory: str) -> list[str]:
    """The names in ``directory`` of the image's ESP."""
    out = _run(["mdir", "-b", "-i", _target(image), "::/" + directory.strip("/")])
    return [line.rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()]


def exists(image: Path, path: str) -> bool:
    return _exists(_target(image), path)


def _exists(target: str, path: str) -> bool:
    done = subprocess.run(["mdir", "-b", "-i", target, "::/" + path.strip("/")],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0
