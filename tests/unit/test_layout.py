"""The package's shape, checked from its source (ast): layers, sizes, no hidden imports.

Layers, lowest first. A module may import its own layer and those below it, never one
above: the composition root (``llmos.app``) is the only module that sees everything it
builds, and the HTTP edge (``llmos.web``) sits just below it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "userland" / "llmos"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("llmos", "errors", "datatypes", "files",  # no domain: errors, dtypes, atomic writes,
     "config_values"),  # parsers of setting values
    ("config", "state", "systemd", "tls",  # settings, status + transitions, sd_notify, certs
     "credentials",  # where systemd's credentials are
     "osupdate"),  # OS updates: request, sysupdate, status, health gate (stdlib only)
    ("hw", "text"),  # udev, memory, GPUs; the tokenizer adapter
    ("pack",),  # pack format and build side (LLM export under pack/llm)
    ("vault",),  # sealing, keys, opening packs
    ("runtimes",),  # onnxruntime / torch adapters, the one input validator
    ("serving",),  # batcher, codec, metrics, backends, loading a pack into a served model
    ("llm",),  # the causal-LM serving side (engine, decoder, KV cache, sampling)
    ("controllers",),  # devices x models -> placement, reconcile
    ("registry", "versions", "updates", "dropins"),  # the models, versions, states, updates
    ("dataplane",),  # infer / embed / complete / chat, transport-neutral
    ("admin", "apikeys"),  # the admin console's HTTP-free logic; the API key store
    ("web",),  # HTTP only: web/api, web/admin
    ("app",),  # the composition root
    ("fleet",),  # client side of a fleet (Dask workers, HAProxy config): never on the appliance
    ("commands", "cli", "__main__", "demo"),  # entry points and the demo builders
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60
#: Graph builders spell out an ONNX graph node by node: long by nature, read top-down.
GRAPH_BUILDERS = {"llmos.pack.llm.onnx_graph"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


MODULES = dict(_modules())


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "llmos"


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_every_part_of_the_package_has_a_layer() -> None:
    missing = {_layer(m) for m in MODULES} - set(RANK)
    assert not missing, f"add {sorted(missing)} to LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    own = RANK[_layer(module)]
    upward = [f"line {line}: {target} ({_layer(target)} is above {_layer(module)})"
              for line, target in _imports(tree)
              if target.split(".")[0] == "llmos" and RANK[_layer(target)] > own]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_sizes(module: str) -> None:
    source = MODULES[module].read_text()
    too_long = []
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        too_long.append(f"module: {lines} lines > {MAX_MODULE_LINES}")
    for node in ast.walk(ast.parse(source)):
        length = (node.end_lineno or node.lineno) - node.lineno + 1 \
            if isinstance(node, ast.stmt) else 0
        if isinstance(node, ast.ClassDef) and length > MAX_CLASS_LINES:
            too_long.append(f"class {node.name}: {length} lines > {MAX_CLASS_LINES}")
        if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and length > MAX_FUNCTION_LINES and module not in GRAPH_BUILDERS):
            too_long.append(f"function {node.name}: {length} lines > {MAX_FUNCTION_LINES}")
    assert not too_long, "\n".join(too_long)


def test_imports_are_plain() -> None:
    """No "this module may be missing" machinery: ``importlib.import_module`` only where a
    name is chosen at run time (the command line's subcommand, a demo's builder)."""
    allowed = {"llmos.cli", "llmos.demo.catalog"}
    dynamic = sorted(
        module for module, path in MODULES.items()
        if module not in allowed and any(
            isinstance(node, ast.Attribute) and node.attr in ("import_module", "__import__")
            for node in ast.walk(ast.parse(path.read_text()))))
    assert not dynamic, f"dynamic imports in {dynamic}"


def test_the_checks_can_fail() -> None:
    """The rules above see a violation when there is one."""
    tree = ast.parse("from llmos.app import LlmOs\n")
    assert [t for _, t in _imports(tree)] == ["llmos.app"]
    assert RANK[_layer("llmos.app")] > RANK[_layer("llmos.registry")]
    assert RANK[_layer("llmos.web.api.v2")] > RANK[_layer("llmos.dataplane")]
