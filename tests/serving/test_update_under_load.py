"""The issue's check: a load test against a model while its new pack version takes over,
zero failed requests. A real ``llmos serve`` with the real MiniLM pack, the stock
``tritonclient`` sending v2 requests from four threads, the new version uploaded on the
admin page as an operator would; bad packs uploaded under the same load change nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from bench.model_update import DEMO_PLAIN, Admin, Load, Server, seal_versions, wait_update
from bench.model_update import write_config as update_config

SETTLE_S = 1.5


@pytest.fixture(scope="module")
def minilm_plain(request: pytest.FixtureRequest) -> Path:
    """The plain MiniLM pack: the demo's (``make demo-packs``), else the test cache's."""
    if DEMO_PLAIN.exists():
        return DEMO_PLAIN
    path: Path = request.getfixturevalue("minilm_demo")["minilm.llmpack"]
    return path


def _tampered(path: Path) -> None:
    """Flip one byte in the middle of the sealed body: its chunk no longer authenticates."""
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def _model(server: Server) -> dict[str, Any]:
    doc: dict[str, Any] = server.health()["models"]["minilm"]
    return doc


def test_no_request_fails_while_a_new_version_takes_over(minilm_plain: Path,
                                                         tmp_path: Path) -> None:
    keyfile, packs = seal_versions(minilm_plain, tmp_path, ("1", "2", "3"))
    _tampered(packs["3"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
    server = Server(update_config(tmp_path, keyfile, "minilm", packs["1"]), env)
    try:
        assert server.wait_ready()["status"] == "ready"
        admin = Admin(server.port("admin"))
        with Load(server.port("api"), "minilm", clients=4).running() as load:


            time.sleep(SETTLE_S)
            # bad input under load first: a pack that fails to load, then the serving version
            bad = admin.upload(packs["3"])
            assert bad.status_code == 422, bad.text
            assert _model(server)["update"]["state"] == "FAILED"
            assert _model(server)["version"] == "1"
            same = admin.upload(packs["1"])
            assert same.status_code == 409, same.text
            began = time.time()
            resp = admin.upload(packs["2"])
            assert resp.status_code == 200, resp.text
            update = wait_update(server, "minilm")
            done = time.time()
            time.sleep(SETTLE_S)
        meta = requests.get(f"http://127.0.0.1:{server.port('api')}/v2/models/minilm",
                            timeout=10).json()
    finally:
        server.stop()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(load.outcomes)} requests failed: " \
        f"{failures[:5]}"
    assert (update["state"], update["version"], update["reason"]) == ("DONE", "2", "")
    assert meta["versions"] == ["2"]
    assert len(load.outcomes) >= 20, "too few requests to say anything"
    before = [o.version for o in load.outcomes if o.done < began]
    after = [o.version for o in load.outcomes if o.sent > done]
    assert before and set(before) == {"1"}
    assert after and set(after) == {"2"}
    assert {o.version for o in load.outcomes} == {"1", "2"}
