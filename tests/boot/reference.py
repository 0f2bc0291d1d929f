"""Host-side truth for the boot tests: what the image's packs compute and contain.

The reference embedding comes from the very sealed pack the image carries, opened with the
fleet key through llmos's own API, on the guest's CPU model: in this process where the
guest runs on this CPU (KVM), under qemu-user with the guest's CPU model where it is
emulated (TCG), since onnxruntime picks its kernels by the CPU's features and its int8
kernels with and without AVX2 and FMA differ (cosine 0.9998, 3.3e-3 apart on MiniLM: the
AVX2 one adds u8 x s8 products in pairs that saturate at 16 bits). The plaintext fragments
come from the same packs' decrypted payload, to look for on the VM disks afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from llmos_vm import accel

from llmos.pack.container import split_files
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime, releasable
from llmos.serving.warmup import same_answer, sample_inputs
from llmos.vault.keyfile import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

BLOCK = 4096  # a leaked file lands on disk in blocks: keep fragments inside one


def embed(sealed: Path, key: Path, texts: list[str]) -> tuple[np.ndarray, bool]:
    """The embeddings as the supervisor's loader computes them on this CPU: prepacked where
    the runtime then no longer reads the weights it prepacked, else with prepacking off
    (``llmos.serving.loading``; the two int8 paths differ at the 1e-3 level); and whether
    this CPU's kernels prepacked (onnxruntime's int8 and 4-bit kernels alike need AVX2 and
    FMA to: seen on the LLM and MiniLM in the emulated guest)."""
    pack = SealedPack.open(sealed)
    m = pack.manifest
    options = RuntimeOptions()
    files = split_files(m, open_payload(pack, read_keyfile(key)))
    runtime = load_runtime(m, files, options)
    try:
        sample = sample_inputs(runtime.inputs)
        before = runtime.infer(sample)
        for view in releasable(m, files, options):
            view[:] = bytes(view.nbytes)
        after = runtime.infer(sample)
        prepacks = same_answer(before, after)  # the loader's test
        if not prepacks:
            runtime.close()
            options = RuntimeOptions(prepack=False)
            files = split_files(m, open_payload(pack, read_keyfile(key)))
            runtime = load_runtime(m, files, options)
        out = runtime.infer({m.inputs[0].name: np.array(texts, dtype=object)})
        return np.asarray(out[m.outputs[0].name]), prepacks
    finally:
        runtime.close()


def embed_as_guest(sealed: Path, key: Path, texts: list[str], accelerator: str
                   ) -> tuple[np.ndarray, bool]:
    """``embed`` on the CPU model the guest has under ``accelerator``."""
    if accelerator != "tcg":
        return embed(sealed, key, texts)
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="llmos-reference-") as tmp:
        out = Path(tmp) / "embeddings.npy"
        # sys.executable as invoked (the venv's python, not what it links to): its
        # pyvenv.cfg is what gives the emulated interpreter the venv's packages.
        done = subprocess.run(
            ["qemu-x86_64", "-cpu", accel.TCG_CPU, sys.executable, "-m", "tests.boot.reference",
             str(sealed), str(key), str(out), *texts],
            cwd=root, capture_output=True, text=True, timeout=1200, check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                str(root / p) for p in ("userland", "image", "."))})
        assert done.returncode == 0, done.stderr[-3000:]
        result: np.ndarray = np.load(out)
        return result, (Path(tmp) / "prepacks").read_text() == "yes"


def plaintext_fragments(sealed: Path, key: Path, count: int = 8, size: int = 64
                        ) -> list[bytes]:
    """``count`` high-entropy ``size``-byte pieces of the pack's largest file (the weights),
    spread over its middle, each inside one 4 KiB block of the file."""
    pack = SealedPack.open(sealed)
    files = split_files(pack.manifest, open_payload(pack, read_keyfile(key)))
    weights = max(files.values(), key=len)
    fragments: list[bytes] = []
    n = len(weights)
    for i in range(count * 4):
        if len(fragments) == count:
            break
        pos = n // 10 + (8 * n // 10) * i // (count * 4)
        pos -= pos % BLOCK  # the start of a block: the piece cannot straddle two
        piece = bytes(weights[pos + 512:pos + 512 + size])
        if len(set(piece)) >= size // 2 and piece not in fragments:
            fragments.append(piece)
    return fragments


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out: np.ndarray = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1)
                                             * np.linalg.norm(b64, axis=1))
    return out


if __name__ == "__main__":  # embed_as_guest's emulated half: SEALED KEY OUT TEXT...
    vectors, prepacked = embed(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[4:])
    np.save(sys.argv[3], vectors)
    (Path(sys.argv[3]).parent / "prepacks").write_text("yes" if prepacked else "no")
