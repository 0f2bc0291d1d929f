#!/usr/bin/env bash
# The project's boot-chain keys (test keys, made once per checkout; a real fleet brings its own):
#
#   image/keys.sh DIR          (make keys: DIR = build/keys)
#
#   DIR/secureboot/PK.{key,crt}   platform key: owns the firmware's key database
#   DIR/secureboot/KEK.{key,crt}  key-exchange key: may update db/dbx
#   DIR/secureboot/db.{key,crt}   signs systemd-boot and the unified kernel image (UKI);
#                                 the only key the firmware's db trusts to boot
#                                 and (mkosi 24: SignExpectedPcr= uses the same key) its
#                                 expected PCR 11 values, the policy the fleet key is sealed
#                                 under (the UKI's .pcrpkey section carries the public half)
#   DIR/secureboot/modules.{key,crt}  signs the nvidia profile's DKMS-built kernel modules
#                                 (Debian's kernel trusts the firmware's db for modules: a
#                                 GPU server has it enrolled in db beside db.crt;
#                                 docs/security.md, "GPU profile")
#   DIR/update/gnupg/             OpenPGP key that signs OS updates (SHA256SUMS.gpg of
#                                 `make update-image`); DIR/update/pubring.gpg, its public
#                                 half, goes into the image (/etc/systemd/import-pubring.gpg),
#                                 the only key systemd-sysupdate accepts (docs/updates.md)
#   DIR/secureboot/OVMF_VARS.fd   OVMF variable store with PK/KEK/db enrolled (Secure Boot
#                                 on): the template every test/run VM copies
#   DIR/secureboot/OVMF_VARS.gpu.fd  the same with modules.crt in db too: a GPU server's
#                                 firmware (the nvidia image's boot test, tests/nvidia_image)
#
# Idempotent: existing keys are kept (rotating one means re-enrolling every machine).
set -euo pipefail

dir=${1:?usage: keys.sh DIR}
venv_bin=${VENV_BIN:-.venv/bin}
owner=6c6c6d6f-732d-4b65-7973-000000000001   # the EFI signature owner GUID we use
mkdir -p "$dir/secureboot"
chmod 0700 "$dir/secureboot"

cert() {  # name CN -> self-signed RSA 2048 X.509 (UEFI firmware implementations want RSA 2048)
  local out=$dir/secureboot/$1
  [ -s "$out.crt" ] && return 0
  openssl req -quiet -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=$2/" -keyout "$out.key" -out "$out.crt" 2>/dev/null
  chmod 0600 "$out.key"
  echo "keys: made $out.crt ($2)"
}
cert PK  "LLM OS test platform key"
cert KEK "LLM OS test key exchange key"
cert db  "LLM OS test image signing key"
cert modules "LLM OS test kernel module signing key"

vars=$dir/secureboot/OVMF_VARS.fd
if [ ! -s "$vars" ] || [ "$vars" -ot "$dir/secureboot/db.crt" ]; then
  "$venv_bin/virt-fw-vars" --input /usr/share/OVMF/OVMF_VARS_4M.fd --output "$vars.new" \
    --set-pk "$owner" "$dir/secureboot/PK.crt" --add-kek "$owner" "$dir/secureboot/KEK.crt" \
    --add-db "$owner" "$dir/secureboot/db.crt" --secure-boot --no-microsoft >/dev/null
  mv "$vars.new" "$vars"
  echo "keys: made $vars (PK, KEK, db enrolled; Secure Boot on)"
fi
gpu_vars=$dir/secureboot/OVMF_VARS.gpu.fd
if [ ! -s "$gpu_vars" ] || [ "$gpu_vars" -ot "$vars" ] \
    || [ "$gpu_vars" -ot "$dir/secureboot/modules.crt" ]; then
  "$venv_bin/virt-fw-vars" --input "$vars" --output "$gpu_vars.new" \
    --add-db "$owner" "$dir/secureboot/modules.crt" >/dev/null
  mv "$gpu_vars.new" "$gpu_vars"
  echo "keys: made $gpu_vars (db also holds the kernel module signing key)"
fi

# OS update signing key (OpenPGP: what systemd-sysupdate/systemd-pull verify SHA256SUMS with).
gnupg=$dir/update/gnupg
if [ ! -s "$dir/update/pubring.gpg" ]; then
  mkdir -p "$gnupg"
  chmod 0700 "$dir/update" "$gnupg"
  gpg --homedir "$gnupg" --batch --quiet --passphrase '' --pinentry-mode loopback \
    --quick-generate-key "LLM OS test update signing key" ed25519 sign never
  gpg --homedir "$gnupg" --batch --export > "$dir/update/pubring.gpg.new"
  mv "$dir/update/pubring.gpg.new" "$dir/update/pubring.gpg"
  gpgconf --homedir "$gnupg" --kill gpg-agent 2>/dev/null || true
  echo "keys: made $dir/update/pubring.gpg (OS update signing key)"
fi
