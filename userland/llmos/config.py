"""Configuration as one table.

``SETTINGS`` (supervisor-wide) and ``MODEL_SETTINGS`` (one ``[[models]]`` entry each) drive
the TOML parser, the defaults, the validation, the environment overrides
(``LLMOS_<SECTION>_<KEY>``), the ``serve`` flags and the generated documentation
(``llmos config-doc``). Cross-field checks live in ``finalize``.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.config_values import (
    boolean,
    int_range,
    non_negative,
    one_of,
    optional_boolean,
    optional_path_value,
    optional_positive_float,
    path_value,
    positive,
    tls_mode,
)
from llmos.credentials import credential
from llmos.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name"
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag: str | None = None  # long option of `llmos serve`, if any

    @property
    def env(self) -> str:
        return "LLMOS_" + self.key.replace(".", "_").replace("-", "_").upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", str, "127.0.0.1", "address of the inference API", "--host"),
    Setting("server.port", non_negative(int), 8000, "port of the inference API (0 = any)",
            "--port"),
    Setting("server.admin_host", str, "127.0.0.1", "address of the admin page", "--admin-host"),
    Setting("server.admin_port", non_negative(int), 8001, "port of the admin page (0 = any)",
            "--admin-port"),
    Setting("server.max_body_bytes", positive(int), 16 * 1024 * 1024,
            "largest request body accepted (413 above)"),
    Setting("server.max_request_rows", positive(int), 1024,
            "rows (dim 0) of one tensor request; more answer 413 (a request of more rows "
            "than a model's max_batch_size runs as several batches)"),
    Setting("server.max_inflight_requests", positive(int), 256,
            "inference requests being served at once, all models (more: 503, Retry-After)"),
    Setting("server.max_inflight_bytes", positive(int), 256 * 1024 * 1024,
            "request body bytes being served at once, all models (more: 503, Retry-After)"),
    Setting("server.max_connections", positive(int), 1024,
            "open connections per listener; more are closed at once (size LimitNOFILE "
            "above twice this)"),
    Setting("server.body_timeout_s", positive(float), 30.0,
            "longest wait for a request's body to arrive (408 after)"),
    Setting("server.idle_timeout_s", positive(float), 30.0,
            "a kept-alive connection with no request for this long is closed"),
    Setting("server.offload_bytes", non_negative(int), 64 * 1024,
            "bodies larger than this are decoded (JSON, tokenisation, chat template) in a "
            "worker thread, off the event loop"),
    Setting("server.worker_nice", int_range(0, 19), 10,
            "nice value added to the threads doing requests' heavy work (inference, the "
            "LLM engines, body decoding, onnxruntime's pools), so that under overload the "
            "event loop (/health) gets a core first; 0 = same priority as the loop"),
    Setting("server.cpu_awake_s", non_negative(float), 1.0,
            "after a request, idle cores poll this long instead of sleeping, so the next "
            "finds them awake (~1.6x requests/s one at a time, more power; 0 = sleep)"),
    Setting("server.repository_control", boolean, False,
            "allow model load/unload (POST /v2/repository/models/NAME/load|unload) on the "
            "API listener, unauthenticated; off: only the admin page loads and unloads"),
    Setting("server.request_timeout_s", positive(float), 30.0,
            "deadline of one inference request, queueing included (504 after; a language "
            "model's whole answer, or a stream's first token: raise it for long answers)"),
    Setting("server.update_drain_s", positive(float), 60.0,
            "after a model update, longest wait for the replaced version's requests to "
            "finish before it is unloaded anyway"),
    Setting("server.api_keys_file", optional_path_value, None,
            "API keys ('NAME: KEY' or 'NAME: sha256:HEX' lines) required on the inference "
            "API (besides the llmos-api-keys credential); none: the API is open",
            "--api-keys-file"),
    Setting("server.drain_s", non_negative(float), 0.0,
            "on SIGTERM: answer not-ready and keep serving this long before closing "
            "(at least a load balancer's check interval x fall)", "--drain-s"),
    Setting("server.drain_grace_s", non_negative(float), 20.0,
            "on SIGTERM, after drain_s: longest wait for requests in flight to finish"),
    Setting("server.tls", tls_mode, False,
            "serve the inference API over HTTPS only (server.tls_cert/tls_key, the "
            "llmos-api-tls-cert/-key credentials, else self-signed in <state_dir>/api-tls; "
            "fingerprint logged); 'provisioned': HTTPS once a certificate is given", "--tls"),
    Setting("server.tls_cert", optional_path_value, None, "PEM certificate of the inference API"),
    Setting("server.tls_key", optional_path_value, None, "PEM private key of server.tls_cert"),
    Setting("server.state_dir", path_value, Path("/var/lib/llmos"),
            "persistent state: admin password hash, enrollment marker", "--state-dir"),
    Setting("server.log_level", one_of("DEBUG", "INFO", "WARNING", "ERROR"), "INFO",
            "logging threshold", "--log-level"),
    Setting("keys.provider", one_of("tpm2", "credential", "keyfile"), "tpm2",
            "where the fleet key comes from: a TPM-sealed blob, a systemd credential "
            "(LoadCredentialEncrypted=), or a plain key file (development only)", "--key-provider"),
    Setting("keys.keyfile", optional_path_value, None, "fleet key file for the keyfile provider",
            "--keyfile"),
    Setting("keys.allow_dev_key", boolean, False,
            "permit the keyfile provider (development only; warns on every start)",
            "--allow-dev-key"),
    Setting("keys.credential", str, "llmos-fleet-key",
            "name of the systemd credential holding the fleet key"),
    Setting("keys.tpm2_blob", path_value, Path("/var/lib/llmos/fleet-key.tpm2"),
            "fleet key sealed to this machine's TPM (tpm2 provider)"),
    Setting("keys.tpm2_device", str, "auto",
            "TPM device for systemd-creds (auto, /dev/tpmrm0, or swtpm:path=SOCK)"),
    Setting("keys.tpm2_pcrs", str, "7", "PCRs the fleet key is bound to (systemd-creds syntax)"),
    Setting("keys.tpm2_signed_pcrs", str, "",
            "PCRs bound through a signed policy (the appliance: 11, the signed UKI; "
            "'' for none); the supervisor extends PCR 11 once the key is released"),
    Setting("keys.tpm2_public_key", optional_path_value, None,
            "public key of the signed PCR policy (default: the booted UKI's)"),
    Setting("keys.tpm2_signature", optional_path_value, None,
            "signature of the expected PCR values (default: the booted UKI's)"),
    Setting("admin.session_idle_s", positive(float), 1800.0,
            "admin sessions end after this long without a request"),
    Setting("admin.session_max_s", positive(float), 43200.0,
            "admin sessions end this long after login, active or not"),
    Setting("admin.upload_max_bytes", positive(int), 16 * 1024**3,
            "largest sealed pack accepted by the admin upload (uploads also leave 256 MiB "
            "of the data partition free)"),
    Setting("admin.upload_dir", optional_path_value, None,
            "where uploaded sealed packs are kept, and found again at start (default: "
            "<state_dir>/packs, the data partition on the appliance)"),
    Setting("admin.tls", tls_mode, False,
            "serve the admin page over HTTPS only (admin.tls_cert/tls_key, the llmos-admin-"
            "tls-cert/-key credentials, else self-signed in <state_dir>/admin-tls; fingerprint "
            "logged and shown on the overview)", "--admin-tls"),
    Setting("admin.tls_cert", optional_path_value, None, "PEM certificate of the admin page"),
    Setting("admin.tls_key", optional_path_value, None, "PEM private key of admin.tls_cert"),
    Setting("admin.upload_watch_s", non_negative(float), 5.0,
            "look this often (seconds) for sealed packs copied into admin.upload_dir: a new "
            "model is added, another version of a model updates it (0: never)"),
    Setting("admin.password_file", optional_path_value, None,
            "scrypt hash of the admin password (default: <state_dir>/admin-password)"),
    Setting("admin.generate_password", optional_boolean, None,
            "make a random admin password on first start (default: yes unless under systemd)"),
    Setting("memory.hugepages", non_negative(int), 0,
            "2 MiB hugepages to reserve at start (0 = use what the kernel has)"),
    Setting("memory.pin_weights", boolean, True,
            "keep decrypted weights in mlock'ed (and, where possible, hugepage) memory"),
    Setting("memory.lock_process", boolean, True,
            "with pin_weights: mlockall the supervisor, so the runtime's own copies of the "
            "weights (prepacked matrices, arenas, KV cache) are pinned too; needs "
            "LimitMEMLOCK=infinity or CAP_IPC_LOCK (a fallback says so otherwise)"),
    Setting("devices.claim", boolean, True,
            "claim accelerators: own their device nodes and turn NVIDIA persistence mode on "
            "(false: use them as they are, e.g. a workstation's shared GPU)"),
    Setting("osupdate.request_file", path_value, Path("/run/llmos/os-update/request"),
            "where the admin page drops an OS update or reboot request for the update agent "
            "(llmos-update.path watches it)"),
    Setting("osupdate.status_file", path_value, Path("/run/llmos-update/status.json"),
            "the update agent's status, shown on the admin page"),
    Setting("server.packs_dir", path_value, Path("/usr/share/llmos/packs"),
            "where sealed packs are found and uploaded packs are stored", "--packs-dir"),
)


# What a machine's provisioning may change over the image's config.toml (the credential
# llmos-settings: a TOML of these keys): deadlines and limits sized to the machine, nothing
# naming code, packs, keys or listeners, which the signed image alone decides.
SITE_CREDENTIAL = "llmos-settings"
SITE_SETTINGS = frozenset({
    "server.request_timeout_s", "server.body_timeout_s", "server.idle_timeout_s",
    "server.update_drain_s", "server.drain_s", "server.drain_grace_s",
    "server.max_body_bytes", "server.max_request_rows", "server.max_inflight_requests",
    "server.max_inflight_bytes", "server.log_level", "server.cpu_awake_s",
})

MODEL_SETTINGS: tuple[Setting, ...] = (
    Setting("name", str, None, "model name in the API (required)"),
    Setting("pack", path_value, None,
            "sealed pack file, absolute or relative to packs_dir (required)"),
    Setting("device", str, "cpu", "cpu, cuda, cuda:N, or any (GPU if there is one)"),
    Setting("cpu_fallback", boolean, False,
            "allow CPU when the requested accelerator is absent (never silent: logged, shown)"),
    Setting("instances", positive(int), 1, "parallel instances (each a worker thread)"),
    Setting("max_batch_size", positive(int), 8, "dynamic batching: largest batch"),
    Setting("max_queue_delay_ms", non_negative(float), 2.0,
            "dynamic batching: longest wait for a batch to fill"),
    Setting("queue_size", positive(int), 256, "bounded queue; full answers 503 + Retry-After"),
    Setting("timeout_s", optional_positive_float, None,
            "per-request deadline (default: server.request_timeout_s)"),
    Setting("threads", non_negative(int), 0, "intra-op threads of the runtime (0 = default)"),
    Setting("prepack", optional_boolean, None,
            "ONNX Runtime's own copy of the weights (default: where the pack names them, unless "
            "this CPU's kernels read them in place: ~45x faster LLM decoding, -30 % MiniLM CPU)"),
    Setting("spin_us", non_negative(int), 20,
            "microseconds runtime threads busy-wait for more work before sleeping (20: ~1.35x "
            "LLM decoding, 0.94x where two models compute at once; 0: never; 200: 0.77x)"),
    Setting("max_tokens", positive(int), 512, "causal LMs: cap on generated tokens"),
    Setting("max_running", positive(int), 8, "causal LMs: sequences decoded together"),
    Setting("prefill_chunk", positive(int), 128,
            "causal LMs: prompt tokens prefilled between two decode steps of the running "
            "sequences (chunked prefill: smaller keeps their tokens flowing, larger reads "
            "a long prompt a little faster)"),
    Setting("prefix_cache_mb", non_negative(int), 128,
            "causal LMs: memory for the prefix cache of KV blocks, least recently used "
            "evicted (a repeated system prompt or chat history is not recomputed; 0 = off)"),
    Setting("prefix_block_tokens", positive(int), 16,
            "causal LMs: tokens per prefix cache block (a shared prefix is reused in whole "
            "blocks, and an earlier sequence's partial last block too when a prompt starts "
            "with all of that sequence)"),
)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    pack: Path
    device: str = "cpu"
    cpu_fallback: bool = False
    instances: int = 1
    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    queue_size: int = 256
    timeout_s: float | None = None
    threads: int = 0
    prepack: bool | None = None  # None: the model kind's default
    spin_us: int = 20
    max_tokens: int = 512
    max_running: int = 8
    prefill_chunk: int = 128
    prefix_cache_mb: int = 128
    prefix_block_tokens: int = 16


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    models: tuple[ModelConfig, ...] = field(default_factory=tuple)
    source: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


_BY_KEY = {s.key: s for s in SETTINGS}


def _apply(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {setting.key} = {raw!r}: {exc}",
                          f"{setting.key}: {setting.help}") from exc


def _model(entry: Mapping[str, Any], index: int, origin: str) -> ModelConfig:
    known = {s.key: s for s in MODEL_SETTINGS}
    if unknown := set(entry) - set(known):
        raise ConfigError(f"{origin}: models[{index}] has unknown keys {sorted(unknown)}",
                          f"known keys: {', '.join(known)}")
    values: dict[str, Any] = {}
    for s in MODEL_SETTINGS:
        if s.key in entry:
            values[s.key] = _apply(Setting(f"models[{index}].{s.key}", s.parse, s.default, s.help),
                                   entry[s.key], origin)
        elif s.default is None and s.key in ("name", "pack"):
            raise ConfigError(f"{origin}: models[{index}] has no {s.key!r}",
                              f"{s.key}: {s.help}")
    return ModelConfig(**values)


def site_settings(text: str, origin: str) -> tuple[dict[str, Any], list[str]]:
    """The ``SITE_SETTINGS`` in the TOML ``text`` (the llmos-settings credential), parsed,
    and why each other entry was refused: a refused entry costs only itself."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, [f"{origin} is not valid TOML: {exc}"]
    values: dict[str, Any] = {}
    refused: list[str] = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            refused.append(f"{origin}: {section!r} is not a section of settings")
            continue
        for name, raw in table.items():
            key = f"{section}.{name}"
            if key not in SITE_SETTINGS:
                refused.append(f"{origin}: {key!r} is not a setting a machine may change")
                continue
            try:
                values[key] = _apply(_BY_KEY[key], raw, origin)
            except ConfigError as exc:
                refused.append(exc.message)
    return values, refused


def _site(environ: Mapping[str, str]) -> dict[str, Any]:
    path = credential(environ, SITE_CREDENTIAL)
    if path is None:
        return {}
    values, refused = site_settings(path.read_text(errors="replace"),
                                    f"credential {SITE_CREDENTIAL}")
    for why in refused:
        log.error("refused: %s (the image's config.toml applies)", why)
    if values:
        log.info("credential %s sets %s", SITE_CREDENTIAL,
                 ", ".join(f"{k} = {v!r}" for k, v in sorted(values.items())))
    return values


def load(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Defaults < config file < the machine's llmos-settings credential (``SITE_SETTINGS``
    only) < environment < explicit overrides (CLI flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    models: tuple[ModelConfig, ...] = ()
    if path is not None:
        origin = str(path)
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist",
                              "pass --config with an existing file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax") from exc
        for section, table in doc.items():
            if section == "models":
                if not isinstance(table, list):
                    raise ConfigError(f"{origin}: 'models' must be an array of tables",
                                      "write each model as a [[models]] table")
                models = tuple(_model(e, i, origin) for i, e in enumerate(table))
                continue
            if not isinstance(table, dict):
                raise ConfigError(f"{origin}: top-level key {section!r} is not a section",
                                  "settings live in [server], [keys], [admin], [memory], "
                                  "[devices], [osupdate]; models in [[models]]")
            for name, raw in table.items():
                key = f"{section}.{name}"
                if key not in _BY_KEY:
                    raise ConfigError(f"{origin}: unknown setting {key!r}",
                                      "run 'llmos config-doc' for the list")
                values[key] = _apply(_BY_KEY[key], raw, origin)
    values.update(_site(environ))
    for s in SETTINGS:
        if s.env in environ:
            values[s.key] = _apply(s, environ[s.env], f"environment {s.env}")
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _apply(_BY_KEY[key], raw, "command line")
    return finalize(Config(values=values, models=models, source=path))


def finalize(cfg: Config) -> Config:
    """Cross-field checks and derived values."""
    if cfg["keys.provider"] == "keyfile":
        if cfg["keys.keyfile"] is None:
            raise ConfigError("the keyfile provider needs keys.keyfile",
                              "pass --keyfile PATH (development) or use the tpm2 provider")
        if not cfg["keys.allow_dev_key"]:
            raise ConfigError("the keyfile provider is for development only and is not allowed",
                              "pass --allow-dev-key to accept an unprotected fleet key")
    names = [m.name for m in cfg.models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"model names must be unique; repeated: {dupes}",
                          "give each [[models]] entry its own name")
    packs_dir: Path = cfg["server.packs_dir"]
    models = tuple(
        m if m.pack.is_absolute() else ModelConfig(**{**m.__dict__, "pack": packs_dir / m.pack})
        for m in cfg.models
    )
    return Config(values=cfg.values, models=models, source=cfg.source)


def describe() -> str:
    """Markdown table of every setting (the reference in docs/configuration.md)."""
    rows = ["| setting | default | env | flag | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        site = " (machine: llmos-settings)" if s.key in SITE_SETTINGS else ""
        rows.append(f"| `{s.key}` | `{s.default}` | `{s.env}` | `{s.flag or ''}` | "
                    f"{s.help}{site} |")
    rows += ["", "| `[[models]]` key | default | meaning |", "|---|---|---|"]
    for s in MODEL_SETTINGS:
        rows.append(f"| `{s.key}` | `{s.default}` | {s.help} |")
    return "\n".join(rows)
