"""The host-side VM tooling and the image build helpers, without booting the image.

Fast (no image needed): credentials, the QEMU command line, the accelerator probe, the
plaintext scanner, pack staging, the wheel pins, OVMF and swtpm state handling, the guest's
boot report script.
"""

from __future__ import annotations

import base64
import itertools
import re
import socket
import ssl
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
import stage_packs
import wheel_pins
from llmos_vm import accel, credentials, disk, http, ovmf, qemu, report
from llmos_vm.errors import VmError
from llmos_vm.swtpm import Swtpm, TpmState
from stage_packs import PackInfo

from llmos import config

from . import guest


def test_binary_credential_round_trips_any_bytes() -> None:
    value = bytes(range(256))
    text = credentials.credential("llmos-provision-key", value)
    prefix, _, encoded = text.partition("=")
    assert prefix == "io.systemd.credential.binary:llmos-provision-key"
    assert base64.b64decode(encoded) == value


def test_credential_names_are_checked() -> None:
    with pytest.raises(ValueError):
        credentials.credential("bad name=x", b"")


def test_smbios_option_escapes_commas() -> None:
    opt = credentials.smbios_option(credentials.kernel_cmdline_extra("a=1,2", "b"))
    assert opt == "type=11,value=io.systemd.stub.kernel-cmdline-extra=a=1,,2 b"


def test_an_emulated_machine_is_provisioned_with_its_own_deadline() -> None:
    text = credentials.emulated_machine_settings()
    assert credentials.names([text, "io.systemd.stub.kernel-cmdline-extra=x=1",
                              credentials.credential("llmos-api-keys", b"a: b")]) \
        == {"llmos-settings", "llmos-api-keys"}
    raw = base64.b64decode(text.partition("=")[2]).decode()
    values, refused = config.site_settings(raw, "credential")
    assert refused == []
    assert values == {"server.request_timeout_s": credentials.EMULATED_REQUEST_TIMEOUT_S}
    # below the boot tests' client timeout: a stuck request still shows as the server's 504
    assert values["server.request_timeout_s"] < guest.REQUEST_TIMEOUT_S


def _config(**kw: object) -> qemu.VmConfig:
    base: dict[str, object] = dict(
        disk=Path("/vm/disk.qcow2"), ovmf_code=Path("/fw/CODE.fd"),
        ovmf_vars=Path("/vm/VARS.fd"), tpm_socket=Path("/vm/tpm/swtpm.sock"),
        qmp_socket=Path("/vm/qmp.sock"), serial_log=Path("/vm/console.log"))
    base.update(kw)
    return qemu.VmConfig(**base)  # type: ignore[arg-type]


def test_qemu_command_line_is_headless_q35_with_tpm_nvme_and_forwards() -> None:
    argv = qemu.argv(_config(forwards=(qemu.Forward(18000, 8000),),
                             smbios=("io.systemd.credential:x=1",)))
    joined = " ".join(argv)
    assert argv[argv.index("-machine") + 1] == "q35,accel=tcg,sata=off,i8042=off,smbus=off"
    assert argv[argv.index("-cpu") + 1] == "max,-erms,-fsrm,-fma"
    assert "-vga none" in joined and "-nographic" in argv
    assert "tpm-crb,tpmdev=tpm0" in argv and "socket,id=chrtpm,path=/vm/tpm/swtpm.sock" in argv
    assert "file=/vm/disk.qcow2,format=qcow2" in joined and "nvme,drive=disk0" in joined
    assert "hostfwd=tcp:127.0.0.1:18000-:8000" in joined
    assert argv[argv.index("-smbios") + 1] == "type=11,value=io.systemd.credential:x=1"
    assert argv[argv.index("-serial") + 1] == "file:/vm/console.log"
    assert "readonly=on,file=/fw/CODE.fd" in joined


def test_qemu_keyboard_and_reboot_only_when_asked() -> None:
    plain = qemu.argv(_config())
    assert "-no-reboot" in plain  # a guest reboot ends QEMU (the tests see it)
    argv = qemu.argv(_config(keyboard=True, reboot=True))
    assert argv[argv.index("-machine") + 1] == "q35,accel=tcg,sata=off,smbus=off"
    assert "-no-reboot" not in argv


def test_pinned_https_refuses_another_certificate(tmp_path: Path) -> None:
    """The boot tests' HTTPS client trusts the fingerprint from the console, nothing else."""
    from llmos.tls import make_self_signed

    served, other = (make_self_signed(tmp_path / n, "guest") for n in ("served", "other"))
    ctx = served.context()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve(count: int) -> None:
            for _ in range(count):
                raw, _ = listener.accept()
                try:
                    with ctx.wrap_socket(raw, server_side=True) as conn:
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                     b"Connection: close\r\n\r\nok")
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, args=(2,), daemon=True)
        thread.start()
        url = f"https://127.0.0.1:{port}/login"
        reply = http.request(url, pin=served.fingerprint)
        assert reply is not None and (reply.status, reply.body) == (200, b"ok")
        with pytest.raises(http.CertificateMismatch):
            http.request(url, pin=other.fingerprint)
        thread.join(10)
    with pytest.raises(ValueError):
        http.request(url)  # no pin: no blind trust


def test_qemu_uses_the_host_cpu_under_kvm_and_stdio_without_a_log() -> None:
    argv = qemu.argv(_config(accel="kvm", serial_log=None, disk=Path("/x/llmos.raw")))
    assert argv[argv.index("-cpu") + 1] == "host"
    assert argv[argv.index("-serial") + 1] == "mon:stdio"
    assert "format=raw" in " ".join(argv)


def test_probe_boot_sector_is_a_valid_mbr_that_writes_the_exit_value() -> None:
    sector = accel.boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
    assert bytes([0xB0, accel.EXIT_VALUE, 0xEE]) in sector  # mov al, value; out dx, al


def test_tcg_probe_runs_a_guest_to_completion() -> None:
    assert accel.probe("tcg", timeout_s=60)


def test_probe_asks_for_the_secure_boot_machine_with_smm() -> None:
    # KVM without SMM boots the probe's plain machine, then fails every Secure Boot boot.
    argv = accel.probe_argv("kvm", Path("/x/probe.img"))
    assert argv[argv.index("-machine") + 1] == "q35,accel=kvm,smm=on"
    booted = qemu.argv(_config(accel="kvm", secure_boot=True))
    assert "smm=on" in booted[booted.index("-machine") + 1].split(",")


def test_find_all_reports_every_match_once_across_chunk_borders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk, "CHUNK", 100)
    needle = bytes(range(1, 41))
    data = bytearray(1000)
    for pos in (0, 80, 190, 960):  # 80 and 190 straddle chunk borders
        data[pos:pos + len(needle)] = needle
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(data))
    found = sorted(off for _, off in disk.find_all(path, [needle, b"absent-needle"]))
    assert found == [0, 80, 190, 960]


def test_find_all_finds_nothing_in_clean_data(tmp_path: Path) -> None:
    path = tmp_path / "clean.img"
    path.write_bytes(b"\0" * 4096)
    assert list(disk.find_all(path, [b"\x01" * 64])) == []


def _info(name: str, size: int, runtime: str = "onnx") -> PackInfo:
    return PackInfo(Path(f"/demo/{name}.sealed"), name, runtime, size)


def test_hugepages_hold_every_pack_page_rounded_plus_headroom() -> None:
    mib = 1024 * 1024
    packs = [_info("a", 2 * mib), _info("b", 2 * mib + 1)]
    # a: 1 page + 1; b: 2 pages + 1; + headroom
    assert stage_packs.hugepages_for(packs) == 2 + 3 + stage_packs.HEADROOM_PAGES


def test_select_keeps_list_order_and_refuses_missing_or_foreign_packs() -> None:
    have = [_info("minilm", 1), _info("smollm2", 1), _info("torchy", 1, "torchscript")]
    assert [p.name for p in stage_packs.select(have, ["smollm2", "minilm"])] == \
        ["smollm2", "minilm"]
    with pytest.raises(SystemExit, match="no sealed pack"):
        stage_packs.select(have, ["nope"])
    with pytest.raises(SystemExit, match="runtime the image lacks"):
        stage_packs.select(have, ["torchy"])


def test_rendered_config_is_valid_for_the_supervisor(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(stage_packs.render([_info("minilm", 1), _info("smollm2", 1)]))
    cfg = config.load(path, environ={})
    assert cfg["keys.provider"] == "tpm2" and cfg["keys.tpm2_pcrs"] == "7+12+13"
    assert cfg["keys.tpm2_signed_pcrs"] == "11"
    assert cfg["server.host"] == "0.0.0.0" and cfg["server.port"] == 8000
    assert cfg["admin.tls"] is True and cfg["admin.tls_cert"] is None  # HTTPS, self-signed
    assert cfg["server.tls"] == "provisioned"  # the API: HTTPS once a certificate is given
    assert [m.name for m in cfg.models] == ["minilm", "smollm2"]
    assert cfg.models[0].pack == Path("/usr/share/llmos/packs/minilm.sealed")


def test_pack_list_ignores_comments(tmp_path: Path) -> None:
    path = tmp_path / "packs.list"
    path.write_text("# header\nminilm  # the encoder\n\n  smollm2\n")
    assert stage_packs.read_list(path) == ["minilm", "smollm2"]


def test_nvidia_requirements_swap_onnxruntime_for_the_gpu_build() -> None:
    proj = {"dependencies": ["numpy>=1", "onnxruntime>=1.18"]}
    assert wheel_pins.runtime("default", proj) == ["numpy>=1", "onnxruntime>=1.18"]
    assert wheel_pins.runtime("nvidia", proj) == \
        ["numpy>=1", "onnxruntime-gpu[cuda,cudnn]>=1.18"]


def test_lock_check_sees_unpinned_dependencies() -> None:
    lock = "# c\nnumpy==2 --hash=sha256:00\nPrometheus_Client==1 --hash=sha256:00\n"
    assert wheel_pins.pinned(lock) == {"numpy", "prometheus-client"}


def test_the_committed_lock_pins_every_runtime_dependency() -> None:
    lock = Path(wheel_pins.__file__).with_name("wheels.lock").read_text()
    wanted = {wheel_pins.name_of(d) for d in wheel_pins.runtime("default",
                                                                    wheel_pins.project())}
    assert wanted <= wheel_pins.pinned(lock), "run image/lock-wheels.sh"


def test_ovmf_table_parses_and_vars_are_copied_once(tmp_path: Path) -> None:
    assert ovmf.candidates(), "firmware/ovmf.toml lists no firmware"
    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"code")
    template.write_bytes(b"pristine")
    fw = ovmf.find([ovmf.Ovmf(tmp_path / "missing.fd", template), ovmf.Ovmf(code, template)])
    assert fw.code == code
    mine = ovmf.vars_for_vm(fw, tmp_path / "vm" / "VARS.fd")
    mine.write_bytes(b"written by the guest")
    assert ovmf.vars_for_vm(fw, mine).read_bytes() == b"written by the guest"
    assert template.read_bytes() == b"pristine"
    with pytest.raises(VmError):
        ovmf.find([ovmf.Ovmf(tmp_path / "a", tmp_path / "b")])


def test_swtpm_state_is_manufactured_once_and_served(tmp_path: Path) -> None:
    state = TpmState(tmp_path / "tpm")
    with Swtpm(state) as tpm:
        assert state.manufactured() and state.socket.exists()
        tpm.stop(timeout_s=0.5)  # no QEMU ever connects: it is terminated
    before = (state.directory / "tpm2-00.permall").read_bytes()
    with Swtpm(state) as tpm:
        tpm.stop(timeout_s=0.5)
    assert (state.directory / "tpm2-00.permall").read_bytes() == before


def test_ovmf_table_is_toml_with_code_and_vars() -> None:
    table = tomllib.loads(ovmf.TABLE.read_text())
    assert all({"code", "vars"} <= set(e) for e in table["ovmf"])


UNITS = Path(__file__).resolve().parents[2] / "image/mkosi.extra/usr/lib/systemd"
ENROLL_UNITS = ("llmos-enroll.service", "llmos-enroll-esp.service")


def _generate(out: Path, blob: Path) -> list[str]:
    subprocess.run([UNITS / "system-generators/llmos-enroll-generator", out, out, out],
                   env={"LLMOS_ENROLL_BLOB": str(blob), "PATH": "/usr/bin:/bin"}, check=True)
    wants = out / "multi-user.target.wants"
    return sorted(p.name for p in wants.iterdir()) if wants.is_dir() else []


def test_enrollment_is_pulled_into_first_boots_only(tmp_path: Path) -> None:
    blob = tmp_path / "fleet-key.tpm2"
    first = _generate(tmp_path / "first", blob)
    assert first == sorted(ENROLL_UNITS)
    assert all((tmp_path / "first/multi-user.target.wants" / u).resolve()
               == Path("/usr/lib/systemd/system") / u for u in ENROLL_UNITS)
    blob.write_bytes(b"sealed")
    assert _generate(tmp_path / "later", blob) == []


def test_nothing_else_enables_the_enrollment_units() -> None:
    """Enabled, they would be in every boot, and the supervisor ordered after them."""
    for unit in ENROLL_UNITS:
        assert "[Install]" not in (UNITS / "system" / unit).read_text()
    preset = (UNITS / "system-preset/10-llmos.preset").read_text()
    assert "llmos-enroll" not in preset
    after = [line for line in (UNITS / "system/llmos.service").read_text().splitlines()
             if line.startswith("After=")]
    assert after and not any("systemd-tpm2-setup" in line for line in after)


BOOT_REPORT = UNITS.parent / "llmos/boot-report"
# What the report may run before its timed line besides assignments: shell built-ins and
# its own function (a floor boot's clock stops when that line arrives, so no process may
# run first).
BUILTINS = {"set", "read", "[", "}", "ticks_to_seconds"}


def test_the_boot_report_starts_no_process_before_its_timed_line() -> None:
    lines = BOOT_REPORT.read_text().splitlines()
    timed = next(i for i, line in enumerate(lines)
                 if line.startswith(f'echo "{report.TIMED} '))
    for line in lines[1:timed]:
        code = line.split("#", 1)[0].strip()
        if not code:
            continue
        # arithmetic $(( )) and || are the shell's own; $( ), backquotes and pipes start
        # processes
        assert not re.search(r"\$\((?!\()|`|(?<!\|)\|(?!\|)", code), f"{line!r} starts a process"
        code = re.sub(r"\$\(\([^()]*\)\)", "0", code)  # arithmetic as a plain word
        for command in re.split(r";|\|\||&&", code):
            words = list(itertools.dropwhile(lambda w: re.fullmatch(r"\w+=\S*", w),
                                             command.split()))  # leading assignments
            assert not words or words[0].split("(", 1)[0] in BUILTINS, \
                f"{line!r} may start a process first"


def test_the_boot_report_prints_what_the_host_reads() -> None:
    out = subprocess.run(["/bin/sh", str(BOOT_REPORT)], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    lines = out.splitlines()
    assert lines[0].startswith(report.TIMED + " ") and lines[-1].startswith(report.DONE + " ")
    fields = report.fields(out)
    assert fields is not None
    uptime, busy, idle = (float(fields[k]) for k in ("uptime", "cpu_busy", "cpu_idle"))
    assert uptime > 0 and busy > 0 and idle >= 0
    assert {"supervisor", "supervisor_start", "supervisor_ready", "multi_user",
            "addresses"} <= fields.keys()


def test_a_report_line_still_being_written_is_not_read() -> None:
    timed = f"{report.TIMED} uptime=9.5 cpu_busy=3.0 cpu_idle=1.0\n"
    done = f"{report.DONE} supervisor=active supervisor_start=2.1 supervisor_ready=8.0\n"
    assert report.fields(timed + done[:30]) is None  # the done line cut mid-way
    assert report.fields(timed + done) == {
        "uptime": "9.5", "cpu_busy": "3.0", "cpu_idle": "1.0", "supervisor": "active",
        "supervisor_start": "2.1", "supervisor_ready": "8.0"}


def test_certificates_are_read_off_the_console_in_order_by_listener() -> None:
    first, second = (":".join([f"{b:02X}"] * 32) for b in (0xAB, 0x01))
    console = "\n".join([
        f"llmos: INFO llmos.app: api TLS certificate (self-signed), SHA-256 fingerprint {first}",
        f"llmos: INFO llmos.app: admin TLS certificate (self-signed), SHA-256 fingerprint {first}",
        "llmos: admin TLS certificate (credential), SHA-256 fingerprint AB:CD",  # cut short
        f"admin TLS certificate (credential), SHA-256 fingerprint {second}",
    ])
    assert report.certificates(console) == [("self-signed", first),
                                                  ("credential", second)]
    assert report.certificates("llmos-boot: done supervisor=active") == []
    assert report.certificates(console, "api") == [("self-signed", first)]
