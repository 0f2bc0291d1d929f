"""``llmos serve`` picks up what the admin page uploaded (the data partition's packs folder)
and removes the leftovers of an upload that a crash interrupted."""

from __future__ import annotations

import shutil
from pathlib import Path

import requests

from llmos.vault import uploads

from .conftest import DEMO, EMBEDDER, start_server, stop_server


def test_serve_merges_the_uploads_and_cleans_leftovers(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "packs"  # admin.upload_dir's default: <state_dir>/packs
    folder.mkdir(parents=True)
    shutil.copyfile(DEMO / "minilm.sealed", folder / "minilm-uploaded.sealed")
    leftover = folder / uploads.temporary_name("interrupted")
    leftover.write_bytes(b"the first megabyte of a pack")
    served = start_server(tmp_path)
    try:
        log = served.log.read_text()
        assert f"model {EMBEDDER} from the uploaded pack {folder / 'minilm-uploaded.sealed'}" \
            in log
        assert "removed 1 unfinished upload(s)" in log
        assert not leftover.exists()
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                            "data": ["served from the data partition"]}]}
        reply = requests.post(f"{served.url}/v2/models/{EMBEDDER}/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
    finally:
        stop_server(served)
