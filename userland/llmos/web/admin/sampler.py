"""Background work of the admin app, each a ``cleanup_ctx`` pair: the chart sampler, the
log ring on the root logger, and provisioning the admin password at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import web

from llmos.admin.password_file import Source, provision
from llmos.admin.series import ChartPoint, reduce
from llmos.web.admin.state import ADMIN
from llmos.web.keys import DATAPLANE

log = logging.getLogger(__name__)

BANNER = """
========================================================================
  LLM OS admin console: a password was generated (demo mode)

      password: {password}

  It is shown once: only its scrypt hash is kept, in {path}
  Change it with: llmos admin set-password
========================================================================
"""


async def sample_once(app: web.Application) -> ChartPoint:
    """Read the metrics now and add a chart point. The reading runs in a worker thread: it
    reads /proc/self/smaps_rollup (milliseconds for a process with models mapped), which
    would otherwise stall every request on the event loop once per interval."""
    samples = await asyncio.to_thread(lambda: tuple(app[DATAPLANE].metrics.samples()))
    return app[ADMIN].series.add(reduce(samples, time.time()))


async def _sample_forever(app: web.Application, interval_s: float) -> None:
    while True:
        try:
            await sample_once(app)
        except Exception:  # a bad scrape must not stop the charts
            log.exception("admin: sampling the metrics failed")
        await asyncio.sleep(interval_s)


async def sampler(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        _sample_forever(app, app[ADMIN].options.sample_interval_s), name="admin-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def log_ring(app: web.Application) -> AsyncIterator[None]:
    ring = app[ADMIN].logs
    root = logging.getLogger()
    root.addHandler(ring)
    yield
    root.removeHandler(ring)


async def password(app: web.Application) -> AsyncIterator[None]:
    state = app[ADMIN]
    options = state.options
    outcome = await asyncio.to_thread(provision, options.password_file, options.environ,
                                      generate=options.generate_password)
    if outcome.generated is not None:
        # Straight to the terminal, never through logging: the Logs page and the journal
        # must not hold the password.
        sys.stderr.write(BANNER.format(password=outcome.generated, path=options.password_file))
        sys.stderr.flush()
    if outcome.source is Source.NONE:
        log.error("admin console: no password set, logins are refused")
    yield
