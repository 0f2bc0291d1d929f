"""The Dask side: a worker stands for one appliance and runs partitions against its API.

``llmos fleet worker --appliance URL`` waits until the appliance is ready, asks which
models it serves, and joins the scheduler with one Dask resource per model
(``resource_name(model) = slots``: how many partitions that appliance takes at once). The
appliance's URL and API key stay in this process (a worker plugin holds them); tasks carry
only a ``PartitionSpec`` and the items.

When the appliance stops answering (killed, draining, rebooting), the partition fails and
the worker leaves the cluster, so Dask's retries put the partition on another appliance;
the command then waits for the appliance to be ready again and rejoins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distributed import Worker, WorkerPlugin, get_worker

from llmos.fleet.appliance import Appliance, ApplianceError, Rejected, Unavailable
from llmos.fleet.job import Kind, PartitionSpec, item_id, messages_of, resource_name, text_of

log = logging.getLogger(__name__)

PLUGIN = "llmos-appliance"
REFUSED_WAIT_S = 30.0


class ApplianceBinding(WorkerPlugin):
    """Ties a worker to its appliance (set in-process: never pickled, never sent)."""

    name = PLUGIN

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance


def bound_appliance() -> Appliance:
    plugin = get_worker().plugins.get(PLUGIN)
    if not isinstance(plugin, ApplianceBinding):
        raise RuntimeError("this Dask worker is not bound to an appliance "
                           "(start workers with 'llmos fleet worker')")
    return plugin.appliance


def _error(item: Any, exc: Exception) -> dict[str, Any]:
    status = exc.status if isinstance(exc, Rejected) else 400
    return {"id": item_id(item), "error": str(exc), "status": status}


def _embed_one(appliance: Appliance, spec: PartitionSpec, item: Any) -> dict[str, Any]:
    try:
        vector = appliance.embed(spec.model, [text_of(item)])[0]
    except (Rejected, ValueError) as exc:
        return _error(item, exc)
    return {"id": item_id(item), "embedding": vector}


#: The appliance's answer when a request ran past its deadline (server.request_timeout_s).
DEADLINE_PASSED = 504


def embed_partition(appliance: Appliance, spec: PartitionSpec,
                    items: list[Any]) -> list[dict[str, Any]]:
    """One request for the whole partition; a refused one is split per item, so one bad
    item costs only its own result. So is one that ran past the appliance's deadline: a
    slow appliance (emulated, overloaded) still serves single items, where the partition
    sent whole would only fail again on each retry."""
    try:
        texts = [text_of(item) for item in items]
        vectors = appliance.embed(spec.model, texts)
    except (Rejected, ValueError):
        return [_embed_one(appliance, spec, item) for item in items]
    except Unavailable as exc:
        if exc.status != DEADLINE_PASSED or len(items) == 1:
            raise
        log.warning("%s: %d items ran past the deadline together; sending them one by one",
                    appliance.url, len(items))
        return [_embed_one(appliance, spec, item) for item in items]
    return [{"id": item_id(item), "embedding": v} for item, v in zip(items, vectors, strict=True)]


def chat_partition(appliance: Appliance, spec: PartitionSpec,
                   items: list[Any]) -> list[dict[str, Any]]:
    def one(item: Any) -> dict[str, Any]:
        try:
            return {"id": item_id(item),
                    **appliance.chat(spec.model, messages_of(item), spec.max_tokens)}
        except (Rejected, ValueError) as exc:
            return _error(item, exc)

    if spec.concurrency == 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(spec.concurrency, thread_name_prefix="llmos-chat") as pool:
        return list(pool.map(one, items))  # Unavailable propagates: the partition fails


_RUN: dict[Kind, Callable[[Appliance, PartitionSpec, list[Any]], list[dict[str, Any]]]] = {
    Kind.EMBEDDINGS: embed_partition, Kind.CHAT: chat_partition}


def leave_cluster(worker: Worker, reason: str) -> None:
    """Close this worker from a task thread: Dask then reschedules its work elsewhere."""
    log.warning("worker %s leaves the cluster: %s", worker.address, reason)
    worker.loop.add_callback(worker.close, reason=reason)


#: Answers that stay wrong on this appliance until something changes there: the key is
#: refused (401/403) or the model is gone (404). Retrying here would only fail again.
_STUCK = frozenset({401, 403, 404})


def should_leave(exc: Unavailable, appliance_ready: bool) -> bool:
    """Whether a worker whose task failed with ``exc`` must leave the cluster: otherwise,
    failing fast, it would draw every retry to itself. (It rejoins once its appliance is
    ready again, with the models it then serves.)"""
    return not appliance_ready or exc.status in _STUCK


def run_partition(spec: PartitionSpec, items: list[Any]) -> list[dict[str, Any]]:
    """The Dask task: one partition on this worker's appliance, results in item order."""
    appliance = bound_appliance()
    try:
        return _RUN[spec.kind](appliance, spec, list(items))
    except Unavailable as exc:
        if should_leave(exc, appliance.ready()):
            leave_cluster(get_worker(), f"appliance {appliance.url}: {exc}")
        raise


def not_ready_reason(appliance: Appliance) -> str:
    """Why the readiness probe fails: not ready (and its reasons), or no answer at all
    (refused, an unverifiable certificate, a timeout)."""
    try:
        appliance.request("GET", "/v2/health/ready", timeout_s=5)
    except ApplianceError as exc:
        return str(exc)
    return "it is ready now"


async def run_worker(scheduler: str, appliance: Appliance, *, slots: int,
                     name: str | None = None, once: bool = False,
                     ready_timeout_s: float = 3600.0) -> None:
    """Join ``scheduler`` for ``appliance`` whenever it is ready; rejoin after it comes back."""
    while True:
        if not await asyncio.to_thread(appliance.ready):  # say why once, then wait quietly
            why = await asyncio.to_thread(not_ready_reason, appliance)
            log.warning("appliance %s is not ready (%s); waiting up to %.0f s", appliance.url,
                        why, ready_timeout_s)
        ok = await asyncio.to_thread(appliance.wait_ready, ready_timeout_s)
        if not ok:
            raise Unavailable(f"appliance {appliance.url} not ready in {ready_timeout_s:.0f} s")
        try:
            models = await asyncio.to_thread(appliance.models)  # needs the key, if any
        except Unavailable as exc:
            log.error("appliance %s is ready but refuses this worker (%s); retrying in "
                      "%.0f s (check --api-key-file)", appliance.url, exc, REFUSED_WAIT_S)
            await asyncio.sleep(REFUSED_WAIT_S)
            continue
        resources = {resource_name(m): float(slots) for m in models}
        log.info("appliance %s serves %s: joining %s with %s", appliance.url, models,
                 scheduler, resources)
        worker = Worker(scheduler, nthreads=slots, resources=resources, name=name,
                        plugins=(ApplianceBinding(appliance),))
        async with worker:
            await worker.finished()  # type: ignore[no-untyped-call]
        if once:
            return
        await asyncio.sleep(1.0)
