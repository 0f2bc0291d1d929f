"""The QEMU command line of an LLM OS VM (pure: a configuration in, argv out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmos_vm.accel import cpu_for
from llmos_vm.credentials import smbios_option
from llmos_vm.disk import image_format


@dataclass(frozen=True)
class Forward:
    """host 127.0.0.1:host_port -> guest guest_port (QEMU user networking)."""

    host_port: int
    guest_port: int


@dataclass(frozen=True)
class VmConfig:
    disk: Path  # qcow2 overlay (or raw image), attached as NVMe
    ovmf_code: Path
    ovmf_vars: Path  # this VM's writable copy
    tpm_socket: Path  # swtpm control socket
    qmp_socket: Path
    serial_log: Path | None  # None: the serial console on this terminal
    accel: str = "tcg"
    memory_mib: int = 2048
    cpus: int = 2
    forwards: tuple[Forward, ...] = ()
    smbios: tuple[str, ...] = field(default_factory=tuple)  # type 11 strings
    secure_boot: bool = False  # OVMF's Secure Boot build: SMM on, key store writable by it alone
    fw_cfg: tuple[tuple[str, Path], ...] = ()  # -fw_cfg name=NAME,file=PATH (e.g. credentials)
    # A PS/2 keyboard (i8042), for QMP send-key (magic SysRq: tests/boot/test_restart.py).
    keyboard: bool = False
    # A guest reboot resets the machine (as hardware does) instead of ending QEMU.
    reboot: bool = False


MACHINE_OFF = "sata=off,i8042=off,smbus=off"


def argv(cfg: VmConfig) -> list[str]:
    """q35, no VGA (the framebuffer console costs ~20 s under TCG), serial console only."""
    off = MACHINE_OFF.replace(",i8042=off", "") if cfg.keyboard else MACHINE_OFF
    machine = f"q35,accel={cfg.accel},{off}" + (",smm=on" if cfg.secure_boot else "")
    fwd = "".join(f",hostfwd=tcp:127.0.0.1:{f.host_port}-:{f.guest_port}" for f in cfg.forwards)
    cmd = [
        "qemu-system-x86_64",
        # Without the q35 devices the appliance never uses (its SATA controller, PS/2
        # keyboard controller, SMBus): the guest kernel neither loads nor probes their
        # drivers while the supervisor starts.
        "-machine", machine,
        "-cpu", cpu_for(cfg.accel),
        "-smp", str(cfg.cpus),
        "-m", f"{cfg.memory_mib}M",
        "-vga", "none",
        "-nographic",
        "-nodefaults",
        *([] if cfg.reboot else ["-no-reboot"]),
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={cfg.ovmf_code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={cfg.ovmf_vars}",
        "-chardev", f"socket,id=chrtpm,path={cfg.tpm_socket}",
        "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
        "-device", "tpm-crb,tpmdev=tpm0",
        # NVMe: the default profile's kernel has it built in (no initrd needed).
        "-drive", f"if=none,id=disk0,file={cfg.disk},format={image_format(cfg.disk)},"
                  "discard=unmap",
        "-device", "nvme,drive=disk0,serial=llmos-disk0",
        "-netdev", f"user,id=net0{fwd}",
        # romfile=: no iPXE option ROM; the firmware has no network boot to prepare.
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
        "-qmp", f"unix:{cfg.qmp_socket},server=on,wait=off",
        "-monitor", "none",
        # On the terminal, the serial console shares it with QEMU's monitor (Ctrl-A c).
        "-serial", f"file:{cfg.serial_log}" if cfg.serial_log else "mon:stdio",
    ]
    if cfg.secure_boot:
        # Only code running in SMM may write the flash that holds PK/KEK/db.
        cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    for name, path in cfg.fw_cfg:
        cmd += ["-fw_cfg", f"name={name},file={path}"]
    for s in cfg.smbios:
        cmd += ["-smbios", smbios_option(s)]
    return cmd
