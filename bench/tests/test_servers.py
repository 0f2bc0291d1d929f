from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.servers import ServerError, ServerSpec, free_port, http_status, serving


def test_serving_waits_for_ready_and_stops_the_process(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "v2" / "health").mkdir(parents=True)
    (tmp_path / "v2" / "health" / "ready").write_text("{}")
    spec = ServerSpec("static", [sys.executable, "-m", "http.server", str(port), "--bind",
                                 "127.0.0.1", "--directory", str(tmp_path)], port,
                      start_timeout_s=30)
    with serving(spec, tmp_path / "logs") as running:
        base = running.base_url
        assert http_status(base + "/v2/health/ready")[0] == 200
        before = running.cpu_s()
        for _ in range(200):
            http_status(base + "/v2/health/ready")
        assert running.cpu_s() > before >= 0  # the server's CPU time, read from /proc
    assert http_status(base + "/v2/health/ready", timeout_s=1)[0] == 0  # gone
    assert (tmp_path / "logs" / "static.log").exists()


def test_a_server_that_exits_early_is_an_error(tmp_path: Path) -> None:
    spec = ServerSpec("quitter", [sys.executable, "-c", "raise SystemExit(3)"], free_port(),
                      start_timeout_s=30)
    with pytest.raises(ServerError, match="exited with 3"), serving(spec, tmp_path):
        pass


def test_a_server_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    spec = ServerSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                      free_port(), start_timeout_s=1)
    with pytest.raises(ServerError, match="not ready"), serving(spec, tmp_path):
        pass
