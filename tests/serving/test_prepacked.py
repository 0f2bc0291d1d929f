"""Weight prepacking on the MiniLM demo packs: the tensors a pack names as prepacked are
never read again once a session is built, so their pages can be given back.

The proof is an attack on the claim: after the load, the named tensors are overwritten
with zeros in the very buffer the session was built over, and every answer must stay bit
for bit the same; zeroing one tensor the session does read must change them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmos.pack.container import split_files
from llmos.pack.weights import WeightTable, runs
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime, releasable
from llmos.vault.keyfile import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

TEXTS = np.array([b"A man is playing a guitar on the stage.",
                  b"Sealed model packs are decrypted in memory and never written to disk."],
                 dtype=object)


def _open(minilm_demo: dict[str, Path], name: str) -> tuple[SealedPack, dict[str, memoryview]]:
    pack = SealedPack.open(minilm_demo[name])
    payload = open_payload(pack, read_keyfile(minilm_demo["keyfile"]))
    return pack, split_files(pack.manifest, payload)


def _answer(runtime: object) -> np.ndarray:
    out = runtime.infer({"text": TEXTS})  # type: ignore[attr-defined]
    return np.array(next(iter(out.values())))


@pytest.mark.parametrize("name", ["minilm", "minilm-fp32"])
def test_prepacked_weights_are_not_read_after_the_load(minilm_demo: dict[str, Path],
                                                        name: str) -> None:
    pack, files = _open(minilm_demo, name)
    table = WeightTable.from_extra(pack.manifest.extra)
    assert table is not None and table.prepacked, "the pack names no prepacked weights"
    views = releasable(pack.manifest, files, RuntimeOptions())
    assert sum(v.nbytes for v in views) > 0.3 * table.size, "too little to give back"
    assert len(views) == 1, "the prepacked weights do not lead the weights file in one run"
    runtime = load_runtime(pack.manifest, files, RuntimeOptions())
    before = _answer(runtime)
    for v in views:
        v[:] = bytes(v.nbytes)
    assert np.array_equal(_answer(runtime), before)


def test_zeroing_weights_the_session_reads_changes_the_answer(
        minilm_demo: dict[str, Path]) -> None:
    """The attack above can fail: a tensor outside the prepacked run is read at run time."""
    pack, files = _open(minilm_demo, "minilm-fp32")
    table = WeightTable.from_extra(pack.manifest.extra)
    assert table is not None
    runtime = load_runtime(pack.manifest, files, RuntimeOptions())
    before = _answer(runtime)
    others = [e.name for e in table.entries if e.name not in set(table.prepacked)]
    for v in runs(table, others, files[table.file]):
        v[:] = bytes(v.nbytes)
    assert not np.array_equal(_answer(runtime), before)


def test_no_prepacking_gives_nothing_back(minilm_demo: dict[str, Path]) -> None:
    pack, files = _open(minilm_demo, "minilm")
    assert releasable(pack.manifest, files, RuntimeOptions(prepack=False)) == []
    assert releasable(pack.manifest, files, RuntimeOptions(device="cuda:0")) == []
