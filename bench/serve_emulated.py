"""The image's supervisor start-up under user-mode emulation: a 15-second stand-in for a boot.

    python -m bench.serve_emulated [--runs 3] [--native]

Boots nothing: the root partition of ``build/image/llmos.raw`` is unpacked (``debugfs
rdump``; redone when the image changes) and entered with bubblewrap, and ``llmos serve`` runs
there with the image's own Python, wheels and packs under ``qemu-x86_64`` (TCG without the
rest of the machine: about half the guest's time, same proportions). The fleet key comes from
a key file instead of the TPM. Per run: seconds from start to ``/v2/health/ready`` answering
200, and the CPU seconds the process used by then (under TCG start-up is CPU-bound: compare
both). ``--native`` runs the same without emulation. Needs bubblewrap, e2fsprogs and
qemu-user (``apt-get install -t bookworm-backports qemu-user``); not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "image"))

from llmos_vm import disk, http  # noqa: E402

PORT = 18090
CONFIG = """[server]
host = "127.0.0.1"
port = {port}
admin_host = "127.0.0.1"
admin_port = {admin}
state_dir = "/tmp/state"
[keys]
provider = "keyfile"
keyfile = "/tmp/fleet.key"
allow_dev_key = true
{models}"""


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: install bubblewrap, e2fsprogs and "
                         "qemu-user (apt-get install -t bookworm-backports qemu-user)")


def unpack(image: Path, work: Path) -> Path:
    """The image's root file system under ``work/rootfs`` (unpacked again if the image
    changed since)."""
    rootfs, stamp = work / "rootfs", work / "image.stamp"
    mark = f"{image.stat().st_size} {image.stat().st_mtime_ns}"
    if rootfs.is_dir() and stamp.is_file() and stamp.read_text() == mark:
        return rootfs
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start, size = disk.partition(image, disk.ROOT_X86_64)
    ext4 = work / "root.ext4"
    subprocess.run(["dd", f"if={image}", f"of={ext4}", "bs=4M", f"skip={start}",
                    f"count={size}", "iflag=skip_bytes,count_bytes", "status=none"], check=True)
    rootfs.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {rootfs}", str(ext4)], check=True,
                   capture_output=True)
    ext4.unlink()
    stamp.write_text(mark)
    return rootfs


def _config(rootfs: Path, key: Path) -> None:
    packs = sorted((rootfs / "usr/share/llmos/packs").glob("*.sealed"))
    models = "".join(f'[[models]]\nname = "{p.stem}"\npack = "/usr/share/llmos/packs/{p.name}"\n'
                     for p in packs)
    tmp = rootfs / "tmp"
    shutil.copyfile(key, tmp / "fleet.key")
    (tmp / "state").mkdir(mode=0o700, exist_ok=True)
    (tmp / "config.toml").write_text(CONFIG.format(port=PORT, admin=PORT + 1, models=models))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every process below it (bwrap's child runs the
    server)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def run_once(rootfs: Path, emulate: bool, log: Path) -> tuple[float, float]:
    qemu = shutil.which("qemu-x86_64") if emulate else None
    argv = ["bwrap", "--bind", str(rootfs), "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/run", "--die-with-parent", "--share-net",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "PYTHONUNBUFFERED", "1"]
    if qemu:
        argv += ["--ro-bind", qemu, "/qemu-x86_64", "/qemu-x86_64", "-cpu", "max"]
    argv += ["/usr/lib/llmos/venv/bin/python", "/usr/lib/llmos/venv/bin/llmos", "serve",
             "--config", "/tmp/config.toml"]
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"llmos serve exited {proc.returncode}; see {log}")
            reply = http.request(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout_s=2)
            if reply is not None and reply.status == 200:
                ready = time.monotonic() - started
                return ready, _cpu_seconds(proc.pid)
            if time.monotonic() - started > 600:
                raise SystemExit(f"not ready after 600 s; see {log}")
            time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", type=Path, default=ROOT / "build/image/llmos.raw")
    p.add_argument("--key", type=Path, default=ROOT / "build/keys/fleet.key")
    p.add_argument("--work", type=Path, default=ROOT / "build/serve-emulated")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--native", action="store_true", help="no emulation")
    args = p.parse_args(argv)
    _need("bwrap", "debugfs", "sfdisk", *(() if args.native else ("qemu-x86_64",)))
    rootfs = unpack(args.image, args.work)
    _config(rootfs, args.key)
    samples = []
    for i in range(args.runs):
        ready, cpu = run_once(rootfs, not args.native, args.work / f"serve-{i}.log")
        samples.append((ready, cpu))
        print(f"run {i}: ready {ready:.1f} s, cpu {cpu:.1f} s", flush=True)
    print(f"median: ready {statistics.median(s[0] for s in samples):.1f} s, "
          f"cpu {statistics.median(s[1] for s in samples):.1f} s "
          f"({'native' if args.native else 'qemu-user'}, {args.image.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
