#!/usr/bin/env bash
# Installs the Debian packages the host needs to build, boot and test LLM OS.
# Idempotent: a stamp records the package list that was last installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "host-deps: run as root (it uses apt-get)" >&2
  exit 1
fi

stamp_dir=${LLMOS_STAMP_DIR:-/var/lib/llmos-host}
backports=/etc/apt/sources.list.d/llmos-bookworm-backports.list

# From bookworm-backports: mkosi 24 (bookworm's 14 is too old) and the
# systemd/QEMU/swtpm versions that go with it. qemu-user runs the boot tests' reference
# embeddings on the CPU model an emulated guest has (tests/boot/reference.py).
BACKPORTS=(
  mkosi systemd systemd-boot systemd-container udev
  qemu-system-x86 qemu-user qemu-utils ovmf swtpm swtpm-tools
)
MAIN=(
  bubblewrap kmod cpio zstd python3-pefile dosfstools mtools e2fsprogs fdisk squashfs-tools erofs-utils
  debian-archive-keyring dpkg-dev ca-certificates openssl sbsigntool gpg
  tpm2-tools libtss2-tcti-swtpm0 libtss2-rc0
  python3 python3-venv python3-dev python3-gi gir1.2-umockdev-1.0 umockdev
  chromium chromium-driver fortunes-min wrk make git
  haproxy iproute2
)

want="$(printf '%s\n' "${BACKPORTS[@]}" "${MAIN[@]}" | sort | tr '\n' ' ')"
if [ -f "$stamp_dir/apt" ] && [ "$(cat "$stamp_dir/apt")" = "$want" ]; then
  missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${BACKPORTS[@]}" "${MAIN[@]}" 2>/dev/null | grep -vc '^ii ' || true)
  if [ "$missing" = 0 ]; then
    exit 0
  fi
fi

. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
  echo "host-deps: expected Debian 12 (bookworm), found ${PRETTY_NAME:-unknown}; continuing" >&2
fi
if [ ! -f "$backports" ]; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$backports"
fi

export DEBIAN_FRONTEND=noninteractive
echo "host-deps: installing Debian packages (first run takes a few minutes)"
apt-get update -q
apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS[@]}"
apt-get install -y -q --no-install-recommends "${MAIN[@]}"

mkdir -p "$stamp_dir"
printf '%s' "$want" > "$stamp_dir/apt"
echo "host-deps: done"
