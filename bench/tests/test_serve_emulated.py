"""``bench.serve_emulated`` around its boundaries: unpacking a disk image's root partition,
the configuration it writes, the CPU seconds it reads (the emulated run itself is a
benchmark, not a test)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
from llmos_vm.disk import ROOT_X86_64

from bench import serve_emulated as se

MIB = 1 << 20


def _disk(tmp_path: Path, files: dict[str, str]) -> Path:
    """A GPT disk whose second partition is an ext4 root-x86-64 partition holding ``files``."""
    tree = tmp_path / "tree"
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    image = tmp_path / "disk.raw"
    with image.open("wb") as f:
        f.truncate(16 * MIB)
    layout = ("label: gpt\n"
              "start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
              f"start=6144, size=16384, type={ROOT_X86_64}\n")
    subprocess.run(["sfdisk", "-q", str(image)], input=layout, text=True, check=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), "-E",
                    f"offset={6144 * 512}", str(image), "8M"], check=True)
    return image


def test_unpack_takes_the_root_partition_and_redoes_it_when_the_image_changes(
        tmp_path: Path) -> None:
    image = _disk(tmp_path, {"usr/share/llmos/packs/a.sealed": "A", "etc/hostname": "llmos"})
    work = tmp_path / "work"
    rootfs = se.unpack(image, work)
    assert (rootfs / "etc/hostname").read_text() == "llmos"
    (rootfs / "marker").write_text("kept")
    assert (se.unpack(image, work) / "marker").exists()  # same image: not unpacked again
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # the image was rebuilt
    assert not (se.unpack(image, work) / "marker").exists()


def test_config_serves_every_sealed_pack_with_the_key_file(tmp_path: Path) -> None:
    packs = tmp_path / "usr/share/llmos/packs"
    packs.mkdir(parents=True)
    for name in ("smollm2", "minilm"):
        (packs / f"{name}.sealed").write_bytes(b"")
    (tmp_path / "tmp").mkdir()
    key = tmp_path / "fleet.key"
    key.write_bytes(b"k" * 32)
    se._config(tmp_path, key)
    text = (tmp_path / "tmp/config.toml").read_text()
    assert text.count("[[models]]") == 2
    assert 'pack = "/usr/share/llmos/packs/minilm.sealed"' in text
    assert 'provider = "keyfile"' in text and f"port = {se.PORT}" in text
    assert (tmp_path / "tmp/fleet.key").read_bytes() == key.read_bytes()


def test_cpu_seconds_count_the_children_too() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"])
    def children_cpu() -> float:
        mine = psutil.Process().cpu_times()
        return se._cpu_seconds(os.getpid()) - float(mine.user + mine.system)

    try:
        deadline = time.monotonic() + 20
        while children_cpu() < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children_cpu() >= 0.25
    finally:
        child.kill()
        child.wait()
