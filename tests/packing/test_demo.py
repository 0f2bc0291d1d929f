"""The demo build: cache keyed by inputs and code, sealing for the fleet key, ``ensure``,
and ``llmos demo build`` (with a tiny builder, so it runs in a second)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmos.cli import main
from llmos.demo import build as demo_build
from llmos.demo import ensure
from llmos.demo.build import build, select
from llmos.demo.catalog import CATALOG, DemoEntry
from llmos.errors import ConfigError
from llmos.pack import container
from llmos.vault.keys import generate_kek, read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

from . import models

TINY = DemoEntry("tiny", f"{models.__name__}:TINY", "a tiny MLP")
GHOST = DemoEntry("ghost", "llmos.demo.no_such_module:BUILDER", "not in this build")


def test_build_seals_then_does_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    kek = generate_kek()
    [first] = build(tmp_path, kek, entries=[TINY])
    assert (first.built, first.resealed) == (True, True)
    plain_manifest, compressed = container.read_pack(first.plain)
    sealed = SealedPack.open(first.sealed)
    assert sealed.kek_id == kek.id and sealed.manifest == plain_manifest
    payload = open_payload(sealed, kek)
    assert bytes(payload) == bytes(container.decompress_into([compressed], plain_manifest))
    sealed_bytes = first.sealed.read_bytes()
    caplog.set_level(logging.INFO, logger="llmos.demo")
    [again] = build(tmp_path, kek, entries=[TINY])
    assert (again.built, again.resealed) == (False, False)
    assert first.sealed.read_bytes() == sealed_bytes  # not even sealed again
    assert "nothing to do" in caplog.text


def test_changed_inputs_rebuild_and_a_new_key_reseals(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    kek = generate_kek()
    [first] = build(tmp_path, kek, entries=[TINY])
    old = first.plain.read_bytes()
    monkeypatch.setitem(models.SEED, "value", 1)
    [changed] = build(tmp_path, kek, entries=[TINY])
    assert (changed.built, changed.resealed) == (True, True)
    assert changed.plain.read_bytes() != old
    other = generate_kek()
    [rekeyed] = build(tmp_path, other, entries=[TINY])
    assert (rekeyed.built, rekeyed.resealed) == (False, True)
    assert SealedPack.open(rekeyed.sealed).kek_id == other.id


def test_selection(caplog: pytest.LogCaptureFixture) -> None:
    assert select(None, [TINY, GHOST]) == [TINY]
    assert "ghost" in caplog.text and "skipped" in caplog.text
    assert select(["tiny"], [TINY, GHOST]) == [TINY]
    with pytest.raises(ConfigError, match="unknown demo pack"):
        select(["nope"], [TINY])
    with pytest.raises(ConfigError, match="not part of this build"):
        select(["ghost"], [TINY, GHOST])


def test_catalog_names_the_minilm_packs() -> None:
    names = [e.name for e in CATALOG]
    assert names[:3] == ["minilm", "minilm-fp32", "minilm-torch"]
    assert all(e.available() for e in CATALOG if e.name.startswith("minilm"))


def test_ensure_makes_a_dev_key_and_returns_sealed_packs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_build, "CATALOG", (TINY,))
    keyfile = tmp_path / "keys" / "dev.key"
    packs = ensure(tmp_path / "demo", keyfile)
    assert packs == [("tiny", tmp_path / "demo" / "tiny.sealed")]
    kek = read_keyfile(keyfile)
    assert SealedPack.open(packs[0][1]).kek_id == kek.id
    assert ensure(tmp_path / "demo", keyfile) == packs
    assert read_keyfile(keyfile) == kek  # kept, not replaced


def test_demo_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_build, "CATALOG", (TINY, GHOST))
    key = tmp_path / "fleet.key"
    assert main(["keygen", "--out", str(key)]) == 0
    args = ["demo", "build", "--out", str(tmp_path / "out"), "--key", str(key), "--only", "tiny"]
    capsys.readouterr()
    assert main(args) == 0
    assert "built and sealed" in capsys.readouterr().out
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert main([*args[:-1], "ghost"]) == 2
    assert "not part of this build" in capsys.readouterr().err
