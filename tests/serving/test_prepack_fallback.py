"""A runtime whose kernels read the weights it was to hold prepacked (onnxruntime's int8
kernels on a CPU without AVX2 and FMA) costs the model its release, not its load: the
loader opens the pack again and builds it with prepacking off. A model whose config asks
for prepacking gets the error instead."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from llmos import config
from llmos.config import ModelConfig
from llmos.errors import PrepackedWeightsStillRead
from llmos.pack.manifest import Manifest
from llmos.serving.backend import ModelContext
from llmos.serving.loading import ModelLoader
from llmos.serving.metrics import ServingMetrics
from llmos.serving.prepack_memo import PrepackMemo
from llmos.vault.kek import Kek


class _Opener:
    """Hands out one fresh payload per open (what the vault does: decrypt again)."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def open(self, cfg: ModelConfig, kek: Kek, accept: Any, owner: str | None = None
             ) -> tuple[Manifest, memoryview]:
        manifest = Manifest(name=cfg.name, version="1", kind="tensor", runtime="onnx",
                            inputs=(), outputs=(), files=(), sha256="0" * 64, size_plain=0,
                            size_packed=0)
        accept(manifest)
        self.opened.append(str(owner))
        return manifest, memoryview(b"")


class _KernelsReadInPlace:
    """A backend whose runtime still reads its prepacked weights unless prepacking is off
    (a causal LM's default: prepacked)."""

    def __init__(self) -> None:
        self.prepack: list[bool] = []

    def __call__(self, ctx: ModelContext) -> Any:
        prepack = ctx.options.prepacks(True)
        self.prepack.append(prepack)
        if prepack:
            raise PrepackedWeightsStillRead(ctx.config.name)
        return "served"


def _loader(backend: _KernelsReadInPlace, memo: PrepackMemo | None = None
            ) -> tuple[ModelLoader, _Opener]:
    opener = _Opener()
    cfg = config.load(environ={})
    return ModelLoader(cfg, opener, {"tensor": backend},  # type: ignore[arg-type]
                       ServingMetrics(), None, memo), opener


def test_a_model_whose_kernels_read_its_weights_loads_again_without_prepacking(
        caplog: pytest.LogCaptureFixture) -> None:
    backend = _KernelsReadInPlace()
    loader, opener = _loader(backend)
    loaded = loader.build(ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed")),
                          "cpu", Kek(b"k" * 32))
    assert loaded.served == "served"
    assert backend.prepack == [True, False]
    assert opener.opened == ["minilm", "minilm"]  # the pack opened again, not reused
    assert "loading it again with prepack = false" in caplog.text


def test_a_model_configured_to_prepack_fails_with_the_reason() -> None:
    backend = _KernelsReadInPlace()
    loader, opener = _loader(backend)
    with pytest.raises(PrepackedWeightsStillRead, match="answers differently"):
        loader.build(ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed"),
                                 prepack=True), "cpu", Kek(b"k" * 32))
    assert backend.prepack == [True]
    assert opener.opened == ["minilm"]


def test_the_next_start_builds_it_unprepacked_at_once(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The verdict outlives the process: a second loader (the next start) on the same
    machine opens the pack once, prepacking off; on the GPU the verdict does not apply."""
    minilm = ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed"))
    first = _KernelsReadInPlace()
    _loader(first, PrepackMemo(tmp_path / "v.json", machine="m1"))[0].build(
        minilm, "cpu", Kek(b"k" * 32))
    assert first.prepack == [True, False]

    caplog.clear()
    second = _KernelsReadInPlace()
    loader, opener = _loader(second, PrepackMemo(tmp_path / "v.json", machine="m1"))
    with caplog.at_level(logging.INFO, logger="llmos.serving.loading"):
        assert loader.build(minilm, "cpu", Kek(b"k" * 32)).served == "served"
    assert second.prepack == [False]
    assert opener.opened == ["minilm"]
    assert "learnt at an earlier start" in caplog.text
    assert "loading it again" not in caplog.text

    on_gpu = _KernelsReadInPlace()
    loader, _ = _loader(on_gpu, PrepackMemo(tmp_path / "v.json", machine="m1"))
    with pytest.raises(PrepackedWeightsStillRead):  # config asked: its error, no memo
        loader.build(ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed"),
                                 prepack=True), "cpu", Kek(b"k" * 32))
    loader.build(minilm, "cuda:0", Kek(b"k" * 32))
    assert on_gpu.prepack == [True, True, False]  # on the GPU: tried, then learnt again


def test_what_a_gpu_load_finds_is_not_kept_for_the_cpu(tmp_path: Path) -> None:
    """The memo is about this CPU's kernels: a fallback on a GPU says nothing about them."""
    on_gpu = _KernelsReadInPlace()
    loader, _ = _loader(on_gpu, PrepackMemo(tmp_path / "v.json", machine="m1"))
    loader.build(ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed")), "cuda:0",
                 Kek(b"k" * 32))
    assert on_gpu.prepack == [True, False]
    assert not PrepackMemo(tmp_path / "v.json", machine="m1").reads_in_place("0" * 64)
