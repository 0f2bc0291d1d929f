"""The demo MiniLM packs in a real ``llmos serve``: what each loaded model holds (the
resident memory its unload gives back) is about its plaintext, all of it pinned.

The packs are built once into build/test-cache (shared with tests/serving/test_minilm.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import write_config
from .process import Serve

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "test-cache" / "serving-minilm"
DEMOS = ("minilm", "minilm-fp32")  # the ONNX demo packs (int8 and float32)


@pytest.fixture(scope="module")
def demo_keyfile() -> Path:
    from llmos.demo.build import build
    from llmos.vault.kek import generate_kek
    from llmos.vault.keyfile import read_keyfile, write_keyfile

    CACHE.mkdir(parents=True, exist_ok=True)
    keyfile = CACHE / "fleet.key"
    if not keyfile.exists():
        write_keyfile(keyfile, generate_kek())
    build(CACHE, read_keyfile(keyfile), only=list(DEMOS))
    return keyfile


def test_demo_packs_hold_about_their_plaintext(
        demo_keyfile: Path, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    models = [{"name": n, "pack": str(CACHE / f"{n}.sealed")} for n in DEMOS]
    srv = Serve(write_config(tmp_path / "llmos.toml", demo_keyfile, models), tmp_path)
    try:
        health = srv.settled()
        assert all(health["models"][n]["state"] == "READY" for n in DEMOS), health
        for name in DEMOS:
            r = srv.reload(name)
            record_property(f"{name}_held_ratio", round(r.held_ratio, 3))
            record_property(f"{name}_regrown_ratio", round(r.regrown_ratio, 3))
            assert r.loaded.pinned - r.unloaded.pinned == r.status["memory_bytes"]
            assert 0.9 <= r.held_ratio <= 1.2, (name, r.held_ratio)
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines)
