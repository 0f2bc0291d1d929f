"""The verdicts "this machine's kernels read this pack's weights in place", kept between
starts: per pack and per machine, and never trusted beyond turning prepacking off."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from llmos.serving.prepack_memo import (
    MAX_PACKS,
    PrepackMemo,
    machine_signature,
    parse,
    this_machine,
)

CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel Atom x5-E3940\n"
           "flags\t\t: fpu sse4_2 aes\ncpu MHz\t\t: 1600.000\n\n"
           "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel Atom x5-E3940\n"
           "flags\t\t: fpu sse4_2 aes\ncpu MHz\t\t: 800.000\n")
ORT = {"onnxruntime": "1.22.1"}


def test_the_machine_is_its_cpu_and_its_runtimes() -> None:
    atom = machine_signature(CPUINFO, ORT)
    assert atom == machine_signature(CPUINFO.replace("1600.000", "1900.000"), ORT)  # clock
    assert atom != machine_signature(CPUINFO.replace("aes\n", "aes avx2 fma\n", 1), ORT)
    assert atom != machine_signature(CPUINFO.replace("x5-E3940", "x7-E3950"), ORT)
    assert atom != machine_signature(CPUINFO, {"onnxruntime": "1.23.0"})
    assert len(this_machine()) == 32


def test_a_verdict_is_kept_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "prepack-verdicts.json"
    first = PrepackMemo(path, machine="m1")
    assert not first.reads_in_place("a" * 64)
    first.remember("a" * 64)
    first.remember("a" * 64)  # once
    again = PrepackMemo(path, machine="m1")
    assert again.reads_in_place("a" * 64)
    assert not again.reads_in_place("b" * 64)
    assert json.loads(path.read_text())["read_in_place"] == ["a" * 64]


def test_another_cpu_or_runtime_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "prepack-verdicts.json"
    PrepackMemo(path, machine="m1").remember("a" * 64)
    moved = PrepackMemo(path, machine="m2")
    assert not moved.reads_in_place("a" * 64)
    moved.remember("b" * 64)
    assert json.loads(path.read_text()) == {"machine": "m2", "read_in_place": ["b" * 64]}


def test_a_file_that_does_not_parse_is_ignored(tmp_path: Path) -> None:
    for text in ("{", "[]", '{"machine": "m1", "read_in_place": "aaaa"}', "\x00" * 10,
                 '{"machine": "m1", "read_in_place": [1, null, "c"]}'):
        path = tmp_path / "prepack-verdicts.json"
        path.write_text(text)
        memo = PrepackMemo(path, machine="m1")
        assert not memo.reads_in_place("a" * 64)
        assert memo.reads_in_place("c") is (text.endswith('"c"]}'))
    assert parse('{"machine": "m1", "read_in_place": ["x"]}', "m1") == ["x"]


def test_the_file_stays_small(tmp_path: Path) -> None:
    memo = PrepackMemo(tmp_path / "v.json", machine="m1")
    for i in range(MAX_PACKS + 10):
        memo.remember(f"{i:064x}")
    kept = json.loads((tmp_path / "v.json").read_text())["read_in_place"]
    assert len(kept) == MAX_PACKS and kept[-1] == f"{MAX_PACKS + 9:064x}"
    assert not PrepackMemo(tmp_path / "v.json", machine="m1").reads_in_place(f"{0:064x}")


def test_a_state_directory_that_cannot_be_written_costs_nothing_else(tmp_path: Path) -> None:
    memo = PrepackMemo(tmp_path / "missing" / "v.json", machine="m1")
    memo.remember("a" * 64)  # logged, not raised
    assert memo.reads_in_place("a" * 64)  # for the rest of this start


def test_models_loading_side_by_side_both_keep_theirs(tmp_path: Path) -> None:
    memo = PrepackMemo(tmp_path / "v.json", machine="m1")
    threads = [threading.Thread(target=memo.remember, args=(f"{i:064x}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads((tmp_path / "v.json").read_text())["read_in_place"]) == 8
