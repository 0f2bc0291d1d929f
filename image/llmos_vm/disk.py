"""Disks: a qcow2 overlay per VM (the built image stays pristine), partitions of a raw
image, and byte scans."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from llmos_vm.errors import VmError

CHUNK = 16 << 20
ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # GPT type of the image's root partition
DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # linux-generic: the data partition (/var)


def image_format(path: Path) -> str:
    return "qcow2" if path.suffix == ".qcow2" else "raw"


def virtual_size(path: Path) -> int:
    """The size of the disk the guest sees in ``path`` (a raw image or a qcow2 overlay)."""
    if image_format(path) == "raw":
        return path.stat().st_size
    done = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VmError(f"qemu-img could not read {path}: {done.stderr.strip()}",
                      "is qemu-utils installed?")
    size: int = json.loads(done.stdout)["virtual-size"]
    return size


def create_overlay(base: Path, overlay: Path, size_bytes: int | None = None) -> None:
    """A copy-on-write qcow2 on top of ``base`` (the raw image, or another VM's overlay:
    the same disk in a second machine); the guest's writes go to it, never to ``base``.
    ``size_bytes``: a disk that big (never smaller than ``base``), as a machine's disk is
    bigger than the image flashed onto it; the guest grows its data partition into the rest
    at its first boot. None: as big as ``base``."""
    overlay.parent.mkdir(parents=True, exist_ok=True)
    size = [] if size_bytes is None else [str(max(size_bytes, virtual_size(base)))]
    done = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image_format(base),
                           "-b", str(base.resolve()), str(overlay), *size],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VmError(f"qemu-img could not create {overlay}: {done.stderr.strip()}",
                      "is qemu-utils installed and the image built (make image)?")


def partition(image: Path, type_guid: str) -> tuple[int, int]:
    """(byte offset, byte size) of the first partition of GPT type ``type_guid`` in the raw
    ``image`` (from sfdisk's JSON dump of its table)."""
    done = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise VmError(f"sfdisk could not read {image}: {done.stderr.strip()}",
                      "apt-get install fdisk; is the file a raw disk image?")
    table = json.loads(done.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    for part in table["partitions"]:
        if part["type"].upper() == type_guid.upper():
            return int(part["start"]) * sector, int(part["size"]) * sector
    raise VmError(f"{image} has no partition of type {type_guid}", "is it an LLM OS image?")


def find_all(path: Path, needles: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """(needle, offset) for every occurrence of any needle in the file, streamed in chunks
    that overlap by the longest needle, so matches across chunk borders are found too."""
    wanted = [n for n in needles if n]
    if not wanted:
        return
    overlap = max(len(n) for n in wanted) - 1
    with path.open("rb") as f:
        tail = b""
        base = 0  # file offset of buf[0]
        while chunk := f.read(CHUNK):
            buf = tail + chunk
            for n in wanted:
                start = buf.find(n)
                while start != -1:
                    if start + len(n) > len(tail):  # not already reported from the last buffer
                        yield n, base + start
                    start = buf.find(n, start + 1)
            tail = buf[-overlap:] if overlap else b""
            base += len(buf) - len(tail)
