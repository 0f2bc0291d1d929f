"""A real ``llmos serve`` on the demo packs (build/demo, sealed for build/keys/fleet.key, as
``make demo-packs`` leaves them), shared by the hostile-traffic tests of this folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "build" / "demo"
KEY = REPO / "build" / "keys" / "fleet.key"
LLM, EMBEDDER = "smollm2", "minilm"


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None and requests.get(
            f"{self.url}/health", timeout=5).status_code == 200


def config_text(tmp: Path, extra: str = "", llm_extra: str = "") -> str:
    return f"""
[server]
port = 0
admin_port = 0
state_dir = "{tmp / 'state'}"
packs_dir = "{DEMO}"
{extra}
[keys]
provider = "keyfile"
keyfile = "{KEY}"
allow_dev_key = true
[memory]
pin_weights = false
lock_process = false
[devices]
claim = false
[[models]]
name = "{EMBEDDER}"
pack = "minilm.sealed"
[[models]]
name = "{LLM}"
pack = "smollm2.sealed"
max_tokens = 8
{llm_extra}
"""


def start_server(tmp: Path, extra: str = "", timeout_s: float = 180.0,
                 llm_extra: str = "") -> Served:
    for pack in ("minilm.sealed", "smollm2.sealed"):
        if not (DEMO / pack).is_file() or not KEY.is_file():
            pytest.fail(f"the demo packs are missing ({DEMO / pack}, {KEY}): run make "
                        "demo-packs first")
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "llmos.toml"
    cfg.write_text(config_text(tmp, extra, llm_extra))
    log = tmp / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "userland")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmos", "serve", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llmos serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        found = re.search(r"api listening on (http://[\d.]+:\d+)", text)
        url = found.group(1) if found else None
        if url and "start-up finished" in text:
            return Served(url, proc, log)
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"llmos serve did not start in {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_server(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(30)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_server(tmp_path_factory.mktemp("hostile"))
    yield s
    stop_server(s)
