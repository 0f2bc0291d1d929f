"""The API listener of a server that cannot start: it says why, and stays up.

Under systemd a configuration that does not load would exit, be restarted, exit again,
and after the unit's start limit leave the appliance failed until someone power-cycles it,
with nothing to ask why. Instead ``llmos serve`` keeps this app on the API address:
/health and /health/ready answer 503 with the reason, /health/live and /v2/health/live 200
(the process is alive), /v2/health/ready 400, everything else 503; READY=1 is sent with
the reason as STATUS=.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmos.systemd import Notifier
from llmos.web.api import public
from llmos.web.server import Listener, Server, run


def fallback_app(reason: str) -> web.Application:
    said = public.text(reason)

    def answer(doc: dict[str, Any], status: int) -> web.Response:
        return web.json_response(doc, status=status)

    async def health(request: web.Request) -> web.Response:
        return answer({"status": "UNAVAILABLE", "ready": False, "reasons": [said],
                       "models": {}}, 503)

    async def live(request: web.Request) -> web.Response:
        return answer({"live": True}, 200)

    async def ready(request: web.Request) -> web.Response:
        return answer({"ready": False, "status": "UNAVAILABLE", "reasons": [said]},
                      503 if request.path == "/health/ready" else 400)

    async def anything(request: web.Request) -> web.Response:
        return answer({"error": said, "hint": "fix the configuration; the server is not "
                       "serving models", "type": "NotReadyError"}, 503)

    app = web.Application()
    app.router.add_get("/health", health)
    for prefix in ("", "/v2"):
        app.router.add_get(f"{prefix}/health/live", live)
        app.router.add_get(f"{prefix}/health/ready", ready)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def serve_reason(host: str, port: int, reason: str, notifier: Notifier) -> None:
    """Serve ``fallback_app`` until SIGTERM/SIGINT, READY=1 sent with the reason."""
    notifier.ready(public.text(reason))
    await run(Server([Listener("api", fallback_app(reason), host, port)]), notifier)
