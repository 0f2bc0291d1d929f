#!/usr/bin/env bash
# Builds the LLM OS disk image: `make image` (profile default) / `make image-nvidia`.
#
#   image/build.sh [default|nvidia]
#
# Rebuilds only when an input changed: the hash of image/ (+ firmware/ for nvidia), the
# userland sources the wheel is built from, the wheel pins and the sealed packs is kept
# next to the image. mkosi's incremental cache keeps the package installation between
# builds, so a userland or pack change costs one postinst + disk assembly, not a bootstrap.
#
# Inputs: the packs named in image/packs.list from build/demo/ (override: LLMOS_PACKS=DIR,
# LLMOS_PACKS_LIST=FILE), the host venv (PY=...), the version (LLMOS_VERSION, default
# image/VERSION), the keys (build/keys: Secure Boot db, OS update key, fleet key).
# Output: build/image/llmos.raw (nvidia: build/image-nvidia/llmos.raw) + llmos.manifest,
# the signed UKI llmos.efi, and the root and verity partitions as files of their own
# (llmos.root-x86-64[-verity].UUID.raw: image/publish-update.sh makes an update of them).
set -euo pipefail

profile=${1:-default}
case "$profile" in
  default) out_rel=build/image; lock=image/wheels.lock ;;
  nvidia)  out_rel=build/image-nvidia; lock=image/wheels-nvidia.lock ;;
  *) echo "build.sh: unknown profile '$profile' (default, nvidia)" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
py=${PY:-$repo/.venv/bin/python}
packs_src=${LLMOS_PACKS:-build/demo}
packs_list=${LLMOS_PACKS_LIST:-image/packs.list}
# LLMOS_VERSION: the image's version (default image/VERSION; make update-image VERSION=N).
version=${LLMOS_VERSION:-$(cat image/VERSION)}
case "$version" in
  ''|*[!A-Za-z0-9.~^+-]*) echo "build.sh: bad version '$version'" >&2; exit 2 ;;
esac
# LLMOS_IMAGE_OUT: another output folder (the boot tests' "later build", see below).
out_rel=${LLMOS_IMAGE_OUT:-$out_rel}
out=$repo/$out_rel
stage=$repo/build/image-stage/$profile
wheel_cache=$repo/build/wheels/cp313
mkosi_cache=$repo/build/mkosi.cache

log() { echo "image[$profile]: $*" >&2; }

mapfile -t packs < <("$py" image/stage_packs.py --packs "$packs_src" --list "$packs_list" --print)
if [ ${#packs[@]} -eq 0 ]; then
  log "no packs selected from $packs_src/ by $packs_list"
  exit 1
fi

# --- 1. up to date? ------------------------------------------------------------------
input_files() {
  local other=nvidia
  [ "$profile" = nvidia ] && other=default
  # image/ minus the host-side tooling, the docs and the other profile's files.
  find image \( -type f -o -type l \) ! -path 'image/llmos_vm/*' ! -name '*.md' ! -path '*/__pycache__/*' \
    ! -name host-deps.sh ! -name lock-wheels.sh ! -path "image/mkosi.profiles/$other/*" \
    ! -name "*$other*"
  [ "$profile" = nvidia ] && find firmware -type f -name '*.conf'
  find userland -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*'
  echo pyproject.toml
  [ -f README.md ] && echo README.md
  echo "$packs_list"
  printf '%s\n' "${packs[@]}"
  echo "${LLMOS_KEYS:-build/keys}/secureboot/db.crt"
  echo "${LLMOS_KEYS:-build/keys}/update/pubring.gpg"
}
inputs_hash=$( { echo "profile=$profile version=$version golden=${LLMOS_GOLDEN_PACKS:-}"; input_files | LC_ALL=C sort | xargs -d '\n' sha256sum; } \
  | sha256sum | cut -d' ' -f1)
if [ -f "$out/llmos.raw" ] && [ "$(cat "$out/inputs.sha256" 2>/dev/null)" = "$inputs_hash" ]; then
  log "up to date ($out_rel/llmos.raw)"
  exit 0
fi

mkdir -p "$out" "$mkosi_cache" "$wheel_cache"
exec 9>"$repo/build/.image-$profile.lock"
flock 9

# --- 2. stage the inputs that do not live in image/ -----------------------------------
rm -rf "$stage"
mkdir -p "$stage/input/wheels" "$stage/root"
cp image/check_imports.py "$stage/input/"
"$py" image/wheel_pins.py check "$lock" --profile "$profile"

log "runtime wheels (pinned in $lock)"
. image/wheel-target.sh
"$py" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
  "${WHEEL_TARGET[@]}" -r "$lock" -d "$wheel_cache"
# Exactly the pinned files (the cache may hold other versions).
"$py" - "$lock" "$wheel_cache" "$stage/input/wheels" <<'PY'
import os, re, sys
from pathlib import Path
lock, cache, dest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
pins = {norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", Path(lock).read_text(), re.M)}
for whl in cache.glob("*.whl"):
    name, version = whl.name.split("-")[:2]
    if pins.get(norm(name)) == version:
        os.link(whl, dest / whl.name)
        del pins[norm(name)]
if pins:
    sys.exit(f"missing wheels for {sorted(pins)}")
PY

log "userland wheel (pip wheel --no-deps)"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r userland pyproject.toml "$src/"
[ -f README.md ] && cp README.md "$src/" || echo "LLM OS userland" > "$src/README.md"
find "$src" -name '__pycache__' -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
"$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
  -w "$stage/input/wheels" "$src"

log "sealed packs: ${packs[*]}"
hugepages=$("$py" image/stage_packs.py --packs "$packs_src" --list "$packs_list" \
  --root "$stage/root")
log "hugepages=$hugepages (2 MiB pages for the packs' plaintext + headroom)"

# The only key OS updates may be signed with (systemd-pull looks here before /usr/lib).
keys=${LLMOS_KEYS:-$repo/build/keys}
[ -s "$keys/update/pubring.gpg" ] || { log "no $keys/update/pubring.gpg: run 'make keys'"; exit 1; }
install -D -m 0644 "$keys/update/pubring.gpg" "$stage/root/etc/systemd/import-pubring.gpg"

log "golden requests of the health gate (/usr/lib/llmos/golden.json)"
llmos_cli=$(dirname "$py")/llmos
mkdir -p "$stage/root/usr/lib/llmos"
# LLMOS_GOLDEN_PACKS: the references from other (known-good) packs than the ones put in;
# the boot tests' version 3 carries corrupted packs, checked against the good ones.
mapfile -t golden_packs < <("$py" image/stage_packs.py --packs "${LLMOS_GOLDEN_PACKS:-$packs_src}" \
  --list "$packs_list" --print)
"$llmos_cli" golden --key "${LLMOS_FLEET_KEY:-$keys/fleet.key}" \
  --out "$stage/root/usr/lib/llmos/golden.json" "${golden_packs[@]}"

# Version N: os-release's IMAGE_VERSION (postinst), partition labels llmos_N, the UKI
# EFI/Linux/llmos_N.efi; SplitArtifacts: the root and verity partitions also as files of
# their own, the artifacts of `make update-image` (image/publish-update.sh).
cat > "$stage/mkosi.conf" <<EOF
# Generated by image/build.sh for this build only.
[Output]
Output=llmos
ImageVersion=$version
SplitArtifacts=yes

[Content]
KernelCommandLine=hugepages=$hugepages
BuildSources=$stage/input:input
ExtraTrees=$stage/root:/
UnifiedKernelImageFormat=llmos_$version
EOF
# Secure Boot: systemd-boot and the UKI signed with the project's db key (make keys:
# image/keys.sh); the UKI also carries the signature of its expected PCR 11 values
# (SignExpectedPcr: mkosi 24 signs them with the same key; the fleet key is sealed to it).
for f in secureboot/db.key secureboot/db.crt; do
  [ -s "$keys/$f" ] || { log "no $keys/$f: run 'make keys' (image/keys.sh)"; exit 1; }
done
if [ "$profile" = nvidia ]; then
  # The DKMS-built NVIDIA modules are signed in the postinst with this key (a build source:
  # mounted for the build, never copied into the image).
  [ -s "$keys/secureboot/modules.key" ] || { log "no $keys/secureboot/modules.key: make keys"; exit 1; }
  cp "$keys/secureboot/modules.key" "$keys/secureboot/modules.crt" "$stage/input/"
fi
cat >> "$stage/mkosi.conf" <<EOF
[Validation]
SecureBoot=yes
SecureBootKey=$keys/secureboot/db.key
SecureBootCertificate=$keys/secureboot/db.crt
SecureBootAutoEnroll=no
SignExpectedPcr=yes
EOF

# --- 3. mkosi -------------------------------------------------------------------------
log "mkosi build (first run bootstraps Debian: several minutes)"
start=$SECONDS
rm -f "$out/inputs.sha256" "$out"/llmos.root-*.raw  # split artifacts: their names change
mkosi --directory="$repo/image" --profile="$profile" --include="$stage/mkosi.conf" \
  --output-dir="$out" --cache-dir="$mkosi_cache/$profile" \
  --package-cache-dir="$mkosi_cache/packages" --force build
echo "$inputs_hash" > "$out/inputs.sha256"
log "built $out_rel/llmos.raw ($(du -h --apparent-size "$out/llmos.raw" | cut -f1)) in $((SECONDS - start)) s"
