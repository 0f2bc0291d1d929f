"""server.worker_nice end to end: the server built from a configuration runs its off-loop
work (the loop's default executor: bodies decoded, models loaded, sessions built) and its
inference below the event loop's priority, and with 0 at the loop's own."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .conftest import Packs, Start, wait_settled, write_config

if TYPE_CHECKING:
    from conftest import Priorities  # tests/conftest.py


async def test_the_server_works_off_the_loop_below_its_priority(
        start_app: Start, packs: Packs, tmp_path: Path, priorities: Priorities) -> None:
    increment = 0 if priorities.workers is None else priorities.workers - priorities.base
    path = write_config(
        tmp_path / "llmos.toml",
        {"server": {"port": 0, "admin_port": 0, "state_dir": str(tmp_path / "state"),
                    "packs_dir": str(packs.dir), "worker_nice": increment},
         "keys": {"provider": "keyfile", "keyfile": str(packs.keyfile),
                  "allow_dev_key": True}},
        [{"name": "alpha", "pack": "alpha.llmos"}])
    client, _ = await start_app(path)
    assert (await wait_settled(client))["status"] == "ready"
    want = priorities.base if priorities.workers is None else priorities.workers
    seen: list[tuple[int, bool]] = []

    def work() -> None:
        seen.append((priorities.nice_of(), threading.current_thread() is threading.main_thread()))

    await asyncio.to_thread(work)
    assert seen == [(want, False)]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    r = await client.post("/v2/models/alpha/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]})
    assert r.status == 200
    y = np.array((await r.json())["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(y, x @ packs.w + packs.b, rtol=1e-5)
    assert priorities.nice_of() == priorities.base  # the event loop's thread
