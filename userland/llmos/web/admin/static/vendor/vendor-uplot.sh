#!/usr/bin/env bash
# Vendor uPlot (the admin page's chart library) from the npm registry into this folder.
#
# Run by hand when the pinned version changes, then commit the result: the package
# (and the image) carry these files, so nothing is fetched at build or run time.
# Needs npm; checks the tarball against the registry's published integrity (sha512).
set -euo pipefail

VERSION="1.6.32"
INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@${VERSION}" >/dev/null)
tarball="$work/uplot-${VERSION}.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$INTEGRITY" ]]; then
    echo "vendor-uplot: integrity mismatch for uplot@${VERSION}: $actual" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work"
install -m 0644 "$work/package/dist/uPlot.iife.min.js" "$here/uPlot.iife.min.js"
install -m 0644 "$work/package/dist/uPlot.min.css" "$here/uPlot.min.css"
install -m 0644 "$work/package/LICENSE" "$here/uPlot.LICENSE"
echo "uplot@${VERSION}" > "$here/uPlot.VERSION"
echo "vendor-uplot: uplot@${VERSION} copied into $here"
