"""The published contract: /openapi.json describes exactly the API app's routes, and a
property-based fuzz run (schemathesis) against a running ``llmos serve`` finds no 5xx, no
answer that breaks the document, and leaves the server alive."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests
from aiohttp import web

from llmos.web.api.app import build_api_app
from llmos.web.api.openapi import document

from .conftest import Served


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds one to every GET
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), str(path)))
    return routes


def test_the_document_lists_every_route_and_only_those() -> None:
    app = build_api_app(object(), 1024)  # type: ignore[arg-type,unused-ignore]  # routes only
    documented = {(method, path) for path, ops in document()["paths"].items()
                  for method in ops}
    assert _app_routes(app) == documented


def test_the_document_is_served_and_names_the_models(served: Served) -> None:
    doc = requests.get(f"{served.url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    param = doc["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0]
    assert param["example"] in ("minilm", "smollm2")
    assert "components" not in doc  # no API keys here: no security scheme, no 401s


def test_schemathesis_finds_no_5xx_and_no_schema_breach(served: Served, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed (the test extra)"
    report = tmp_path / "report.json"
    # One worker: with two, schemathesis's threads build ASTs at once (hypothesis describes
    # its lambdas), and CPython 3.11's AST constructor keeps one recursion counter per
    # interpreter (gh-106905): a run crashed with "SystemError: AST constructor recursion
    # depth mismatch" after 2,360 passing cases.
    run = subprocess.run(
        [st, "run", f"{served.url}/openapi.json", "--max-examples", "80",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance",
         "--request-timeout", "60", "--workers", "1", "--generation-deterministic",
         "--suppress-health-check", "all", "--no-color",
         "--report", "ndjson", "--report-ndjson-path", str(report)],
        capture_output=True, text=True, timeout=900, check=False,
        cwd=tmp_path)  # schemathesis keeps its cache (.schemathesis/) in the cwd
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    events = report.read_text()
    sent = len(re.findall(r'"status_code":', events))
    assert sent >= 2000, f"only {sent} requests were generated\n{out[-3000:]}"
    assert served.alive()
    # every operation of the document was exercised (schemathesis leaves out the document's
    # own location)
    doc = requests.get(f"{served.url}/openapi.json", timeout=10).json()
    ops = {f"{m.upper()} {p}" for p, v in doc["paths"].items() for m in v} - {
        "GET /openapi.json"}
    assert ops == set(re.findall(r'"label":"([A-Z]+ [^"]+)"', events))
