"""The golden file built from the demo packs, and the health gate against a real
``llmos serve`` of those packs (API keys on): it passes; a wrong reference fails it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.servers import ServerSpec, free_port, serving

from llmos import apikeys
from llmos.osupdate import golden

REPO = Path(__file__).resolve().parents[2]
DEMO, KEY = REPO / "build" / "demo", REPO / "build" / "keys" / "fleet.key"
MODELS = ("minilm", "smollm2")


def llmos(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmos", *argv], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={"PYTHONPATH": str(REPO / "userland"), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def demo() -> None:
    missing = [p for p in (KEY, *(DEMO / f"{m}.sealed" for m in MODELS)) if not p.exists()]
    if missing:
        pytest.skip(f"no demo packs ({missing[0]}): run 'make demo-packs'")


@pytest.fixture(scope="module")
def golden_file(demo: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("golden")
    done = llmos("golden", "--key", str(KEY), "--out", str(work / "golden.json"),
                 *(str(DEMO / f"{m}.sealed") for m in MODELS))
    assert done.returncode == 0, done.stderr
    assert "golden: 2 checks" in done.stdout
    return work / "golden.json"


@pytest.fixture(scope="module")
def server(golden_file: Path) -> Iterator[Path]:
    work = golden_file.parent
    key = apikeys.generate()
    (work / "api-keys").write_text(f"ops: sha256:{'0' * 64}\ngate: {key}\n")
    port = free_port()
    config = work / "config.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nadmin_port = 0\n'
        f'state_dir = "{work / "state"}"\npacks_dir = "{DEMO}"\n'
        f'api_keys_file = "{work / "api-keys"}"\n'
        f'[keys]\nprovider = "keyfile"\nkeyfile = "{KEY}"\nallow_dev_key = true\n'
        '[memory]\nlock_process = false\n[devices]\nclaim = false\n'
        + "".join(f'[[models]]\nname = "{m}"\npack = "{m}.sealed"\n' for m in MODELS))
    spec = ServerSpec("llmos", [sys.executable, "-m", "llmos", "serve", "--config", str(config)],
                      port, ready_path="/health/ready",
                      env={"PYTHONPATH": str(REPO / "userland")})
    with serving(spec, work / "logs"):
        yield config


def test_the_golden_file_of_the_demo_packs(golden_file: Path) -> None:
    checks = golden.loads(golden_file.read_text())
    assert [(c.name, c.kind) for c in checks] == [("minilm", "embedding"), ("smollm2", "chat")]
    embedding = checks[0]
    assert isinstance(embedding, golden.EmbeddingCheck) and len(embedding.vector) == 384


def test_the_gate_passes_a_server_that_answers(server: Path, golden_file: Path) -> None:
    done = llmos("health-gate", "--config", str(server), "--golden", str(golden_file),
                 "--timeout", "300")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith("health-gate: minilm embedding cosine ") and line.endswith(" ok")
               for line in lines), lines
    assert any(line.startswith("health-gate: smollm2 chat answered") for line in lines), lines
    assert lines[-1] == "health-gate: passed"


def test_the_gate_fails_a_wrong_reference(server: Path, golden_file: Path,
                                          tmp_path: Path) -> None:
    doc = json.loads(golden_file.read_text())
    doc["models"][0]["vector"] = list(reversed(doc["models"][0]["vector"]))
    wrong = tmp_path / "golden.json"
    wrong.write_text(json.dumps(doc))
    done = llmos("health-gate", "--config", str(server), "--golden", str(wrong),
                 "--timeout", "300")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1].startswith("health-gate: FAILED: minilm embedding "
                                                   "cosine ")


def test_the_gate_without_a_usable_key_fails(server: Path, golden_file: Path,
                                             tmp_path: Path) -> None:
    text = server.read_text()
    keys = Path(text.split('api_keys_file = "')[1].split('"')[0])
    hashed_only = tmp_path / "api-keys"
    hashed_only.write_text(keys.read_text().splitlines()[0] + "\n")
    config = tmp_path / "config.toml"
    config.write_text(text.replace(str(keys), str(hashed_only)))
    done = llmos("health-gate", "--config", str(config), "--golden", str(golden_file))
    assert done.returncode == 1
    assert "every configured key is a sha256 digest" in done.stdout
