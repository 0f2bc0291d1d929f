from __future__ import annotations

from typing import Any

from bench import report
from bench.report import LLMOS, RAW, RAW_OURS


def _row(name: str, c: int, rps: float, p50: float, errors: int = 0) -> dict[str, Any]:
    return {"contestant": name, "concurrency": c, "rps": rps, "p50_ms": p50, "p99_ms": p50 * 2,
            "errors": errors}


ROWS = [_row(RAW, 1, 100.0, 5.0), _row(RAW, 8, 200.0, 40.0), _row(RAW, 32, 200.0, 160.0),
        _row(LLMOS, 1, 90.0, 5.5), _row(LLMOS, 8, 170.0, 45.0), _row(LLMOS, 32, 190.0, 170.0),
        _row("fastapi", 1, 60.0, 9.0, errors=3)]


def test_ratios_against_raw_and_verdicts() -> None:
    checks = {x["concurrency"]: x for x in report.against_raw(ROWS)}
    assert checks[1]["added_p50_ms"] == 0.5
    assert not checks[1]["met"]  # 0.5 ms <= 1 ms, but 0.9x < 0.95x
    assert checks[8]["ratio"] == 0.85
    assert not checks[8]["met"]  # 0.85x < 0.95x
    assert checks[32]["ratio"] == 0.95
    assert checks[32]["met"]
    fast = {x["concurrency"]: x for x in report.against_raw(
        [_row(RAW, 1, 100.0, 5.0), _row(LLMOS, 1, 99.0, 5.9)])}
    assert fast[1]["met"]
    slow = report.against_raw([_row(RAW, 1, 100.0, 5.0), _row(LLMOS, 1, 99.0, 6.1)])
    assert not slow[0]["met"]  # 1.1 ms added


def test_cpu_per_request_is_carried_when_measured() -> None:
    rows = [{**_row(RAW, 8, 200.0, 40.0), "cpu_ms_per_request": 8.0},
            {**_row(LLMOS, 8, 190.0, 45.0), "cpu_ms_per_request": 6.0}]
    check = report.against_raw(rows)[0]
    assert (check["llmos_cpu_ms"], check["raw_cpu_ms"]) == (6.0, 8.0)
    assert "6.0 / 8.0 (0.75x)" in "\n".join(report._tensor({"rows": rows, "model": {
        "name": "m", "onnx_bytes": 1e6, "sha256": "0" * 64}, "body_bytes": 10}))
    assert "llmos_cpu_ms" not in report.against_raw(ROWS)[0]


def test_against_raw_skips_levels_without_both_figures() -> None:
    assert report.against_raw([_row(LLMOS, 1, 90.0, 5.0)]) == []


def _results() -> dict[str, Any]:
    return {
        "generated": "2026-01-01 00:00 UTC",
        "machine": {"cpu": "Test CPU", "cores": "2", "memory_gib": "24", "kernel": "6.1",
                    "python": "3.11", "wrk": "wrk 4.1.0", "openssl": "OpenSSL 3.0"},
        "settings": {"duration_s": 10, "warmup_s": 3, "wrk_threads": 1,
                     "concurrency": [1, 8, 32]},
        "versions": {"peers": {"fastapi": "1.0"}},
        "tensor": {"rows": ROWS, "notes": {"mlserver": "not measured: pip exited 1"},
                   "settings": {"llmos": "defaults"}, "body_bytes": 120,
                   "model": {"name": "minilm", "onnx_bytes": 90_000_000, "sha256": "ab" * 32}},
        "sealed": {"model": "minilm", "plain_onnx_bytes": 90e6, "sealed_bytes": 80e6,
                   "repeat": 5, "plain_load_ms": 100.0, "sealed_load_ms": 120.0,
                   "sealed_decrypt_ms": 10.0, "sealed_open_ms": 30.0, "load_ratio": 1.2,
                   "plain_load_cpu_ms": 90.0, "sealed_load_cpu_ms": 99.0, "load_cpu_ratio": 1.1,
                   "sealed_loader": "x",
                   "decrypt_pack": "big.sealed", "decrypt_pack_bytes": 1e8,
                   "chunk_size": 1 << 20, "vault_decrypt_mb_s": 900.0,
                   "openssl_decrypt_mb_s": 1000.0, "openssl_encrypt_mb_s": 1100.0,
                   "decrypt_vs_openssl": 0.9},
        "llm": {"rows": [{"contestant": "llama-cpp-python", "ttft_ms": 50.0,
                          "decode_tok_s": 80.0, "tokens": 128, "how": "HTTP",
                          "weights": "Q4_1"}],
                "notes": {"onnxruntime-genai": "not measured: did not install"}},
    }


def test_render_has_every_contestant_target_and_reason() -> None:
    md = report.render(_results())
    assert "| fastapi | 60 (9.0 / 18.0), 3 errors |" in md
    assert "| 8 | 170 | 200 | 0.85x | +5.00 ms | - | >= 0.95x req/s | **missed** |" in md
    assert "Sealed load target <= 1.15x: **missed**." in md  # 1.2x
    assert "sealed / plaintext | 99.0 / 90.0 | 1.10x |" in md
    assert "**mlserver**: not measured: pip exited 1" in md
    assert "**onnxruntime-genai**: not measured: did not install" in md
    assert "| llama-cpp-python | 50.0 | 80.0 | 128 | HTTP | Q4_1 |" in md
    assert "Test CPU, 2 cores" in md
    assert "![benchmark chart](chart.png)" in md


def test_a_failed_section_says_why() -> None:
    results = _results()
    results["sealed"] = {"error": "ModelFolderError: no packs"}
    assert "Not measured: ModelFolderError: no packs" in report.render(results)


def test_the_limit_is_the_faster_raw_loop() -> None:
    rows = [_row(RAW, 1, 100.0, 5.0), _row(RAW_OURS, 1, 120.0, 4.0), _row(LLMOS, 1, 108.0, 5.0),
            _row(RAW, 8, 200.0, 30.0), _row(RAW_OURS, 8, 150.0, 40.0),
            _row(LLMOS, 8, 190.0, 30.0)]
    checks = {x["concurrency"]: x for x in report.against_raw(rows)}
    assert checks[1]["raw"] == RAW_OURS and checks[1]["ratio"] == 0.9
    assert not checks[1]["met"]
    assert checks[8]["raw"] == RAW and checks[8]["ratio"] == 0.95
    doc = _results()
    doc["tensor"] = {**doc["tensor"], "rows": rows}
    assert "| 1 | 108 | 120 *ours* | 0.90x |" in report.render(doc)
