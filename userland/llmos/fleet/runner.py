"""Runs a job on a Dask cluster of appliance workers; results come back in input order.

Dask partitions the items (a bag: ``from_sequence`` for a file's items, or the caller's
own bag); each partition becomes one task restricted to workers holding the model's
resource (``resources={resource_name(model): 1}``), retried ``job.retries`` times (a
worker whose appliance died has left by then, so a retry lands on another appliance).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.bag as db
from dask.base import compute as compute_locally
from distributed import Client, Future, progress

from llmos.fleet.job import Job, numbered, read_items, write_results
from llmos.fleet.worker import run_partition

log = logging.getLogger(__name__)

Results = list[dict[str, Any]]
PartitionFuture = Future[Results]


@dataclass(frozen=True)
class Report:
    items: int
    partitions: int
    errors: int  # items whose result is an error (refused input)
    seconds: float


def partition_futures(client: Client, job: Job,
                      items: db.Bag | Sequence[Any]) -> list[PartitionFuture]:
    """One future per partition, in partition order (submitted, not waited for)."""
    parts: Sequence[Any]
    if isinstance(items, db.Bag):  # a collection: its partitions are made on the cluster
        parts = client.compute(items.to_delayed(optimize_graph=False))  # type: ignore[no-untyped-call]
    else:  # items in hand: Dask cuts them here and each task carries its own partition,
        # so no partition is tied to the worker that happened to make it
        bag = db.from_sequence(list(items), partition_size=job.partition_size)  # type: ignore[no-untyped-call]
        made = compute_locally(*bag.to_delayed(), scheduler="sync")  # type: ignore[no-untyped-call]
        parts = [list(p) for p in made]
    spec, token = job.spec(), uuid.uuid4().hex[:12]
    return [client.submit(run_partition, spec, part, key=f"llmos-{job.kind.value}-{token}-{i}",
                          resources={job.resource: 1}, retries=job.retries, pure=False)
            for i, part in enumerate(parts)]


def gather(client: Client, futures: list[PartitionFuture], show_progress: bool) -> Results:
    if show_progress:
        progress(futures)  # type: ignore[no-untyped-call]  # Dask's text bar, blocks
    parts: list[Results] = client.gather(futures)  # type: ignore[no-untyped-call]
    return list(numbered(parts))


def run(client: Client, job: Job, items: db.Bag | Sequence[Any] | None = None,
        *, show_progress: bool = True) -> tuple[list[dict[str, Any]], Report]:
    """Run ``job`` over ``items`` (default: its input file) and write its output file."""
    started = time.monotonic()
    if items is None:
        if job.input is None:
            raise ValueError("the job has no input file and no items were given")
        items = read_items(job.input)
    futures = partition_futures(client, job, items)
    results = gather(client, futures, show_progress)
    write_results(job.output, results)
    errors = sum(1 for r in results if "error" in r)
    report = Report(len(results), len(futures), errors, time.monotonic() - started)
    log.info("job %s on %s: %d items in %d partitions, %d refused, %.1f s", job.kind.value,
             job.model, report.items, report.partitions, report.errors, report.seconds)
    return results, report
