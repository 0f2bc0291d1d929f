"""``llmos pack`` and ``llmos inspect`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmos.cli import main
from llmos.pack.manifest import Manifest
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.vault.keys import generate_kek
from llmos.vault.sealed import read_manifest, seal_pack_file

from .models import DIM, unpack


def test_pack_then_inspect_plain_and_sealed(mlp_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlp.llmpack"
    assert main(["pack", str(mlp_file), "--name", "mlp", "--version", "2", "--quantize",
                 "int8", "--out", str(out)]) == 0
    assert "packed 'mlp' 2 (tensor, int8)" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert (manifest.version, manifest.quantization, manifest.source) == ("2", "int8",
                                                                          "mlp.onnx")
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("name          mlp", "quantization  int8", "sealed        no (plain pack)",
                 "inputs        x FP32 [-1, 64]", "outputs       y FP32 [-1, 32]",
                 f"sha256        {manifest.sha256}"):
        assert line in text
    assert "weights.bin" in text and "used in place" in text
    kek = generate_kek()
    sealed = tmp_path / "mlp.sealed"
    seal_pack_file(out, sealed, kek)
    assert main(["inspect", str(sealed)]) == 0
    assert f"yes, for fleet key {kek.id}" in capsys.readouterr().out
    assert main(["inspect", "--json", str(sealed)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sealed"]["kek_id"] == kek.id
    assert Manifest.from_dict(doc["manifest"]) == manifest


def test_pack_embedding_from_the_command_line(embed_files: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, tokenizer = embed_files
    out = tmp_path / "e.llmpack"
    assert main(["pack", str(model), "--name", "e", "--kind", "embedding", "--tokenizer",
                 str(tokenizer), "--max-length", "8", "--quantize", "fp16", "--out",
                 str(out)]) == 0
    manifest, files = unpack(out.read_bytes())
    assert manifest.kind == "embedding" and manifest.quantization == "fp16"
    y = load_runtime(manifest, files, RuntimeOptions()).infer(
        {"text": np.array([b"red cat"], dtype=object)})["embedding"]
    assert y.shape == (1, DIM) and abs(float(np.linalg.norm(y)) - 1) < 1e-2


def test_pack_errors_are_reported_with_a_hint(mlp_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", str(mlp_file), "--name", "m", "--kind", "embedding",
                 "--out", str(tmp_path / "m.llmpack")]) == 2
    err = capsys.readouterr().err
    assert "needs the model's tokenizer" in err and "hint: pass --tokenizer" in err
    assert not (tmp_path / "m.llmpack").exists()
    assert main(["inspect", str(tmp_path / "missing.llmpack")]) == 2
    assert "cannot read" in capsys.readouterr().err
