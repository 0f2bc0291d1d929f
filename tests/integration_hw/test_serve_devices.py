"""``llmos serve`` places models with the machine's real inventory (udev): on a machine
without an NVIDIA GPU, a model that needs one is UNAVAILABLE and says which GPU is missing,
and one allowed to fall back serves on the CPU and says so; the rest serve."""

from __future__ import annotations

from pathlib import Path

from .conftest import Vault, write_config
from .process import Serve


def test_no_gpu_means_unavailable_with_the_reason_or_a_visible_fallback(
        no_nvidia_gpu: None, small_pack: Path, vault: Vault, tmp_path: Path) -> None:
    models: list[dict[str, object]] = [{"name": "cpu", "pack": str(small_pack)},
              {"name": "wants-gpu", "pack": str(small_pack), "device": "cuda"},
              {"name": "fallback", "pack": str(small_pack), "device": "cuda:0",
               "cpu_fallback": True}]
    srv = Serve(write_config(tmp_path / "llmos.toml", vault.keyfile, models), tmp_path)
    try:
        health = srv.settled()
        assert health["status"] == "degraded" and health["ready"] is True, health
        wants = health["models"]["wants-gpu"]
        assert (wants["state"], wants["placement"]) == ("UNAVAILABLE", "unavailable")
        assert wants["reason"].startswith("no CUDA GPU is present (found: no CUDA GPU)")
        status, doc = srv.call("GET", "/v2/models/wants-gpu/ready")
        assert status == 400 and doc["reason"] == wants["reason"]
        status, doc = srv.call("POST", "/v2/repository/models/wants-gpu/load")
        assert status == 503 and "no CUDA GPU is present" in doc["error"]

        fallback = health["models"]["fallback"]
        assert (fallback["state"], fallback["placement"], fallback["device"]) == \
            ("READY", "fallback", "cpu")
        assert "cuda:0 is absent" in fallback["reason"]
        assert any(r.startswith("warning: model fallback runs on cpu") for r in health["reasons"])
        assert health["models"]["cpu"]["state"] == "READY"
        assert health["models"]["cpu"]["reason"] == ""
    finally:
        code = srv.stop()
    assert code == 0, "".join(srv.lines)
    log = "".join(srv.lines)
    assert "unavailable wants-gpu: no CUDA GPU is present" in log
    assert "model fallback 1 READY on cpu (fallback)" in log
