"""A memory fallback is never silent: a server whose weights cannot be mlock'ed still
serves (ready), and says so in /health's reasons, in its log and in a metric."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmos.hw.memory import holds_ipc_lock

from .conftest import Vault, write_config
from .process import Serve

MEMLOCK = 4096  # one page: less than the small pack's buffer


def test_refused_mlock_is_a_warning_a_log_line_and_a_metric(
        small_pack: Path, vault: Vault, tmp_path: Path) -> None:
    prefix: list[str] = []
    if holds_ipc_lock():  # root: drop CAP_IPC_LOCK so the memlock limit applies
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop CAP_IPC_LOCK for this test")
        prefix = [setpriv, "--bounding-set=-ipc_lock"]
    cfg = write_config(tmp_path / "llmos.toml", vault.keyfile,
                       [{"name": "small", "pack": str(small_pack)}],
                       memory={"pin_weights": True})
    srv = Serve(cfg, tmp_path, prefix=prefix, memlock=MEMLOCK)
    try:
        health = srv.settled()
        assert health["status"] == "ready" and health["ready"] is True
        warned = [r for r in health["reasons"]
                  if r.startswith("warning: memory fallback (mlock)")]
        assert warned and f"RLIMIT_MEMLOCK {MEMLOCK} bytes" in warned[0], health["reasons"]
        assert "LimitMEMLOCK=infinity" in warned[0]  # and how to fix it
        # Nor is the process locked as a whole (mlockall would make allocations fail).
        assert any(r.startswith("warning: memory fallback (mlockall): the runtime's own "
                                "copies") for r in health["reasons"]), health["reasons"]
        assert srv.memory().locked == 0  # indeed nothing pinned
        samples = srv.metrics()
        assert samples[("llmos_memory_fallbacks_total", (("what", "mlock"),))] >= 1
        assert samples[("llmos_memory_fallbacks_total", (("what", "mlockall"),))] == 1
        assert samples[("llmos_model_locked_bytes", (("model", "small"),))] == 0
        status, doc = srv.call("GET", "/v2/models/small/ready")
        assert status == 200 and doc["ready"] is True
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines)
    assert any("memory fallback (mlock)" in line for line in srv.lines)
