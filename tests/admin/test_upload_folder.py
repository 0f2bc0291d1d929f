"""The upload folder: leftovers cleaned, uploaded packs merged into the models at start,
the room an upload may take."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from llmos import config
from llmos.config import Config, ModelConfig
from llmos.vault import uploads
from llmos.vault.kek import generate_kek

from . import models


def _cfg(tmp: Path, *configured: ModelConfig) -> Config:
    cfg = config.load(None, {"server.state_dir": str(tmp / "state")}, environ={})
    return Config(cfg.values, configured, None)


def test_the_default_folder_is_on_the_state_partition(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert uploads.upload_dir(cfg) == tmp_path / "state" / "packs"
    other = config.load(None, {"server.state_dir": str(tmp_path)},
                        environ={"LLMOS_ADMIN_UPLOAD_DIR": "/data/packs"})
    assert uploads.upload_dir(other) == Path("/data/packs")


def test_unfinished_uploads_are_removed_at_start_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "packs"
    folder.mkdir(parents=True)
    leftover = folder / uploads.temporary_name("0123abcd")
    leftover.write_bytes(b"half a pack")
    keep = folder / "notes.txt"
    keep.write_text("not ours")
    merged = uploads.merge(_cfg(tmp_path))
    assert not leftover.exists() and keep.exists()
    assert merged.models == ()


def test_uploaded_packs_come_back_and_replace_configured_ones(tmp_path: Path) -> None:
    kek = generate_kek()
    folder = tmp_path / "state" / "packs"
    folder.mkdir(parents=True)
    (folder / "a-1.sealed").write_bytes(models.sealed_scaler("a", kek, "1"))
    (folder / "a-2.sealed").write_bytes(models.sealed_scaler("a", kek, "2"))
    os.utime(folder / "a-1.sealed", ns=(1, 1))  # a-2 is the newer upload
    (folder / "new-1.sealed").write_bytes(models.sealed_scaler("new", kek))
    (folder / "broken.sealed").write_bytes(b"garbage" * 50)
    configured = (ModelConfig("a", Path("/usr/share/llmos/packs/a.sealed"), instances=2),
                  ModelConfig("b", Path("/usr/share/llmos/packs/b.sealed")))
    merged = uploads.merge(_cfg(tmp_path, *configured))
    by_name = {m.name: m for m in merged.models}
    assert list(by_name) == ["a", "b", "new"]
    assert by_name["a"].pack == folder / "a-2.sealed"
    assert by_name["a"].instances == 2  # the configured settings stay
    assert by_name["b"].pack == configured[1].pack
    assert by_name["new"].pack == folder / "new-1.sealed"


def test_superseded_uploads_are_removed(tmp_path: Path) -> None:
    kek = generate_kek()
    (tmp_path / "a-1.sealed").write_bytes(models.sealed_scaler("a", kek, "1"))
    (tmp_path / "b-1.sealed").write_bytes(models.sealed_scaler("b", kek, "1"))
    (tmp_path / "a-2.sealed").write_bytes(models.sealed_scaler("a", kek, "2"))
    gone = uploads.superseded(tmp_path, "a", tmp_path / "a-2.sealed")
    assert gone == [tmp_path / "a-1.sealed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-2.sealed", "b-1.sealed"]


def test_room_is_the_free_space_less_the_reserve_and_at_most_the_limit(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    assert uploads.room(tmp_path, 1000, reserve=0) == 1000
    assert uploads.room(tmp_path, 10 * free, reserve=0) <= free
    assert uploads.room(tmp_path, 10 * free, reserve=free + 1) == 0
