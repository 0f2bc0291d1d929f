"""``llmos serve``: the server (``llmos.app.LlmOs``); flags from the settings table.

With neither ``--config`` nor any configured model it serves the bundled demo packs,
sealed with a development key kept next to them (and says so, loudly).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos import config
from llmos.config import Config, ModelConfig, Setting
from llmos.errors import ConfigError

if TYPE_CHECKING:
    from llmos.app import DeviceSources
    from llmos.hw.memory import MemoryPool
    from llmos.vault.prefetch import Prefetch

log = logging.getLogger(__name__)

CUDA_ORDER, PCI_BUS_ID = "CUDA_DEVICE_ORDER", "PCI_BUS_ID"
BLAS_THREADS = "OPENBLAS_NUM_THREADS"

DEV_KEY_WARNING = """
************************************************************************
*  DEVELOPMENT MODE: serving the bundled demo models                   *
*  sealed with an UNPROTECTED development key: {key}
*  Anyone who can read that file can decrypt these packs.              *
*  Never run an appliance like this: configure your models and use     *
*  keys.provider = tpm2 (or credential).                               *
************************************************************************"""


def _add_setting(p: argparse.ArgumentParser, s: Setting) -> None:
    assert s.flag is not None
    dest = s.key  # vars(args)[key] holds the override, None when not given
    if isinstance(s.default, bool):
        p.add_argument(s.flag, dest=dest, action="store_const", const=True, default=None,
                       help=f"{s.help} [{s.key}]")
    else:
        p.add_argument(s.flag, dest=dest, default=None, metavar=s.key.split(".")[-1].upper(),
                       help=f"{s.help} (default {s.default}) [{s.key}]")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve sealed model packs (the appliance's supervisor)",
        description="Serve sealed model packs: OIP v2, metrics, health, admin page. "
                    "Settings: defaults < --config file < LLMOS_* environment < flags.")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML configuration (see 'llmos config-doc')")
    for s in config.SETTINGS:
        if s.flag:
            _add_setting(p, s)
    p.set_defaults(func=run)


def demo_dir() -> Path:
    raw = os.environ.get("LLMOS_DEMO_DIR")
    return Path(raw) if raw else Path.home() / ".cache" / "llmos" / "demo"


def demo_config(cfg: Config, folder: Path, *, keep_state_dir: bool = False) -> Config:
    """``cfg`` serving the demo packs (built and sealed on first use) with a dev key.

    State (the admin password hash) goes next to the packs unless a state dir was given.
    """
    from llmos import demo  # builds packs: heavy imports, only on this path

    keyfile = folder / "dev-fleet.key"
    log.info("preparing the demo packs in %s (the first run builds and seals them)", folder)
    packs = demo.ensure(folder, keyfile)
    log.warning(DEV_KEY_WARNING.format(key=keyfile))
    values = {**cfg.values, "keys.provider": "keyfile", "keys.keyfile": keyfile,
              "keys.allow_dev_key": True}
    if not keep_state_dir:
        values["server.state_dir"] = folder / "state"
    models = tuple(ModelConfig(name=name, pack=path) for name, path in packs)
    return config.finalize(Config(values=values, models=models, source=None))


def system_devices(cfg: Config) -> DeviceSources:
    """This machine's accelerators: the udev inventory, a netlink monitor for hot-plug
    (None where the sandbox forbids AF_NETLINK: logged), and the claimer if enabled."""
    from llmos.app import DeviceSources
    from llmos.hw.claim import Claimer
    from llmos.hw.inventory import InventorySource
    from llmos.hw.udev import UdevMonitor

    return DeviceSources(InventorySource(), UdevMonitor.try_open(),
                         Claimer() if cfg["devices.claim"] else None)


def _pci_bus_order() -> None:
    """CUDA numbers GPUs fastest-first by default; placement numbers them in PCI order
    (as nvidia-smi does). Set before anything imports a CUDA library."""
    previous = os.environ.get(CUDA_ORDER)
    if previous not in (None, PCI_BUS_ID):
        log.warning("%s=%s overridden: placement numbers GPUs in PCI bus order", CUDA_ORDER,
                    previous)
    os.environ[CUDA_ORDER] = PCI_BUS_ID


def single_threaded_blas() -> None:
    """numpy's OpenBLAS starts a thread per core when numpy is imported, and they spin
    before they sleep; the supervisor never calls BLAS (the runtimes have their own thread
    pools). Set before numpy is imported; a value the operator set is kept."""
    os.environ.setdefault(BLAS_THREADS, "1")


def _prefetch(cfg: Config, memory: MemoryPool) -> Prefetch | None:
    """Release the key and decrypt the packs in a thread, before the heavy imports."""
    from llmos.vault.keys import provider_from_config
    from llmos.vault.prefetch import Prefetch

    if not cfg.models:
        return None
    try:
        provider = provider_from_config(cfg)
    except Exception as exc:  # the key opener makes the provider again and reports why
        log.debug("no early decryption: %s", exc)
        return None
    return Prefetch(provider, cfg.models, memory).start()


def _serve_the_reason(exc: ConfigError, overrides: dict[str, Any],
                      cfg: Config | None = None) -> int:
    """Under systemd: a configuration that does not load will not load after a restart
    either, so the API address answers /health with the reason instead of a restart loop
    (``llmos.web.fallback``). By hand (no NOTIFY_SOCKET) ``exc`` is raised again: said,
    and the command exits.

    ``cfg`` is the configuration when it did load (the failure came later, e.g. a TLS
    certificate): its address is the one clients use. Without it the address comes from
    the flags and environment, if they at least parse."""
    if not os.environ.get("NOTIFY_SOCKET"):
        raise exc
    import asyncio

    from llmos.systemd import Notifier
    from llmos.web.fallback import serve_reason

    log.error("the configuration does not load: %s; serving /health with the reason", exc)
    try:
        loaded = cfg if cfg is not None else config.load(None, overrides)
        host, port = str(loaded["server.host"]), int(loaded["server.port"])
    except ConfigError:
        host, port = "127.0.0.1", 8000
    asyncio.run(serve_reason(host, port, f"configuration error: {exc.message}", Notifier()))
    return 1


def run(args: argparse.Namespace) -> int:
    _pci_bus_order()
    single_threaded_blas()
    from llmos.hw.memory import MemoryPool
    from llmos.hw.usage import process_usage

    overrides = {s.key: vars(args)[s.key] for s in config.SETTINGS if s.flag}
    try:
        cfg = config.load(args.config, overrides)
    except ConfigError as exc:
        return _serve_the_reason(exc, overrides)
    logging.getLogger().setLevel(cfg["server.log_level"])
    if args.config is None and not cfg.models:
        state_env = next(s.env for s in config.SETTINGS if s.key == "server.state_dir")
        state_given = overrides["server.state_dir"] is not None or state_env in os.environ
        cfg = demo_config(cfg, demo_dir(), keep_state_dir=state_given)
    from llmos.vault import uploads

    cfg = uploads.merge(cfg)  # the packs uploaded on the admin page come back
    # The server's start/stop reserve and close the pool, start and stop the devices.
    memory = MemoryPool(pin=cfg["memory.pin_weights"], hugepages=cfg["memory.hugepages"])
    if cfg["memory.lock_process"]:
        memory.lock_process()
    prefetch = _prefetch(cfg, memory)  # decrypts while the rest of the server imports
    import uvloop

    from llmos.app import LlmOs

    devices = system_devices(cfg)
    log.info("supervisor code loaded %s", process_usage().describe())
    try:
        # libuv's event loop (as uvicorn's): ~7 % more requests/s than asyncio's own at
        # concurrency 1, where the loop's own time is part of every request's
        uvloop.run(LlmOs(cfg, memory=memory, devices=devices, prefetch=prefetch).run())
    except ConfigError as exc:  # e.g. a TLS certificate that does not load
        return _serve_the_reason(exc, overrides, cfg)
    return 0
