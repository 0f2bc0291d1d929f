"""Host-side tooling to boot the LLM OS image in QEMU: OVMF firmware with a per-VM
variable store, a per-VM software TPM (swtpm), KVM-or-TCG selection, systemd credentials
over SMBIOS, a QMP client for clean ACPI shutdowns, and the ``make run`` launcher.

Used by ``make run`` (``python -m llmos_vm.run``), the boot tests (tests/boot/) and the
boot-time benchmark (bench/boot_time.py). Nothing here runs inside the image.
"""
