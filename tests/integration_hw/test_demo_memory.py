"""The demo MiniLM packs in a real ``llmos serve``: what each loaded model holds (the
resident memory its unload gives back) is about its plaintext, all of it pinned.

The packs come from the suite's ``minilm_demo`` fixture (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import write_config
from .process import Serve

DEMOS = ("minilm", "minilm-fp32")  # the ONNX demo packs (int8 and float32)


def test_demo_packs_hold_about_their_plaintext(
        minilm_demo: dict[str, Path], tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    models = [{"name": n, "pack": str(minilm_demo[n])} for n in DEMOS]
    srv = Serve(write_config(tmp_path / "llmos.toml", minilm_demo["keyfile"], models), tmp_path)
    try:
        health = srv.settled()
        assert all(health["models"][n]["state"] == "READY" for n in DEMOS), health
        for name in DEMOS:
            r = srv.reload(name)
            record_property(f"{name}_held_ratio", round(r.held_ratio, 3))
            record_property(f"{name}_regrown_ratio", round(r.regrown_ratio, 3))
            # Its buffers leave the pinned memory with it, and (the process being locked as
            # a whole) what the runtime allocated for it: its prepacked copy of the weights
            # whose pages the pool gave back, which ``memory_bytes`` no longer counts.
            held, plain = int(r.status["memory_bytes"]), r.plain
            assert held < 0.8 * plain, f"{name}: the prepacked weights were not given back"
            assert plain - 2**20 <= r.loaded.pinned - r.unloaded.pinned <= 1.2 * plain, r
            assert 0.9 <= r.held_ratio <= 1.2, (name, r.held_ratio)
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines)
