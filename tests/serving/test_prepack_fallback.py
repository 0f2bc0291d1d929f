"""A runtime whose kernels read the weights it was to hold prepacked (onnxruntime's int8
kernels on a CPU without AVX2 and FMA) costs the model its release, not its load: the
loader opens the pack again and builds it with prepacking off. A model whose config asks
for prepacking gets the error instead."""

from __future__ import annotations

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
    """A backend whose runtime still reads its prepacked weights unless prepacking is off."""

    def __init__(self) -> None:
        self.prepack: list[bool | None] = []

    def __call__(self, ctx: ModelContext) -> Any:
        self.prepack.append(ctx.options.prepack)
        if ctx.options.prepack is not False:
            raise PrepackedWeightsStillRead(ctx.config.name)
        return "served"


def _loader(backend: _KernelsReadInPlace) -> tuple[ModelLoader, _Opener]:
    opener = _Opener()
    cfg = config.load(environ={})
    return ModelLoader(cfg, opener, {"tensor": backend},  # type: ignore[arg-type]
                       ServingMetrics(), None), opener


def test_a_model_whose_kernels_read_its_weights_loads_again_without_prepacking(
        caplog: pytest.LogCaptureFixture) -> None:
    backend = _KernelsReadInPlace()
    loader, opener = _loader(backend)
    loaded = loader.build(ModelConfig(name="minilm", pack=Path("/packs/minilm.sealed")),
                          "cpu", Kek(b"k" * 32))
    assert loaded.served == "served"
    assert backend.prepack == [None, False]
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
