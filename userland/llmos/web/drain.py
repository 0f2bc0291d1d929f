"""Drain: before the listeners close, be not-ready, keep serving a while, finish what is in flight.

On SIGTERM (``systemctl stop``, a reboot, an update) the server calls ``Drain.run``:

1. ``draining`` is set at once: the readiness probes answer not-ready (``/v2/health/ready``
   400, ``/health`` and ``/health/ready`` 503) and every response carries
   ``Connection: close``, so load balancers take this appliance out and keep-alive clients
   reconnect elsewhere;
2. requests keep being served for ``drain_s`` seconds (the load balancer's detection time);
3. then up to ``grace_s`` seconds for the requests in flight to finish.

The middleware counts requests in flight (a streamed response counts until it is written).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmos.serving.codec import dumps

log = logging.getLogger(__name__)

#: Readiness probes, and the status each answers while draining.
NOT_READY_STATUS = {"/v2/health/ready": 400, "/health": 503, "/health/ready": 503}


@dataclass(frozen=True)
class DrainReport:
    served_while_draining: int
    left_in_flight: int  # > 0: the grace period ran out with these still running
    seconds: float


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._served_while_draining = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def middleware(self) -> Middleware:
        @web.middleware
        async def drain(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.draining and request.path in NOT_READY_STATUS:
                probe = web.Response(status=NOT_READY_STATUS[request.path],
                                     body=dumps({"ready": False, "status": "draining",
                                                 "reasons": ["the server is shutting down"]}),
                                     content_type="application/json")
                probe.force_close()
                return probe
            self.in_flight += 1
            self._idle.clear()
            try:
                resp = await handler(request)
                if self.draining:
                    self._served_while_draining += 1
                    if not resp.prepared:
                        resp.force_close()
                return resp
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()

        return drain

    async def run(self, drain_s: float, grace_s: float) -> DrainReport:
        """Not ready now; serve ``drain_s`` more; wait up to ``grace_s`` for in-flight work."""
        started = time.monotonic()
        self.draining = True
        log.info("draining: not ready; serving %.1f s more, then up to %.1f s for %d "
                 "request(s) in flight", drain_s, grace_s, self.in_flight)
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("drain: %d request(s) still in flight after %.1f s; stopping anyway",
                        self.in_flight, grace_s)
        report = DrainReport(self._served_while_draining, self.in_flight,
                             time.monotonic() - started)
        log.info("drained in %.1f s (%d request(s) served while draining)", report.seconds,
                 report.served_while_draining)
        return report


DRAIN = web.AppKey("drain", Drain)
