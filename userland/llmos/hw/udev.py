"""The udev adapter: the only module that imports pyudev.

``read_pci_devices`` lists PCI functions with their drm/accel child nodes;
``UdevMonitor`` follows hot-plug through a netlink monitor whose file descriptor the
event loop watches (``loop.add_reader(monitor.fileno(), ...)``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyudev

from llmos.hw.model import DeviceEvent, DeviceNode, NodeKind, PciDevice, pci_address_of

log = logging.getLogger(__name__)

# Subsystems whose events can change what accelerators we have.
FOLLOWED_SUBSYSTEMS = ("pci", "drm", "accel")


def _attr(device: Any, name: str) -> str | None:
    try:
        raw = device.attributes.get(name)
    except (OSError, UnicodeDecodeError):  # unreadable sysfs attribute
        return None
    return None if raw is None else bytes(raw).decode(errors="replace").strip()


def _int(text: str | None, base: int = 10) -> int | None:
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _node_kind(subsystem: str, name: str) -> NodeKind:
    if subsystem == "drm":
        return NodeKind.DRM_RENDER if name.startswith("renderD") else NodeKind.DRM_CARD
    if subsystem == "accel":
        return NodeKind.ACCEL
    return NodeKind.OTHER


def _child_nodes(device: Any) -> tuple[DeviceNode, ...]:
    nodes: list[DeviceNode] = []
    for child in device.children:
        if child.subsystem in ("drm", "accel") and child.device_node:
            kind = _node_kind(child.subsystem, child.sys_name)
            nodes.append(DeviceNode(Path(child.device_node), kind))
    return tuple(sorted(nodes, key=lambda n: str(n.path)))


def _driver(device: Any) -> str | None:
    # The uevent's DRIVER first: libudev's driver lookup (the sysfs "driver" link) forgets
    # the property when the link is missing, as it is in umockdev's emulated sysfs.
    driver = device.properties.get("DRIVER") or device.driver
    return str(driver) if driver else None


def _pci_device(device: Any) -> PciDevice | None:
    driver = _driver(device)
    vendor = _int(_attr(device, "vendor"), 16)
    class_code = _int(_attr(device, "class"), 16)
    if vendor is None or class_code is None:
        return None
    device_id = _int(_attr(device, "device"), 16) or 0
    numa = _int(_attr(device, "numa_node"))
    model = device.properties.get("ID_MODEL_FROM_DATABASE") or f"{vendor:04x}:{device_id:04x}"
    return PciDevice(
        address=device.sys_name,
        vendor_id=vendor,
        device_id=device_id,
        class_code=class_code,
        driver=driver,
        numa_node=numa if numa is not None and numa >= 0 else None,
        model=str(model),
        nodes=_child_nodes(device),
        vram_total_bytes=_int(_attr(device, "mem_info_vram_total")),
        vram_used_bytes=_int(_attr(device, "mem_info_vram_used")),
    )


def read_pci_devices(context: Any = None) -> tuple[PciDevice, ...]:
    """Every PCI function udev knows, sorted by address."""
    ctx = context or pyudev.Context()
    found = (_pci_device(d) for d in ctx.list_devices(subsystem="pci"))
    return tuple(sorted((d for d in found if d is not None), key=lambda d: d.address))


class UdevMonitor:
    """A netlink udev monitor for the followed subsystems; non-blocking reads."""

    def __init__(self, context: Any = None) -> None:
        self._context = context or pyudev.Context()
        self._monitor: Any = pyudev.Monitor.from_netlink(self._context)
        for subsystem in FOLLOWED_SUBSYSTEMS:
            self._monitor.filter_by(subsystem)

    @classmethod
    def try_open(cls) -> UdevMonitor | None:
        """A monitor, or None (logged) where netlink is unavailable: no hot-plug then."""
        try:
            return cls()
        except OSError as exc:
            log.warning("udev monitor unavailable, hot-plug is not followed: %s (a unit with "
                        "PrivateNetwork= or RestrictAddressFamilies= must allow AF_NETLINK)", exc)
            return None

    def start(self) -> None:
        self._monitor.start()

    def fileno(self) -> int:
        return int(self._monitor.fileno())

    def drain(self) -> list[DeviceEvent]:
        """Every event waiting now (never blocks)."""
        events: list[DeviceEvent] = []
        while True:
            device = self._monitor.poll(timeout=0)
            if device is None:
                return events
            sys_path = str(device.sys_path)
            log.debug("udev %s %s %s", device.action, device.subsystem, sys_path)
            events.append(DeviceEvent(str(device.action), str(device.subsystem), sys_path,
                                      pci_address_of(sys_path)))

    def close(self) -> None:
        self._monitor = None  # libudev unrefs the monitor (and closes its socket) on collection
