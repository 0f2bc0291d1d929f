"""The fleet's pure parts: job files, items, result numbering, the HAProxy template."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from llmos.errors import ConfigError
from llmos.fleet import haproxy
from llmos.fleet.job import (
    Kind,
    load_job,
    messages_of,
    numbered,
    read_items,
    resource_name,
    text_of,
    write_results,
)


def test_job_file(tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(
        '[job]\nmodel = "minilm"\nkind = "embeddings"\ninput = "in.jsonl"\n'
        'output = "out/vectors.jsonl"\npartition_size = 10\n')
    job = load_job(tmp_path / "job.toml")
    assert job.kind is Kind.EMBEDDINGS and job.partition_size == 10
    assert job.input == tmp_path / "in.jsonl" and job.output == tmp_path / "out/vectors.jsonl"
    assert job.resource == resource_name("minilm") == "llmos-model:minilm"
    assert job.spec().model == "minilm"


@pytest.mark.parametrize("body, wrong", [
    ('model = "m"\nkind = "embeddings"', "output"),
    ('model = "m"\nkind = "poems"\noutput = "o"', "poems"),
    ('model = "m"\nkind = "chat"\noutput = "o"\nconcurrency = 0', "concurrency"),
    ('model = "m"\nkind = "chat"\noutput = "o"\nshards = 3', "shards"),
])
def test_bad_job_files_are_named(tmp_path: Path, body: str, wrong: str) -> None:
    (tmp_path / "job.toml").write_text("[job]\n" + body + "\n")
    with pytest.raises(ConfigError) as exc:
        load_job(tmp_path / "job.toml")
    assert wrong in exc.value.message and exc.value.hint


def test_items_and_results(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('"plain"\n\n{"id": 7, "text": "t"}\n{"prompt": "p"}\n')
    items = read_items(src)
    assert [text_of(items[0]), text_of(items[1])] == ["plain", "t"]
    assert messages_of(items[2]) == [{"role": "user", "content": "p"}]
    with pytest.raises(ValueError):
        text_of({"prompt": "p"})
    src.write_text("{broken\n")
    with pytest.raises(ConfigError, match=":1:"):
        read_items(src)
    results = list(numbered([[{"id": "a"}], [], [{"id": "b"}, {"id": "c"}]]))
    assert [(r["index"], r["id"]) for r in results] == [(0, "a"), (1, "b"), (2, "c")]
    out = tmp_path / "o" / "r.jsonl"
    assert write_results(out, results) == 3
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]


def test_haproxy_config_is_valid_and_checks_readiness(tmp_path: Path) -> None:
    backends = [haproxy.parse_backend("a=10.0.0.2:8000", 0),
                haproxy.parse_backend("10.0.0.3:8000", 1)]
    text = haproxy.render(backends, haproxy.Options(stats_socket=str(tmp_path / "s.sock")))
    assert "server a 10.0.0.2:8000" in text and "server appliance2 10.0.0.3:8000" in text
    assert "uri /v2/health/ready" in text and "retry-on conn-failure empty-response 503" in text
    assert "option redispatch 1" in text
    if shutil.which("haproxy"):  # the test fleet needs it anyway (image/host-deps.sh)
        cfg = tmp_path / "h.cfg"
        cfg.write_text(text)
        done = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    for bad in ("nohostport", "a=:80", "a b=1.2.3.4:80"):
        with pytest.raises(ConfigError):
            haproxy.parse_backend(bad, 0)
    with pytest.raises(ConfigError, match="repeat"):
        haproxy.render([backends[0], backends[0]])
