#!/usr/bin/env bash
# The update artifacts of one built version, as systemd-sysupdate on the appliance expects
# them (image/mkosi.extra/usr/lib/llmos/sysupdate.d/*.transfer.in), signed for the fleet:
#
#   image/publish-update.sh BUILD_DIR OUT_DIR GNUPG_HOME VERSION   (make update-image)
#
# BUILD_DIR is an image build of VERSION (image/build.sh with SplitArtifacts). OUT_DIR gets
#   llmos_V_UUID.root.raw.gz         the verified root file system (gzip: systemd-pull
#                                    unpacks it while writing the partition)
#   llmos_V_UUID.root-verity.raw.gz  its dm-verity hash partition
#                                    (UUID: the partition UUID derived from the root hash,
#                                    which the UKI's initrd looks the partitions up by)
#   llmos_V.efi                      the Secure Boot signed UKI (kernel, initrd, command line
#                                    with roothash=, signed expected PCR 11 values)
#   llmos_V.manifest.json            what is in it (packages, version; mkosi's manifest)
#   SHA256SUMS, SHA256SUMS.gpg       hashes of all of the above, signed with the update key
# Serve OUT_DIR's files from any HTTP server; docs/updates.md.
set -euo pipefail

build=${1:?usage: publish-update.sh BUILD_DIR OUT_DIR GNUPG_HOME VERSION}
out=${2:?}
gnupg=${3:?}
version=${4:?}
log() { echo "update[$version]: $*" >&2; }

shopt -s nullglob
roots=("$build"/llmos.root-x86-64.*.raw)
verities=("$build"/llmos.root-x86-64-verity.*.raw)
if [ ${#roots[@]} -ne 1 ] || [ ${#verities[@]} -ne 1 ] || [ ! -s "$build/llmos.efi" ]; then
  log "expected one root, one verity split artifact and llmos.efi in $build (image/build.sh)"
  exit 1
fi
if [ -s "$out/SHA256SUMS.gpg" ] && [ "$out/SHA256SUMS.gpg" -nt "$build/llmos.efi" ]; then
  log "up to date ($out)"
  exit 0
fi
uuid_of() { local name=${1%.raw}; echo "${name##*.}"; }
root_uuid=$(uuid_of "${roots[0]}")
verity_uuid=$(uuid_of "${verities[0]}")

tmp="$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
log "compressing the root file system and its hash partition"
gzip -1 -c "${roots[0]}" > "$tmp/llmos_${version}_${root_uuid}.root.raw.gz"
gzip -1 -c "${verities[0]}" > "$tmp/llmos_${version}_${verity_uuid}.root-verity.raw.gz"
cp "$build/llmos.efi" "$tmp/llmos_${version}.efi"
cp "$build/llmos.manifest" "$tmp/llmos_${version}.manifest.json"
(cd "$tmp" && sha256sum -- llmos_* > SHA256SUMS)
gpg --homedir "$gnupg" --batch --yes --quiet --detach-sign --output "$tmp/SHA256SUMS.gpg" "$tmp/SHA256SUMS"
gpgconf --homedir "$gnupg" --kill gpg-agent 2>/dev/null || true
rm -rf "$out"
mv "$tmp" "$out"
log "signed artifacts in $out: $(du -sh "$out" | cut -f1)"
