"""A batch job, declared: what to run, on which model, from where to where (pure logic).

A job file is TOML::

    [job]
    model = "minilm"          # served by the appliances under this name
    kind = "embeddings"       # or "chat"
    input = "docs.jsonl"      # one item a line (relative to the job file)
    output = "vectors.jsonl"  # one result a line, in input order
    partition_size = 64       # items per Dask partition (one task, one appliance)
    concurrency = 1           # requests in flight per partition (chat; embeddings batch)
    max_tokens = 64           # chat only
    retries = 5               # a failed partition runs again, on another appliance

An input item is a JSON string, or an object with ``text`` (embeddings), or ``messages``
or ``prompt`` (chat); an ``id`` is carried into its result.
"""

from __future__ import annotations

import enum
import json
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmos.errors import ConfigError


class Kind(enum.Enum):
    EMBEDDINGS = "embeddings"
    CHAT = "chat"


def resource_name(model: str) -> str:
    """The Dask resource of a worker whose appliance serves ``model`` (its value: how many
    partitions that appliance takes at once)."""
    return f"llmos-model:{model}"


@dataclass(frozen=True)
class Job:
    model: str
    kind: Kind
    output: Path
    input: Path | None = None  # None: the items come as a Dask collection
    partition_size: int = 64
    concurrency: int = 1
    max_tokens: int = 64
    retries: int = 5

    @property
    def resource(self) -> str:
        return resource_name(self.model)

    def spec(self) -> PartitionSpec:
        return PartitionSpec(self.model, self.kind, self.concurrency, self.max_tokens)


@dataclass(frozen=True)
class PartitionSpec:
    """What a worker needs to run one partition (sent with the task: no secrets in it)."""
    model: str
    kind: Kind
    concurrency: int
    max_tokens: int


_INT_FIELDS = ("partition_size", "concurrency", "max_tokens", "retries")


def job_from_mapping(doc: dict[str, Any], base: Path) -> Job:
    known = {"model", "kind", "input", "output", *_INT_FIELDS}
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"unknown job keys {sorted(unknown)}", f"known: {sorted(known)}")
    for key in ("model", "kind", "output"):
        if not doc.get(key):
            raise ConfigError(f"the job has no {key!r}", "see 'llmos fleet run --help'")
    try:
        kind = Kind(doc["kind"])
    except ValueError as exc:
        raise ConfigError(f"job kind {doc['kind']!r} is not one of "
                          f"{[k.value for k in Kind]}", 'kind = "embeddings" or "chat"') from exc
    ints: dict[str, int] = {}
    for key in _INT_FIELDS:
        if key in doc:
            value = doc[key]
            if not isinstance(value, int) or value < (0 if key == "retries" else 1):
                raise ConfigError(f"job {key} = {value!r} is not a positive integer",
                                  f"give {key} as a whole number")
            ints[key] = value
    return Job(model=str(doc["model"]), kind=kind, output=base / str(doc["output"]),
               input=base / str(doc["input"]) if doc.get("input") else None, **ints)


def load_job(path: Path) -> Job:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the job file {path}: {exc}",
                          "a job file is TOML with a [job] table") from exc
    if not isinstance(doc.get("job"), dict):
        raise ConfigError(f"{path} has no [job] table", "see 'llmos fleet run --help'")
    return job_from_mapping(doc["job"], path.parent)


def with_overrides(job: Job, **values: Any) -> Job:
    return replace(job, **{k: v for k, v in values.items() if v is not None})


def read_items(path: Path) -> list[Any]:
    """The items of a JSONL file (blank lines skipped)."""
    items: list[Any] = []
    try:
        with path.open() as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{path}:{number}: not JSON: {exc}",
                                          "one JSON value per line") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the job input {path}: {exc.strerror}",
                          "check the input path") from exc
    return items


def item_id(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else None


def text_of(item: Any) -> str:
    """The text to embed; ValueError when the item has none."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return str(item["text"])
    raise ValueError("an embeddings item is a string or an object with a string 'text'")


def messages_of(item: Any) -> list[dict[str, Any]]:
    """The chat messages of an item; ValueError when it has none."""
    if isinstance(item, str):
        return [{"role": "user", "content": item}]
    if isinstance(item, dict):
        if isinstance(item.get("messages"), list):
            return list(item["messages"])
        if isinstance(item.get("prompt"), str):
            return [{"role": "user", "content": item["prompt"]}]
    raise ValueError("a chat item is a string or an object with 'messages' or 'prompt'")


def numbered(partitions: Iterable[Sequence[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Results of the partitions, in order, each given its input position as ``index``."""
    index = 0
    for part in partitions:
        for result in part:
            yield {"index": index, **result}
            index += 1


def write_results(path: Path, results: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with tmp.open("w") as f:
        for result in results:
            f.write(json.dumps(result, separators=(",", ":")) + "\n")
            count += 1
    tmp.replace(path)
    return count
