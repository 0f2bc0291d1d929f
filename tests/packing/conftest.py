"""Fixtures of the packing tests: tiny models on disk, and one MiniLM demo build per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.demo.build import build, is_built
from llmos.demo.catalog import CATALOG
from llmos.vault.keys import generate_kek

from .models import embedding_model, mlp_model, save, tokenizer_json

REPO = Path(__file__).resolve().parents[2]
SHARED_DEMO = REPO / "build" / "demo"  # what `make demo-packs` builds
MINILM = ("minilm", "minilm-fp32", "minilm-torch")
REFERENCES = ("work/minilm-fp32.onnx", "work/minilm-int8.onnx")


@pytest.fixture
def mlp_file(tmp_path: Path) -> Path:
    return save(mlp_model(), tmp_path / "mlp.onnx")


@pytest.fixture
def embed_files(tmp_path: Path) -> tuple[Path, Path]:
    """(encoder .onnx, tokenizer.json) of the miniature embedding model."""
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_bytes(tokenizer_json())
    return save(embedding_model(), tmp_path / "embed.onnx"), tokenizer


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the three MiniLM plain packs and the plaintext reference models:
    build/demo when it is up to date, else a fresh build (about a minute)."""
    entries = [e for e in CATALOG if e.name in MINILM]
    if all(is_built(e, SHARED_DEMO) for e in entries) and all(
            (SHARED_DEMO / r).is_file() for r in REFERENCES):
        return SHARED_DEMO
    out = tmp_path_factory.mktemp("demo")
    build(out, generate_kek(), only=MINILM)
    return out
