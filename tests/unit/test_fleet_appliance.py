"""How the fleet client sorts an appliance's answers (a stdlib HTTP server plays the appliance)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from llmos.fleet.appliance import Appliance, Busy, Rejected, Unavailable


class Scripted(BaseHTTPRequestHandler):
    script: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        status, headers, body = type(self).script.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Scripted.seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


OK = (200, {}, json.dumps({"outputs": [{"name": "embedding", "shape": [2, 2],
                                        "data": [1, 2, 3, 4]}]}).encode())


def test_embeddings_split_per_item_and_key_sent(server: str) -> None:
    Scripted.script = [OK]
    assert Appliance(server, "k" * 20).embed("m", ["a", "b"]) == [[1, 2], [3, 4]]
    assert Scripted.seen[0]["Authorization"] == "Bearer " + "k" * 20


def test_a_full_queue_is_waited_out(server: str) -> None:
    busy = (503, {"Retry-After": "0"}, b'{"error": "queue full"}')
    Scripted.script = [busy, busy, OK]
    assert Appliance(server, busy_retries=3).embed("m", ["a", "b"])[1] == [3, 4]
    Scripted.script = [busy, busy]
    with pytest.raises(Unavailable) as exc:
        Appliance(server, busy_retries=1).embed("m", ["a", "b"])
    assert exc.value.status == 503 and not isinstance(exc.value, Busy)


@pytest.mark.parametrize("status, kind", [(400, Rejected), (413, Rejected), (422, Rejected),
                                          (401, Unavailable), (404, Unavailable),
                                          (500, Unavailable)])
def test_statuses_are_sorted(server: str, status: int, kind: type[Exception]) -> None:
    Scripted.script = [(status, {}, b'{"error": "no"}')]
    with pytest.raises(kind) as exc:
        Appliance(server).embed("m", ["a"])
    assert getattr(exc.value, "status", None) == status


def test_nobody_there_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        Appliance("http://127.0.0.1:9", timeout_s=2).embed("m", ["a"])
    assert not Appliance("http://127.0.0.1:9").ready()
