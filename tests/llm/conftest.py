"""Fixtures of the LLM tests: the SmolLM2 demo packs, built once, and loaded models.

Packs come from the demo builder (``llmos.demo.smollm2``) and are kept where ``llmos demo
build`` keeps them, ``build/demo/NAME.llmpack`` with its cache key beside it: a pack that
is present and current is used as is, otherwise it is built there (the export is cached
in ``build/demo/work``). Without a writable ``build/`` folder they go to a temporary one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmos.demo.smollm2 import plain_pack
from llmos.llm.engine import EngineLimits
from llmos.llm.model import LanguageModel, load_language_model
from llmos.pack import container
from llmos.runtimes.base import RuntimeOptions

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
THREADS = min(2, os.cpu_count() or 1)


PackPath = Callable[[str], Path]


@pytest.fixture(scope="session")
def llm_pack(tmp_path_factory: pytest.TempPathFactory) -> PackPath:
    """``llm_pack(name)``: the plain pack of a SmolLM2 variant, built on first use."""
    out = BUILD / "demo" if os.access(BUILD, os.W_OK) else tmp_path_factory.mktemp("demo")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = plain_pack(name, out)
        return made[name]

    return get


def hf_folder(pack: Path) -> Path:
    """The float32 Hugging Face folder the export dequantised the GGUF into."""
    folders = sorted((pack.parent / "work" / "smollm2").glob("*.hf"))
    assert folders, f"no dequantised checkpoint under {pack.parent / 'work'}"
    return folders[0]


TEST_LIMITS = EngineLimits(max_running=4)


def load(pack: Path, limits: EngineLimits = TEST_LIMITS) -> LanguageModel:
    manifest, compressed = container.read_pack(pack)
    files = container.split_files(manifest, container.decompress_into([compressed], manifest))
    return load_language_model(manifest, files, RuntimeOptions(intra_op_threads=THREADS),
                               limits)


@pytest.fixture(scope="session")
def served_model(llm_pack: PackPath) -> Iterator[LanguageModel]:
    lm = load(llm_pack("smollm2"))
    yield lm
    lm.close()
