"""The status the update agent writes, and what it says after an update."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from llmos.osupdate import status as st

BEGUN = st.Status("downloading", "1", source="http://h/", started_at=100.0)


def test_a_newer_installed_version_is_staged() -> None:
    final = st.after_update(BEGUN, 142.0, 0, ["Installed 2."], "", "2", None)
    assert (final.state, final.staged, final.error, final.finished_at) == \
        ("staged", "2", None, 142.0)
    assert final.log_tail == ("Installed 2.",)


def test_the_running_version_being_newest_is_up_to_date() -> None:
    assert st.after_update(BEGUN, 1.0, 0, [], "", "1", None).state == "up-to-date"
    assert st.after_update(BEGUN, 1.0, 0, [], "", None, None).staged is None
    ten = st.Status("downloading", "10")
    assert st.after_update(ten, 1.0, 0, [], "", "9", None).state == "up-to-date"


def test_a_failure_says_the_last_lines_of_stderr() -> None:
    stderr = "\n".join(f"line {i}" for i in range(30)) + "\nSignature verification failed.\n"
    final = st.after_update(BEGUN, 1.0, 1, stderr.splitlines(), stderr, None, None)
    assert final.state == "failed" and final.staged is None
    assert final.error is not None and final.error.endswith("Signature verification failed.")
    assert len(final.error.splitlines()) == st.ERROR_LINES
    assert len(final.log_tail) == st.LOG_TAIL_LINES
    silent = st.after_update(BEGUN, 1.0, 3, [], "", None, None)
    assert silent.error == "systemd-sysupdate exited 3"
    unlisted = st.after_update(BEGUN, 1.0, 0, [], "", None, "cannot list")
    assert (unlisted.state, unlisted.error) == ("failed", "cannot list")


def test_written_atomically_world_readable_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "status.json"
    final = st.after_update(BEGUN, 142.0, 0, ["ok"], "", "2", None)
    st.write(path, final)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    doc = json.loads(path.read_text())
    assert doc == {"state": "staged", "running": "1", "staged": "2", "error": None,
                   "source": "http://h/", "started_at": 100.0, "finished_at": 142.0,
                   "log_tail": ["ok"]}
    assert st.read(path) == final
    assert st.read(tmp_path / "absent.json") is None
    path.write_text('{"state": "exploded"}')
    assert st.read(path) is None


def test_download_progress_is_not_taken_for_the_reason() -> None:
    """As the appliance printed it for a tampered artifact: progress lines of systemd-pull
    around the one that says why."""
    stderr = ("Got 41% of http://10.0.2.2:1/llmos_3_x.root-verity.raw.gz. 2s left.\n"
              "SHA256 checksum of llmos_3_x.root-verity.raw.gz does not match.\n"
              "Got 69% of http://10.0.2.2:1/llmos_3_x.root-verity.raw.gz. 933ms left.\n")
    final = st.after_update(BEGUN, 1.0, 1, stderr.splitlines(), stderr, None, None)
    assert final.error == "SHA256 checksum of llmos_3_x.root-verity.raw.gz does not match."
    assert len(final.log_tail) == 3  # the log keeps everything
