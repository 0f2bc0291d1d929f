"""``make run``: boot the built image in QEMU with a persistent TPM, print where it serves.

    python -m llmos_vm.run [--vm build/vm/run] [--image build/image/llmos.raw]
                           [--key build/keys/fleet.key] [--api-port 8000] [--admin-port 8001]
                           [--console] [--reset] [--disk-gib 8]

The VM's state (disk overlay, OVMF variables, swtpm state, admin password) lives in its
directory and survives runs: the first boot gets the fleet key as the provisioning
credential and seals it to the VM's TPM; later boots get no key at all. A rebuilt image
(or --reset) starts a new VM. Its disk is bigger than the image (sparse: only what the guest
writes takes room here), as a machine's is: the first boot grows /var into the rest.
Ctrl-C powers the guest down cleanly (ACPI).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from llmos import apikeys
from llmos.errors import LlmosError
from llmos_vm import credentials, http, ovmf, report
from llmos_vm.machine import Boot, VmDir
from llmos_vm.qemu import Forward

log = logging.getLogger("llmos_vm.run")

GUEST_API_PORT = 8000
GUEST_ADMIN_PORT = 8001
READY_TIMEOUT_S = 30 * 60.0


class RunVm:
    """The persistent VM of ``make run``: which image it was made from, its password."""

    def __init__(self, vm: VmDir, image: Path, disk_bytes: int) -> None:
        self.vm = vm
        self.image = image
        self.disk_bytes = disk_bytes

    @property
    def _image_stamp(self) -> Path:
        return self.vm.root / "image.inputs.sha256"

    @property
    def _provisioned(self) -> Path:
        return self.vm.root / "provisioned"

    @property
    def password_file(self) -> Path:
        return self.vm.root / "admin-password"

    def image_id(self) -> str:
        stamp = self.image.parent / "inputs.sha256"
        return stamp.read_text().strip() if stamp.exists() else str(self.image.stat().st_mtime)

    def ensure(self, reset: bool) -> None:
        """Start over when asked, or when the image changed under the overlay."""
        current = self._image_stamp.read_text().strip() if self._image_stamp.exists() else None
        if reset or (current is not None and current != self.image_id()):
            log.warning("starting a new VM in %s (%s)", self.vm.root,
                        "--reset" if reset else "the image was rebuilt")
            for p in (self.vm.disk, self.vm.ovmf_vars, self._provisioned):
                p.unlink(missing_ok=True)
            self.vm.new_tpm()
        self.vm.prepare(self.image, ovmf.find(), self.disk_bytes)
        self._image_stamp.write_text(self.image_id() + "\n")

    def password(self) -> str:
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            self.password_file.chmod(0o600)
        return self.password_file.read_text().strip()

    def needs_provisioning(self) -> bool:
        return not self._provisioned.exists()

    def mark_provisioned(self) -> None:
        self._provisioned.touch()


def _ready(api: str) -> dict[str, Any] | None:
    reply = http.request(f"{api}/health", timeout_s=5)
    if reply is None or reply.status not in (200, 503):
        return None
    doc = reply.json()
    # 503 while starting; a definitive answer (ready, or degraded with reasons) ends the wait.
    return doc if doc.get("ready") or doc.get("status") not in (None, "starting") else None


def _admin_fingerprint(boot: Boot) -> str:
    """The admin page's self-signed certificate, as the guest printed it on the console:
    what the browser must show before you trust it."""
    found = report.certificates(boot.console())
    return found[-1][1] if found else "(see the console: 'admin TLS certificate')"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0])
    p.add_argument("--vm", type=Path, default=Path("build/vm/run"))
    p.add_argument("--image", type=Path, default=Path("build/image/llmos.raw"))
    p.add_argument("--key", type=Path, default=Path("build/keys/fleet.key"))
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--admin-port", type=int, default=8001)
    p.add_argument("--console", action="store_true", help="serial console on this terminal")
    p.add_argument("--reset", action="store_true", help="new disk overlay and a new TPM")
    p.add_argument("--disk-gib", type=int, default=8,
                   help="the new VM's disk size (never smaller than the image)")
    p.add_argument("--api-keys", type=Path, default=None, metavar="FILE",
                   help="API keys the inference API requires ('NAME: KEY' or "
                        "'NAME: sha256:HEX' lines), passed as the llmos-api-keys credential")
    args = p.parse_args(argv)

    run = RunVm(VmDir(args.vm), args.image, args.disk_gib << 30)
    try:
        run.ensure(args.reset)
        password = run.password()
        smbios = [credentials.credential("llmos-admin-password", password.encode())]
        key_names = "none: the API is open"
        if args.api_keys is not None:
            text = args.api_keys.read_text()
            key_names = ", ".join(apikeys.merge([apikeys.parse(text, str(args.api_keys))])
                                  .names()) or key_names  # a bad line fails here, not at boot
            smbios.append(credentials.credential(apikeys.CREDENTIAL, text.encode()))
        if run.needs_provisioning():
            log.info("first boot of this VM: passing the fleet key %s as provisioning credential",
                     args.key)
            smbios.append(credentials.credential("llmos-provision-key", args.key.read_bytes()))
        api = f"http://127.0.0.1:{args.api_port}"
        admin = f"https://127.0.0.1:{args.admin_port}"
        forwards = [Forward(args.api_port, GUEST_API_PORT), Forward(args.admin_port,
                                                                     GUEST_ADMIN_PORT)]
        with Boot(run.vm, label="run", forwards=forwards, smbios=smbios,
                  console_on_terminal=args.console) as boot:
            stop = threading.Event()

            def on_signal(signum: int, frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            log.info("QEMU started (%s); console: %s", boot.accel,
                     "this terminal" if args.console else boot.serial_log)

            def probe() -> dict[str, Any] | None:
                return {} if stop.is_set() else _ready(api)

            health = boot.wait_until(probe, timeout_s=READY_TIMEOUT_S,
                                     what="answer on /health", interval_s=2.0)
            if not stop.is_set():
                if health.get("key", {}).get("released"):
                    run.mark_provisioned()  # sealed in this VM's TPM: never pass the key again
                sys.stdout.write(
                    f"\nLLM OS is up after {boot.elapsed():.0f} s ({boot.accel}): "
                    f"{health.get('status')}\n"
                    f"  inference API   {api}   (OIP v2: {api}/v2, health: {api}/health, "
                    f"metrics: {api}/metrics)\n"
                    f"  admin page      {admin}/   password: {password}\n"
                    f"                  certificate SHA-256 {_admin_fingerprint(boot)}\n"
                    f"  API keys        {key_names}\n"
                    + "".join(f"  ! {r}\n" for r in health.get("reasons", []))
                    + "Ctrl-C powers the VM down.\n")
                sys.stdout.flush()
                while not stop.is_set() and boot.running():
                    stop.wait(1.0)
            log.info("powering down")
        if boot.clean_shutdown is False:
            log.warning("the guest did not power off cleanly; its TPM may count a "
                        "dictionary-attack strike")
        return 0
    except LlmosError as exc:
        log.error("%s", exc.message)
        if exc.hint:
            log.error("hint: %s", exc.hint)
        return 2


if __name__ == "__main__":
    sys.exit(main())
