"""What the pages show: the JSON behind Overview, Accelerators, Memory, Models, Charts and
Logs, read from a real supervisor, device controller and memory pool."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from llmos.admin import system as admin_system
from llmos.admin.system import parse_journal, read_tpm

from .conftest import AdminServer, Start, login
from .devices import Machine, amd_gpu, npu


async def test_overview_reports_health_key_and_the_absent_tpm_and_journal(
        start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    doc = await (await srv.admin.get("/api/overview")).json()
    assert doc["health"]["status"] == "degraded"  # scaler serves, foreign failed
    assert doc["models_ready"] == 1 and doc["models_total"] == 2
    assert doc["health"]["key"]["released"] is True
    assert doc["health"]["key"]["provider"] == "keyfile"
    assert doc["version"] and doc["uptime_s"] >= 0
    tpm = read_tpm()
    assert doc["tpm"]["present"] is tpm.present
    if not tpm.present:
        assert "unavailable" in doc["tpm"]["pcr_note"]
    assert isinstance(doc["boot"]["available"], bool)
    if not doc["boot"]["available"]:
        assert doc["boot"]["reason"]


def test_pcrs_are_read_from_sysfs(tmp_path: Path) -> None:
    bank = tmp_path / "sys/class/tpm/tpm0/pcr-sha256"
    bank.mkdir(parents=True)
    (bank / "0").write_text("AB" * 32 + "\n")
    (bank / "7").write_text("00" * 32 + "\n")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/tpmrm0").touch()
    info = read_tpm(tmp_path)
    assert info.present and info.description == "TPM 2.0 (tpm0)"
    assert info.pcrs == {0: "ab" * 32, 7: "00" * 32}
    assert read_tpm(tmp_path / "nowhere").present is False


def test_journal_json_lines_become_log_lines() -> None:
    lines = parse_journal([
        '{"MESSAGE":"Started llmos.service","PRIORITY":"6","SYSLOG_IDENTIFIER":"systemd",'
        '"__REALTIME_TIMESTAMP":"1700000000000000"}',
        '{"MESSAGE":[104,105,255],"PRIORITY":"3","_COMM":"llmos"}',
        "not json", '{"NO_MESSAGE":1}'])
    assert [(x.level, x.source, x.message) for x in lines] == [
        ("INFO", "systemd", "Started llmos.service"), ("ERROR", "llmos", "hi\ufffd")]
    assert lines[0].t == 1700000000.0


async def test_journal_reader_says_why_when_there_is_none() -> None:
    journal = await admin_system.read_journal(5, journalctl="no-such-journalctl")
    assert not journal.available and "not installed" in journal.reason


async def test_models_show_sizes_ratio_load_time_and_failure_reasons(
        start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    doc = await (await srv.admin.get("/api/models")).json()
    rows = {m["name"]: m for m in doc["models"]}
    scaler, foreign = rows["scaler"], rows["foreign"]
    assert scaler["state"] == "READY" and scaler["load_time_s"] > 0
    assert scaler["size_packed"] > 0 and scaler["size_plain"] > 0
    assert scaler["compression_ratio"] == scaler["size_plain"] / scaler["size_packed"]
    assert scaler["runtime"] == "onnx" and scaler["quantization"] == "none"
    assert foreign["state"] == "FAILED" and "fleet key" in foreign["reason"]
    assert foreign["error_type"] == "WrongKeyError"
    assert set(doc["playground"]) >= {"v2"}


async def test_accelerators_and_hotplug_history(start_admin: Start, tmp_path: Path) -> None:
    machine = Machine(tmp_path / "root")
    machine.plug(amd_gpu("0000:03:00.0", 0))
    controller = machine.controller()
    await controller.start()
    try:
        srv: AdminServer = await start_admin(devices=controller)
        await login(srv.admin)
        doc = await (await srv.admin.get("/api/accelerators")).json()
        assert doc["available"] is True
        [gpu] = doc["accelerators"]
        assert gpu["address"] == "0000:03:00.0" and gpu["vendor"] == "amd"
        assert gpu["claimed"] is True and gpu["memory_total_bytes"] == 24 * 1024**3
        assert [e["action"] for e in doc["history"]] == ["added"]
        machine.plug(npu("0000:04:00.0"))
        machine.unplug("0000:03:00.0")
        controller.request()
        for _ in range(200):
            doc = await (await srv.admin.get("/api/accelerators")).json()
            if len(doc["history"]) == 3:
                break
            await asyncio.sleep(0.02)
        assert [(e["action"], e["device"]) for e in doc["history"]][:2] == [
            ("added", "0000:04:00.0"), ("removed", "0000:03:00.0")]
        assert [a["address"] for a in doc["accelerators"]] == ["0000:04:00.0"]
    finally:
        await controller.stop()


async def test_accelerators_page_says_when_no_controller_runs(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    doc = await (await srv.admin.get("/api/accelerators")).json()
    assert doc["available"] is False and "not running" in doc["reason"]


async def test_memory_reports_ram_hugepages_and_per_model_bytes(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    doc = await (await srv.admin.get("/api/memory")).json()
    assert doc["pool"] is True
    assert doc["ram_total_bytes"] > doc["ram_available_bytes"] > 0
    assert doc["process_rss_bytes"] > 0
    assert doc["hugepages_total"] >= doc["hugepages_used"] >= 0
    rows = {m["name"]: m for m in doc["models"]}
    scaler = srv.supervisor.registry.status("scaler")
    assert rows["scaler"]["plain_bytes"] == scaler.size_plain > 0
    assert rows["scaler"]["mapped_bytes"] >= scaler.size_plain  # the decrypted weights
    assert (rows["scaler"]["hugepage_bytes"] + rows["scaler"]["locked_bytes"] > 0
            or doc["fallbacks"])  # pinned, or the page says why not
    assert rows["foreign"]["plain_bytes"] == 0 and rows["foreign"]["mapped_bytes"] is None


async def test_charts_gain_points_and_count_requests(start_admin: Start) -> None:
    srv: AdminServer = await start_admin(chart_window_s=0.5)
    await login(srv.admin)
    first = await (await srv.admin.get("/api/charts")).json()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                        "data": [1, 2, 3, 4]}]}
    for _ in range(20):
        assert (await srv.api.post("/v2/models/scaler/infer", json=body)).status == 200
    await asyncio.sleep(0.3)
    doc = await (await srv.admin.get("/api/charts")).json()
    cols = doc["columns"]
    assert len(cols["t"]) > len(first["columns"]["t"])
    assert max(cols["requests_per_s"]) > 0
    assert any(v is not None and v > 0 for v in cols["p50_ms"])
    newest = cols["t"][-1]
    later = await (await srv.admin.get(f"/api/charts?since={newest}")).json()
    assert all(t > newest for t in later["columns"]["t"])


async def test_logs_show_the_in_process_ring_on_a_host(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    logging.getLogger("llmos.test").warning("a line for the Logs page")
    doc = await (await srv.admin.get("/api/logs")).json()
    assert doc["source"] == "memory"
    assert any(x["message"] == "a line for the Logs page" and x["level"] == "WARNING"
               for x in doc["lines"])
    assert not any("admin-test-password" in x["message"] for x in doc["lines"])


async def test_the_playground_serves_the_real_apis_behind_the_login(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                        "data": [0.5, 1, 1.5, 2]}]}
    url = "/api/playground/v2/models/scaler/infer"
    assert (await srv.admin.post(url, json=body)).status == 401
    token = await login(srv.admin)
    assert (await srv.admin.post(url, json=body)).status == 403  # no CSRF token
    resp = await srv.admin.post(url, json=body, headers={"X-CSRF-Token": token})
    assert resp.status == 200
    assert (await resp.json())["outputs"][0]["data"] == [1, 2, 3, 4]
    success = srv.supervisor.metrics.model("scaler", "1").success
    assert success >= 1  # counted like any other request
    doc = await (await srv.admin.get("/api/models")).json()
    if "openai" in doc["playground"]:  # no LLM here: the list says each model's kind
        models = await (await srv.admin.get("/api/playground/v1/models")).json()
        kinds = {m["id"]: m["kind"] for m in models["data"]}
        assert kinds["scaler"] == "tensor" and "causal-lm" not in kinds.values()
