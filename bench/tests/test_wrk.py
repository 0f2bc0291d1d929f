from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bench import wrk

SAMPLE = """Running 10s test @ http://127.0.0.1:8000/v2/models/minilm/infer
  1 threads and 8 connections
BENCH-RESULT {"requests":1200,"duration_us":10000000,"bytes":99,"p50_us":6500,"p90_us":9000,\
"p99_us":12000,"mean_us":6600.5,"max_us":20000,\
"errors":{"connect":0,"read":1,"write":0,"status":200,"timeout":2}}
"""


def test_parse_reads_the_result_line() -> None:
    r = wrk.parse(SAMPLE)
    assert r.requests == 1000  # non-2xx answers are not counted as served
    assert r.duration_s == 10.0
    assert r.p50_ms == 6.5
    assert r.p99_ms == 12.0
    assert r.errors == 203


def test_parse_without_result_line_fails() -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse("Running 10s test\nsocket errors\n")


class _Counter(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        self.bodies.append(self.rfile.read(n))
        try:
            self.send_response(200 if self.path == "/ok" else 500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # wrk closes its connections when the time is up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Counter.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench)")
def test_the_lua_script_posts_the_body_and_counts(server: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"inputs": [{"name": "text", "data": ["hello"]}]}')
    result = wrk.run(f"{server}/ok", body, 2, wrk.WrkSettings(duration_s=1, warmup_s=0))
    assert result.requests > 0
    assert result.errors == 0
    assert set(_Counter.bodies) == {body.read_bytes()}
    # every completed request reached the server (some may still be in flight at the end)
    assert result.requests <= len(_Counter.bodies)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench)")
def test_error_answers_are_errors_not_throughput(server: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    result = wrk.run(f"{server}/fail", body, 1, wrk.WrkSettings(duration_s=1, warmup_s=0))
    assert result.requests == 0
    assert result.errors > 0
