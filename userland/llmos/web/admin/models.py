"""Model actions of the admin console: load, unload, and upload a sealed pack.

An upload streams to a temporary file in ``admin.upload_dir`` (never into memory whole;
the data partition on the appliance, ``llmos.vault.uploads``) as long as the partition has
room for it, is checked before it is kept - a sealed header with a valid manifest, the
exact length the header promises, sealed for the fleet key this machine holds - then
renamed into place (``<name>-<version>.sealed``) and loaded through the model registry like
any configured model; once it serves, older uploads of the model are removed. The pack
stays encrypted on disk; decryption happens in memory at load, as at boot. ``llmos serve``
finds the uploads again at start.

A pack of a model that serves, with another version, is an update (``ModelRegistry.update``):
the new version loads beside the serving one and takes over once warm; the answer comes
then. One of the version already serving is refused (409) before it is kept, and one whose
update fails is not kept either: the old version serves on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, web

from llmos.dropins import install
from llmos.errors import (
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    WrongKeyError,
)
from llmos.pack.manifest import Manifest
from llmos.registry import ModelRegistry
from llmos.vault import uploads
from llmos.vault.sealed import SealedPack
from llmos.web.admin.api import json_response
from llmos.web.admin.state import ADMIN
from llmos.web.keys import DATAPLANE

log = logging.getLogger(__name__)

FIELD = "pack"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


async def load(request: web.Request) -> web.Response:
    status = await request.app[DATAPLANE].registry.load(request.match_info["model"])
    return json_response(status.to_dict())


async def unload(request: web.Request) -> web.Response:
    status = await request.app[DATAPLANE].registry.unload(request.match_info["model"])
    return json_response(status.to_dict())


def pack_file_name(manifest: Manifest) -> str:
    stem = _SAFE.sub("_", f"{manifest.name}-{manifest.version}").strip("._") or "pack"
    return f"{stem}.sealed"


def check_sealed_file(path: Path, kek_id: str | None) -> Manifest:
    """The manifest of an uploaded sealed pack, if it is whole and for our key."""
    sealed = SealedPack.open(path)
    expected = sealed.header.size + sealed.header.body_size
    actual = path.stat().st_size
    if actual != expected:
        raise BadRequestError(f"the upload is {actual} bytes, the sealed pack's header "
                              f"promises {expected}", "upload the complete .sealed file")
    sealed.manifest.validate()
    if kek_id is not None and sealed.kek_id != kek_id:
        raise WrongKeyError(f"pack {sealed.manifest.name!r} was sealed for fleet key "
                            f"{sealed.kek_id}; this machine holds {kek_id}",
                            f"seal the pack again with fleet key {kek_id}")
    return sealed.manifest


def _too_large(size: int, directory: Path, limit: int) -> PayloadTooLargeError:
    room = uploads.room(directory, limit)
    if room < limit:
        return PayloadTooLargeError(
            f"the upload ({size} bytes or more) does not fit: {room} bytes may be used on "
            f"the data partition ({directory})", "unload and remove models, or use a larger disk")
    return PayloadTooLargeError(f"the upload exceeds {limit} bytes",
                                "raise admin.upload_max_bytes")


async def _receive(request: web.Request, directory: Path, limit: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    room = uploads.room(directory, limit)
    if request.content_length is not None and request.content_length > room:
        raise _too_large(request.content_length, directory, limit)
    reader = await request.multipart()
    part = await reader.next()
    while part is not None and (not isinstance(part, BodyPartReader) or part.name != FIELD):
        part = await reader.next()
    if part is None:
        raise BadRequestError(f"no file in the upload's {FIELD!r} field",
                              "send multipart/form-data with the sealed pack as 'pack'")
    tmp = directory / uploads.temporary_name(secrets.token_hex(6))
    size = 0
    try:
        with tmp.open("wb") as out:
            while chunk := await part.read_chunk(1 << 20):
                size += len(chunk)
                if size > room:
                    raise _too_large(size, directory, limit)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(os.fsync, out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _known(sup: ModelRegistry, name: str) -> bool:
    try:
        sup.status(name)
    except NotFoundError:
        return False
    return True


async def upload(request: web.Request) -> web.Response:
    state, sup = request.app[ADMIN], request.app[DATAPLANE].registry
    if not request.content_type.startswith("multipart/"):
        raise BadRequestError("an upload must be multipart/form-data",
                              f"send the sealed pack in the form field {FIELD!r}")
    directory = state.options.upload_dir
    tmp = await _receive(request, directory, state.options.upload_max_bytes)
    try:
        kek_id = sup.key.details.get("kek_id") if sup.key.released else None
        manifest = await asyncio.to_thread(check_sealed_file, tmp,
                                           None if kek_id is None else str(kek_id))
        known = _known(sup, manifest.name)
        if known:
            sup.check_update(manifest.name, manifest)
        final = directory / pack_file_name(manifest)
        tmp.replace(final)
        await asyncio.to_thread(uploads.fsync_dir, directory)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("admin: pack %s (%s %s) uploaded to %s", manifest.name, manifest.kind,
             manifest.version, final)
    status = await install(sup, manifest, final)
    return json_response({**status.to_dict(), "pack": str(final)})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/models", upload)
    r.add_post("/api/models/{model}/load", load)
    r.add_post("/api/models/{model}/unload", unload)
