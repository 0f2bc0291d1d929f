"""How the fleet client sorts an appliance's answers and the worker acts on them (a stdlib
HTTP server plays the appliance)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmos.fleet.appliance import Appliance, Busy, Rejected, Unavailable
from llmos.fleet.job import Kind, PartitionSpec
from llmos.fleet.worker import embed_partition, not_ready_reason


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

    do_GET = do_POST

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


def _one(value: float) -> tuple[int, dict[str, str], bytes]:
    return (200, {}, json.dumps({"outputs": [{"name": "embedding", "shape": [1, 2],
                                              "data": [value, value]}]}).encode())


SLOW = (504, {}, b'{"error": "no result within 30 s"}')


def test_a_partition_past_the_deadline_is_sent_item_by_item(server: str) -> None:
    spec = PartitionSpec("m", Kind.EMBEDDINGS, 1, 8)
    items = [{"id": i, "text": f"t{i}"} for i in range(3)]
    Scripted.script = [SLOW, _one(0), _one(1), _one(2)]
    got = embed_partition(Appliance(server), spec, items)
    assert got == [{"id": i, "embedding": [i, i]} for i in range(3)]
    assert len(Scripted.seen) == 4 and not Scripted.script

    # A single item past the deadline, or any other failure, fails the partition (retried
    # elsewhere by Dask); so does an item that is still too slow alone.
    for script, partition in (([SLOW], items[:1]), ([(500, {}, b"{}")], items),
                              ([SLOW, _one(0), SLOW], items[:2])):
        Scripted.script = list(script)
        with pytest.raises(Unavailable) as exc:
            embed_partition(Appliance(server), spec, partition)
        assert exc.value.status in (500, 504) and not Scripted.script


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (as an appliance makes one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appliance")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_an_https_appliance_is_trusted_only_through_its_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        Scripted.script = [OK]
        assert Appliance(url, "k" * 20, ca_file=cert).embed("m", ["a", "b"]) == [[1, 2], [3, 4]]
        assert Scripted.seen[-1]["Authorization"] == "Bearer " + "k" * 20
        seen = len(Scripted.seen)
        with pytest.raises(Unavailable) as exc:  # the system's CAs do not know it
            Appliance(url, "k" * 20, timeout_s=5).embed("m", ["a"])
        assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
        assert len(Scripted.seen) == seen, "the key was sent to an unverified server"
    finally:
        httpd.shutdown()


def test_a_worker_says_why_its_appliance_is_not_ready(server: str) -> None:
    assert "Connection refused" in not_ready_reason(Appliance("http://127.0.0.1:9"))
    Scripted.script = [(400, {}, b'{"ready": false, "reasons": ["loading minilm"]}')]
    assert "loading minilm" in not_ready_reason(Appliance(server))
