"""What sealing costs at load time, and how fast the vault decrypts against ``openssl speed``.

- load: authenticate + decrypt + decompress + create the session from a sealed pack, against
  ``onnxruntime.InferenceSession(path)`` on the plaintext reference file, plus
  ``Tokenizer.from_file`` on its tokenizer.json where the pack is an embedding model: LLM
  OS's loader builds the tokenizer too (a sixth of its time, profiled), so both sides load
  the same things. Twice: with every file in the page cache (read through it just before;
  the vault reads a cached pack from there), and with none (their pages dropped with
  ``posix_fadvise(DONTNEED)`` just before: what a boot sees). The loads are interleaved,
  each round timing every variant once in a rotated order, and a ratio is the median of the
  rounds' own ratios: a shared machine's load then skews both sides of each ratio alike.
- decrypt: the vault's verified AES-256-GCM chunks per second (the largest demo pack,
  cached, into a buffer allocated beforehand), against ``openssl speed -evp aes-256-gcm
  -decrypt`` with the vault's chunk size.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
from tokenizers import Tokenizer

from llmos.pack.container import split_files
from llmos.vault.kek import Kek
from llmos.vault.keyfile import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload, spans

log = logging.getLogger(__name__)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def interleaved(actions: dict[str, Callable[[], object]], rounds: int,
                before: dict[str, Callable[[], object]] | None = None,
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall, CPU) seconds of each action in each round (the CPU: this process's, all its
    threads); every round runs each action once, the order rotated from round to round.
    ``before[name]``, where given, runs just before that action, untimed."""
    names = list(actions)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if before and name in before:
                before[name]()
            t0, c0 = time.perf_counter(), _cpu_s()
            actions[name]()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(_cpu_s() - c0)
    return times, cpu


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        action()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def parse_openssl_speed(output: str) -> float:
    """Bytes per second from ``openssl speed -mr`` (its ``+F:`` line; pure)."""
    for line in output.splitlines():
        m = re.match(r"^\+F:\d+:[^:]+:([0-9.]+)", line)
        if m:
            return float(m.group(1))
    raise ValueError(f"no +F: line in openssl speed output: {output[-500:]!r}")


def openssl_speed(chunk_size: int, seconds: int, decrypt: bool) -> float:
    argv = ["openssl", "speed", "-mr", "-elapsed", "-seconds", str(seconds), "-bytes",
            str(chunk_size), "-evp", "aes-256-gcm", *(["-decrypt"] if decrypt else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds * 10)
    return parse_openssl_speed(proc.stdout + proc.stderr)


def _runtime_loader() -> tuple[str, Callable[[Any, Any], object]]:
    """LLM OS's own loader when it is there; else a session from the decrypted bytes."""
    try:
        from llmos.runtimes.base import RuntimeOptions
        from llmos.runtimes.loader import load_runtime
    except ImportError:
        def from_bytes(manifest: Any, files: Any) -> object:
            return ort.InferenceSession(bytes(files[manifest.entrypoint]),
                                        providers=["CPUExecutionProvider"])
        return "onnxruntime.InferenceSession(decrypted bytes)", from_bytes

    def llmos_loader(manifest: Any, files: Any) -> object:
        rt = load_runtime(manifest, files, RuntimeOptions())
        rt.close()
        return rt
    return "llmos.runtimes.loader.load_runtime", llmos_loader


def _sealed_load(path: Path, kek: Kek, load: Callable[[Any, Any], object]) -> None:
    pack = SealedPack.open(path)
    load(pack.manifest, split_files(pack.manifest, open_payload(pack, kek)))


def _open_only(path: Path, kek: Kek) -> None:
    pack = SealedPack.open(path)
    open_payload(pack, kek)


def _decrypt_only(path: Path, kek: Kek, out: memoryview) -> None:
    """Every chunk authenticated and decrypted into ``out`` (the payload's size)."""
    SealedPack.open(path).decrypt_into(kek, out)


def _decrypt_buffer(path: Path) -> memoryview:
    """A buffer for ``_decrypt_only``, its pages faulted in (not part of the timing)."""
    return memoryview(bytearray(SealedPack.open(path).header.payload_size))


def cache(*paths: Path | None) -> None:
    """Bring every page of these files into the page cache."""
    for path in paths:
        if path is not None:
            with path.open("rb") as f:
                while f.read(1 << 24):
                    pass


def evict(*paths: Path | None) -> None:
    """Drop these files' (clean) pages from the page cache: the next read is the disk's."""
    for path in paths:
        if path is not None:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def plain_load(onnx: Path, tokenizer: Path | None) -> None:
    """What a user does to load the plaintext model: its session, and its tokenizer when
    it has one."""
    ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    if tokenizer is not None:
        Tokenizer.from_file(str(tokenizer))


def run(sealed: Path, plain_onnx: Path, key: Path, all_packs: list[Path],
        repeat: int = 9, openssl_seconds: int = 3,
        plain_tokenizer: Path | None = None) -> dict[str, Any]:
    kek = read_keyfile(key)
    how, load = _runtime_loader()
    _sealed_load(sealed, kek, load)  # warm the libraries
    plain_load(plain_onnx, plain_tokenizer)
    plain_files, sealed_files = (plain_onnx, plain_tokenizer), (sealed,)
    out = _decrypt_buffer(sealed)
    times, cpu = interleaved({
        "plain": lambda: plain_load(plain_onnx, plain_tokenizer),
        "sealed": lambda: _sealed_load(sealed, kek, load),
        "decrypt": lambda: _decrypt_only(sealed, kek, out),
        "open": lambda: _open_only(sealed, kek),
        "plain_cold": lambda: plain_load(plain_onnx, plain_tokenizer),
        "sealed_cold": lambda: _sealed_load(sealed, kek, load)}, repeat, before={
        "plain": lambda: cache(*plain_files), "sealed": lambda: cache(*sealed_files),
        "decrypt": lambda: cache(*sealed_files), "open": lambda: cache(*sealed_files),
        "plain_cold": lambda: evict(*plain_files),
        "sealed_cold": lambda: evict(*sealed_files)})
    med = {name: statistics.median(t) for name, t in times.items()}

    def ratio_of(seconds: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b], strict=True)
                                 if y > 0)

    manifest = SealedPack.open(sealed).manifest
    log.info("load: plain %.1f ms, sealed %.1f ms (%s); cold: %.1f, %.1f ms", med["plain"] * 1e3,
             med["sealed"] * 1e3, how, med["plain_cold"] * 1e3, med["sealed_cold"] * 1e3)

    biggest = max(all_packs, key=lambda p: p.stat().st_size)
    big = SealedPack.open(biggest)
    cache(biggest)
    big_out = _decrypt_buffer(biggest)
    big_decrypt_s = median_seconds(lambda: _decrypt_only(biggest, kek, big_out), 3)
    vault_bps = big.header.payload_size / big_decrypt_s
    openssl_dec = openssl_speed(big.header.chunk_size, openssl_seconds, decrypt=True)
    openssl_enc = openssl_speed(big.header.chunk_size, openssl_seconds, decrypt=False)
    return {
        "model": manifest.name,
        "plain_onnx_bytes": plain_onnx.stat().st_size,
        "plain_loads_tokenizer": plain_tokenizer is not None,
        "sealed_bytes": sealed.stat().st_size,
        "payload_plain_bytes": manifest.size_plain,
        "plain_load_ms": med["plain"] * 1e3,
        "sealed_load_ms": med["sealed"] * 1e3,
        "sealed_decrypt_ms": med["decrypt"] * 1e3,
        "sealed_open_ms": med["open"] * 1e3,
        "load_ratio": ratio_of(times, "sealed", "plain"),
        "plain_load_cpu_ms": statistics.median(cpu["plain"]) * 1e3,
        "sealed_load_cpu_ms": statistics.median(cpu["sealed"]) * 1e3,
        "load_cpu_ratio": ratio_of(cpu, "sealed", "plain"),
        "plain_cold_load_ms": med["plain_cold"] * 1e3,
        "sealed_cold_load_ms": med["sealed_cold"] * 1e3,
        "cold_load_ratio": ratio_of(times, "sealed_cold", "plain_cold"),
        "compression": getattr(manifest, "compression", "zstd"),
        "sealed_loader": how,
        "repeat": repeat,
        "decrypt_pack": biggest.name,
        "decrypt_pack_bytes": big.header.payload_size,
        "chunk_size": big.header.chunk_size,
        "decrypt_threads": len(spans(big.header.chunk_count)),
        "vault_decrypt_mb_s": vault_bps / 1e6,
        "openssl_decrypt_mb_s": openssl_dec / 1e6,
        "openssl_encrypt_mb_s": openssl_enc / 1e6,
        "decrypt_vs_openssl": vault_bps / openssl_dec,
    }
