"""Fixtures of the hardware integration tests: a fleet key, sealed packs, configurations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmos.pack.packer import PackSpec, pack_onnx
from llmos.vault.kek import Kek, generate_kek
from llmos.vault.keyfile import write_keyfile
from llmos.vault.sealed import seal_pack_file

HEAVY = 4096  # a 4096 x 4096 float32 weight: 64 MiB, nearly all of the plaintext


@dataclass(frozen=True)
class Vault:
    dir: Path
    keyfile: Path
    kek: Kek


@pytest.fixture(scope="session")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    d = tmp_path_factory.mktemp("vault")
    kek = generate_kek()
    write_keyfile(d / "fleet.key", kek)
    return Vault(d, d / "fleet.key", kek)


def matmul_pack(vault: Vault, name: str, n: int, seed: int) -> Path:
    """A sealed pack of y = x @ w (w: n x n float32, stored in place as external data)."""
    w = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "w")])
    work = vault.dir / "work"
    work.mkdir(exist_ok=True)
    model = work / f"{name}.onnx"
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                    ir_version=8)
    onnx.save(model_proto, model)
    plain = work / f"{name}.llmpack"
    pack_onnx(model, PackSpec(name, level=1)).write(plain)
    sealed = vault.dir / f"{name}.sealed"
    seal_pack_file(plain, sealed, vault.kek)
    model.unlink()
    plain.unlink()
    return sealed


@pytest.fixture(scope="session")
def heavy_pack(vault: Vault) -> Path:
    return matmul_pack(vault, "heavy", HEAVY, seed=1)


@pytest.fixture(scope="session")
def small_pack(vault: Vault) -> Path:
    return matmul_pack(vault, "small", 64, seed=2)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, keyfile: Path, models: Sequence[Mapping[str, Any]],
                 **sections: Mapping[str, Any]) -> Path:
    """A configuration serving ``models`` on any free ports with a development key; the
    tests load and unload over the API (server.repository_control)."""
    tables: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0, "admin_port": 0,
                   "state_dir": str(path.parent / "state"), "repository_control": True},
        "keys": {"provider": "keyfile", "keyfile": str(keyfile), "allow_dev_key": True},
    }
    for section, values in sections.items():
        tables.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, table in tables.items():
        lines += [f"[{section}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    for model in models:
        lines += ["[[models]]", *(f"{k} = {_toml(v)}" for k, v in model.items())]
    path.write_text("\n".join(lines) + "\n")
    return path
