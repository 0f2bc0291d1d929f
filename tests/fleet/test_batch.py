"""Issue 28's batch check: 5,000 embeddings and 200 chat prompts over a fleet of `llmos serve`
appliances in their own network namespaces, through Dask workers that call the appliances'
API with an API key; one appliance is killed in the middle and another joins. Every result
is present exactly once, in input order, and equal to a single appliance's answer."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from distributed import Client

from llmos.fleet import runner
from llmos.fleet.appliance import Appliance as ApiClient
from llmos.fleet.job import Job, Kind

from .conftest import FleetEnv
from .netfleet import Appliance, ApplianceSpec, DaskCluster, http_json

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(900)]

N_EMBED, N_CHAT = 5000, 200
MAX_TOKENS = 8
SUBJECTS = ["The appliance", "A sealed pack", "The load balancer", "Our fleet", "The TPM",
            "A Dask worker", "The kernel", "An edge box"]
VERBS = ["decrypts", "serves", "drains", "measures", "retries", "schedules", "boots", "signs"]
OBJECTS = ["model weights", "requests", "the update", "ten documents", "a prompt",
           "the partition", "its health", "the key"]


def texts(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"{SUBJECTS[i % 8]} {VERBS[(i // 8) % 8]} {OBJECTS[(i // 64) % 8]}"
                             f" (item {i})."} for i in range(n)]


def prompts(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "prompt": f"In one short sentence: why does {OBJECTS[i % 8]} matter "
                                f"to {SUBJECTS[(i // 8) % 8].lower()}? ({i})"} for i in range(n)]


def served_requests(appliance: Appliance, key: str) -> float:
    """Requests the batch key made on this appliance (its /metrics, read with the key)."""
    req = urllib.request.Request(appliance.url + "/metrics",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(r'^llmos_api_key_requests_total\{key="batch"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def fleet(fleet_env: FleetEnv) -> Iterator[tuple[list[Appliance], DaskCluster]]:
    spec = ApplianceSpec([("minilm", "minilm-fp32.sealed", 64),
                          ("smollm2", "smollm2.sealed", MAX_TOKENS)], fleet_env.keys_file)
    appliances: list[Appliance] = []
    cluster = DaskCluster(fleet_env.workdir, fleet_env.key_file)
    try:
        for i in (1, 2, 3):
            appliances.append(Appliance(i, spec, fleet_env.workdir))
        yield appliances, cluster
    finally:
        cluster.close()
        for a in appliances:
            a.remove()


def test_batch_survives_a_kill_and_a_join(fleet: tuple[list[Appliance], DaskCluster],
                                          fleet_env: FleetEnv) -> None:
    (a1, a2, a3), cluster = fleet
    for a in (a1, a2):
        a.start()
    for a in (a1, a2):
        a.wait_ready()
    for a in (a1, a2):
        cluster.add_worker(a, slots=2)
    embed_items, chat_items = texts(N_EMBED), prompts(N_CHAT)
    out = fleet_env.workdir
    embed_job = Job("minilm", Kind.EMBEDDINGS, out / "embeddings.jsonl", partition_size=50)
    chat_job = Job("smollm2", Kind.CHAT, out / "chat.jsonl", partition_size=10, concurrency=4,
                   max_tokens=MAX_TOKENS)

    with Client(cluster.address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
        started = time.monotonic()
        chat_futures = runner.partition_futures(client, chat_job, chat_items)
        embed_futures = runner.partition_futures(client, embed_job, embed_items)
        everything = embed_futures + chat_futures

        # In the middle: some partitions done, most not; kill a1, start a replacement.
        while sum(f.done() for f in everything) < len(everything) // 10:
            assert time.monotonic() - started < 300, "the job made no progress"
            time.sleep(0.2)
        done_at_kill = sum(f.done() for f in everything)
        a1.kill()
        a3.start()
        joiner = threading.Thread(target=lambda: (a3.wait_ready(), cluster.add_worker(a3)))
        joiner.start()

        embed_results = runner.gather(client, embed_futures, show_progress=False)
        chat_results = runner.gather(client, chat_futures, show_progress=True)
        elapsed = time.monotonic() - started
        joiner.join()
    assert done_at_kill < len(everything), "the job ended before the kill"

    # Exactly once, in input order, nothing refused.
    assert [r["id"] for r in embed_results] == list(range(N_EMBED))
    assert [r["index"] for r in embed_results] == list(range(N_EMBED))
    assert [r["id"] for r in chat_results] == list(range(N_CHAT))
    assert not [r for r in embed_results + chat_results if "error" in r]

    # The replacement joined and took work; the killed one was left behind.
    assert served_requests(a3, fleet_env.key) > 0, "the appliance that joined served nothing"
    assert http_json(a1.url + "/v2/health/live", 1)[0] == 0

    # Equal to one appliance's answers (a2 alone, same partitions of the input).
    single = ApiClient(a2.url, fleet_env.key)
    for start in range(0, N_EMBED, 50):
        batch = embed_items[start:start + 50]
        expected = np.array(single.embed("minilm", [t["text"] for t in batch]))
        got = np.array([r["embedding"] for r in embed_results[start:start + 50]])
        np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"items {start}..")
    with ThreadPoolExecutor(4) as pool:
        expected_chat = list(pool.map(
            lambda item: single.chat("smollm2", [{"role": "user", "content": item["prompt"]}],
                                     MAX_TOKENS), chat_items))
    mismatched = [i for i, (r, e) in enumerate(zip(chat_results, expected_chat, strict=True))
                  if r["text"] != e["text"]]
    assert not mismatched, [(chat_results[i]["text"], expected_chat[i]["text"])
                            for i in mismatched[:5]]
    assert all(r["text"] for r in chat_results)
    print(f"fleet batch: {N_EMBED} embeddings + {N_CHAT} chats in {elapsed:.1f} s; "
          f"{done_at_kill}/{len(everything)} partitions done at the kill")
