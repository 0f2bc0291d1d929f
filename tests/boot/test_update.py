"""A/B OS updates of the enrolled appliance, end to end (issue 26; docs/updates.md).

One machine, a clone of the session's enrolled VM (version 1, key sealed to its TPM), lives
through the story below; each test is one chapter and needs the ones before it:

1. version 1 installs version 2 from an HTTP update source (`make update-image VERSION=2`,
   served from the host), asked for on the admin page, and reboots into it when asked;
2. version 2 boots, passes its health gate, is blessed, serves with the key from the TPM
   (no re-enrollment); then the power is cut while it writes version 3;
3. version 2 boots and serves after the power cut; a tampered update and one signed with
   another key are refused with nothing changed; version 3 is installed;
4. version 3 (its packs corrupted, so it cannot serve) fails its gate on each of its tries,
   and the machine is back on version 2, serving, by itself.

QEMU runs with -no-reboot: a guest reboot ends the QEMU process, and the test powers the
machine on again (same disk, TPM and firmware variables), as the machine's own reset would.
The times (update download + install, reboot into the new version, rollback) are printed
and kept in build/test-artifacts/update-times.json for docs/updates.md.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llmos_vm import http
from llmos_vm.machine import Boot

from . import guest
from .admin_session import AdminSession
from .conftest import ADMIN_PASSWORD, CHAT_MODEL, EMBEDDING_MODEL, ROOT, TEXTS, FirstBoot, Vm, clone
from .reference import cosine
from .update_source import UpdateSource

pytestmark = [pytest.mark.boot, pytest.mark.timeout(40 * 60)]

UPDATES = ROOT / "build" / "updates"
TIMES = ROOT / "build" / "test-artifacts" / "update-times.json"
INSTALL_TIMEOUT_S = 25 * 60.0
REBOOT_TIMEOUT_S = 5 * 60.0
FAILED_BOOT_TIMEOUT_S = 20 * 60.0
TRIES = 2  # TriesLeft= of image/mkosi.extra/usr/lib/llmos/sysupdate.d/30-uki.transfer.in
STATUS = "/api/os-update"
UPDATE = "/api/os-update/update"
REBOOT = "/api/os-update/reboot"


@dataclass
class Story:
    vm: Vm
    chapters_done: list[int] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    reboot_asked_at: float = 0.0  # time.monotonic() when chapter 1 asked for the reboot

    def needs(self, chapter: int) -> None:
        if chapter not in self.chapters_done:
            pytest.fail(f"chapter {chapter} of the update story failed; this one needs it",
                        pytrace=False)

    def record(self, name: str, seconds: float) -> None:
        self.times[name] = round(seconds, 1)
        print(f"update timing: {name} = {seconds:.1f} s")
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        TIMES.write_text(json.dumps(self.times, indent=2) + "\n")


@pytest.fixture(scope="module")
def updates() -> dict[str, Path]:
    found = {v: UPDATES / v for v in ("2", "3")}
    missing = [str(p) for p in found.values() if not (p / "SHA256SUMS.gpg").is_file()]
    if missing:
        pytest.fail(f"no update artifacts at {missing}: the boot tests do not build them; run "
                    "'make update-images' (make test does it first)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def story(first_boot: FirstBoot, lab: Path) -> Story:
    return Story(clone(lab / "update-ab", first_boot.enrolled))


# ------------------------------------------------------------------------------ helpers

def image_version(api: str) -> str:
    reply = http.request(f"{api}/v2", timeout_s=60)
    assert reply is not None and reply.status == 200, "no /v2 server metadata"
    meta: dict[str, Any] = reply.json()
    return str(meta.get("image_version"))


def serving(boot: Boot, vm: Vm, first_boot: FirstBoot) -> dict[str, Any]:
    """Settled, ready, key from the TPM (no enrollment), and both models answer."""
    health = guest.settled_health(boot, vm.api)
    assert health["status"] == "ready", health
    key = health["key"]
    assert isinstance(key, dict) and key["released"] is True and key["protected"], key
    assert "sealing the fleet key" not in boot.console(), "it enrolled again"
    got = guest.embeddings(vm.api, EMBEDDING_MODEL, TEXTS)
    want = first_boot.embeddings
    assert isinstance(want, np.ndarray), "the enrollment boot's embeddings failed"
    assert cosine(got, want).min() > 0.9999
    chat = answered_chat(vm.api)
    assert chat["choices"][0]["message"]["content"].strip(), chat
    return health


def answered_chat(api: str) -> dict[str, Any]:
    return guest.answered_chat(api, CHAT_MODEL, "What is the capital of France?", max_tokens=8)


def admin(vm: Vm, first_boot: FirstBoot) -> AdminSession:
    """Logged in; the admin certificate is the one the enrollment boot made and printed (it
    lives on the data partition, the same in every version)."""
    return AdminSession(vm.admin, ADMIN_PASSWORD, first_boot.admin_fingerprint)


def status(session: AdminSession) -> dict[str, Any]:
    reply = session.get(STATUS)
    assert reply.status == 200, (reply.status, reply.body[:300])
    doc: dict[str, Any] = reply.json()
    return doc


def update_from(boot: Boot, session: AdminSession, source: str,
                done: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Ask for an update from ``source``; the agent's final status (staged, up to date or
    failed), or, with ``done``, the first status it accepts."""
    before = (status(session).get("status") or {}).get("finished_at")
    reply = session.post(UPDATE, {"source": source})
    assert reply.status in (200, 202), (reply.status, reply.body[:300])

    def finished() -> dict[str, Any] | None:
        update = status(session).get("status") or {}
        if done is not None:
            return update if done(update) else None
        if update.get("state") in ("staged", "up-to-date", "failed") and \
                update.get("finished_at") != before:
            return update
        return None

    return boot.wait_until(finished, timeout_s=INSTALL_TIMEOUT_S, interval_s=3.0,
                           what=f"the update from {source} to finish")


def install(story: Story, boot: Boot, session: AdminSession, artifacts: Path,
            version: str) -> None:
    """Update from ``artifacts`` (served to the guest) and see ``version`` staged; the time
    it took is recorded."""
    with UpdateSource(artifacts) as source:
        start = time.monotonic()
        update = update_from(boot, session, source.url)
        story.record(f"download and install of version {version}", time.monotonic() - start)
    assert update["state"] == "staged" and update["staged"] == version, update


def reboot_into_staged(boot: Boot, session: AdminSession) -> None:
    reply = session.post(REBOOT, {})
    assert reply.status in (200, 202), (reply.status, reply.body[:300])
    boot.wait_exit(REBOOT_TIMEOUT_S, "the admin page asked for a reboot")


def blessed(boot: Boot, session: AdminSession) -> str:
    def good() -> str | None:
        assessment = status(session).get("assessment")
        return assessment if assessment == "good" else None
    return boot.wait_until(good, timeout_s=10 * 60.0, interval_s=3.0,
                           what="the boot assessed good (systemd-bless-boot)")


def tampered_copy(src: Path, dest: Path) -> Path:
    """``src``'s artifacts with one byte of the dm-verity artifact flipped (SHA256SUMS and its
    signature as they were: a file changed on the way)."""
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.name.endswith(".root-verity.raw.gz"):
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0x40
            (dest / f.name).write_bytes(bytes(data))
        else:
            (dest / f.name).hardlink_to(f)
    return dest


def foreign_signed_copy(src: Path, dest: Path) -> Path:
    """``src``'s artifacts, unchanged, with SHA256SUMS signed by a key of another fleet."""
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "SHA256SUMS.gpg":
            (dest / f.name).hardlink_to(f)
    with tempfile.TemporaryDirectory(prefix="gnupg-", dir="/tmp") as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--quiet", "--passphrase", "",
               "--pinentry-mode", "loopback"]
        subprocess.run([*gpg, "--quick-generate-key", "Another fleet", "ed25519", "sign",
                        "never"], check=True)
        subprocess.run([*gpg, "--detach-sign", "--output", str(dest / "SHA256SUMS.gpg"),
                        str(dest / "SHA256SUMS")], check=True)
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
    return dest


# ------------------------------------------------------------------------------ the story

def test_1_version_1_installs_version_2_and_reboots_into_it(
        story: Story, updates: dict[str, Path], first_boot: FirstBoot) -> None:
    vm = story.vm
    with vm.boot("1-v1") as boot:
        serving(boot, vm, first_boot)
        assert image_version(vm.api) == "1"
        session = admin(vm, first_boot)
        assert status(session)["running"] == "1"
        install(story, boot, session, updates["2"], "2")
        story.reboot_asked_at = time.monotonic()
        reboot_into_staged(boot, session)
    story.chapters_done.append(1)


def test_2_version_2_passes_its_gate_serves_with_the_same_key_and_survives_a_power_cut(
        story: Story, updates: dict[str, Path], first_boot: FirstBoot) -> None:
    story.needs(1)
    vm = story.vm
    with vm.boot("2-v2") as boot:
        serving(boot, vm, first_boot)
        story.record("reboot into version 2 until it serves",
                     time.monotonic() - story.reboot_asked_at)
        assert image_version(vm.api) == "2"
        session = admin(vm, first_boot)
        assert blessed(boot, session) == "good"
        assert "health-gate: passed" in boot.console()
        # The power fails while version 3 is being written into the other slot.
        with UpdateSource(updates["3"], stall_on=(".root.raw.gz", 48 << 20)) as source:
            reply = session.post(UPDATE, {"source": source.url})
            assert reply.status in (200, 202), (reply.status, reply.body[:300])
            assert source.stalled.wait(INSTALL_TIMEOUT_S), "the download never started"
            time.sleep(5)  # bytes already sent are on their way to the disk
            boot.power_cut()
    story.chapters_done.append(2)


def test_3_after_the_power_cut_version_2_serves_refuses_bad_updates_and_installs_3(
        story: Story, updates: dict[str, Path], first_boot: FirstBoot, lab: Path) -> None:
    story.needs(2)
    vm = story.vm
    with vm.boot("3-v2-after-power-cut") as boot:
        serving(boot, vm, first_boot)
        assert image_version(vm.api) == "2"
        session = admin(vm, first_boot)
        # Blessed in the last boot: its UKI no longer counts tries ("clean").
        assert status(session)["assessment"] == "clean"
        for name, bad in (("tampered", tampered_copy(updates["3"], lab / "update-tampered")),
                          ("foreign", foreign_signed_copy(updates["3"], lab / "update-foreign"))):
            with UpdateSource(bad) as source:
                update = update_from(boot, session, source.url)
            assert update["state"] == "failed", (name, update)
            assert update.get("staged") is None, (name, update)
            now = status(session)
            assert now["running"] == "2" and (now.get("status") or {}).get("staged") is None, now
        install(story, boot, session, updates["3"], "3")
        reboot_into_staged(boot, session)
    story.chapters_done.append(3)


def test_4_version_3_fails_its_gate_and_the_machine_goes_back_to_version_2(
        story: Story, first_boot: FirstBoot) -> None:
    story.needs(3)
    vm = story.vm
    start = time.monotonic()
    for attempt in range(1, TRIES + 1):
        with vm.boot(f"4-v3-try{attempt}") as boot:
            boot.wait_exit(FAILED_BOOT_TIMEOUT_S, f"version 3's try {attempt}")
            console = boot.console()
        assert "health-gate: FAILED" in console, f"try {attempt} did not fail its gate"
    with vm.boot("4-v2-rolled-back") as boot:
        serving(boot, vm, first_boot)
        story.record(f"rollback: {TRIES} failed tries of version 3 until version 2 serves",
                     time.monotonic() - start)
        assert image_version(vm.api) == "2"
        assert "health-gate" not in boot.console(), "version 2 was blessed: no gate"
        session = admin(vm, first_boot)
        now = status(session)
        assert now["running"] == "2" and now["assessment"] == "clean", now
    story.chapters_done.append(4)
