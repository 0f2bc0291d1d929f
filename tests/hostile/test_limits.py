"""Connection, in-flight and time limits at the HTTP edge, on real sockets (no model: the
limits sit in front of every handler)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from llmos.web.admission import Admission, Limits, read_body
from llmos.web.errors import error_middleware
from llmos.web.server import Listener, Server


async def _slow(request: web.Request) -> web.Response:
    body = await read_body(request)
    await asyncio.sleep(float(request.query.get("s", "0")))
    return web.Response(body=body)


def _app(limits: Limits | None = None) -> web.Application:
    mws = [error_middleware()]
    app = web.Application(middlewares=mws)
    if limits is not None:
        from llmos.web.admission import LIMITS
        mws.append(Admission(limits).middleware())
        app = web.Application(middlewares=mws)
        app[LIMITS] = limits
    app.router.add_post("/x", _slow)
    app.router.add_get("/health", lambda r: asyncio.sleep(0, web.Response(text="ok")))
    return app


@contextlib.asynccontextmanager
async def _running(app: web.Application, **kw: float) -> AsyncIterator[tuple[Server, str, int]]:
    """The app behind a real listener on a free port: (server, host, port); stopped after."""
    server = Server([Listener("api", app, "127.0.0.1", 0)], **kw)  # type: ignore[arg-type]
    await server.start()
    try:
        host, port = server.addresses["api"]
        yield server, host, port
    finally:
        await server.stop()


def _limits(max_requests: int, body_timeout_s: float) -> Limits:
    """Admission limits with 1 MiB bodies and in-flight bytes."""
    return Limits(max_requests=max_requests, max_bytes=1 << 20, max_body_bytes=1 << 20,
                  body_timeout_s=body_timeout_s, offload_bytes=1024)


async def _request(host: str, port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_connections_beyond_the_cap_get_503_and_the_others_are_served() -> None:
    async with _running(_app(), max_connections=2) as (server, host, port):
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        refused = await _request(host, port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in refused
        reader, writer = held[0]
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.05)  # the closed one is counted out: room for a new one
        again = await _request(host, port,
                               b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200"), again
        assert server.limits["api"].refused == 1
        for _, w in held:
            w.close()


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with _running(_app(), idle_timeout_s=0.3) as (_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"ok")
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        assert time.monotonic() - t0 < 5


async def test_work_in_flight_beyond_the_cap_is_503_with_retry_after() -> None:
    limits = _limits(max_requests=2, body_timeout_s=5)
    post = b"POST /x?s=0.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with _running(_app(limits)) as (_, host, port):
        answers = await asyncio.gather(*(_request(host, port, post) for _ in range(5)))
        firsts = sorted(a.split(b"\r\n")[0] for a in answers)
        assert firsts.count(b"HTTP/1.1 200 OK") == 2, firsts
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert len(refused) == 3 and all(b"Retry-After: 1" in a for a in refused)
        health = await _request(host, port,
                                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200")  # GETs are never counted


async def test_a_trickling_body_gets_408() -> None:
    limits = _limits(max_requests=8, body_timeout_s=0.3)
    async with _running(_app(limits)) as (_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
        answer = await asyncio.wait_for(reader.readuntil(b"body_timeout_s"), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


async def test_headers_trickled_byte_by_byte_are_cut_at_the_idle_timeout() -> None:
    """Slowloris: a header line every 0.1 s keeps no connection past server.idle_timeout_s
    (0.5 s here); the server answers /health meanwhile."""
    async with _running(_app(), idle_timeout_s=0.5) as (_, host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        while not reader.at_eof() and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.1)
            if not writer.is_closing():
                writer.write(b"X-Slow: 1\r\n")
        held = time.monotonic() - t0
        writer.close()
        assert reader.at_eof() and held < 5, f"held open {held:.1f} s"
        health = await _request(host, port,
                                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200")
