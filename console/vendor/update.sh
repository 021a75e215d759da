#!/usr/bin/env bash
# Refreshes the vendored Leaflet from its npm package: `console/vendor/update.sh [VERSION]`.
# Takes the built files the console loads (leaflet.js, leaflet.css, the marker images) and the
# licence, and records the version and the tarball's integrity in console/vendor/leaflet/VERSION.
# Needs npm (only to run this script; building and running ewall never does).
set -euo pipefail
version=${1:-1.9.4}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack "leaflet@$version" --json > pack.json
tarball=$(ls leaflet-*.tgz)
tar -xzf "$tarball"
target="$here/leaflet"
rm -rf "$target"
mkdir -p "$target/images"
cp package/dist/leaflet.js package/dist/leaflet.css "$target/"
cp package/dist/images/*.png "$target/images/"
cp package/LICENSE "$target/LICENSE"
integrity=$(grep -o '"integrity": *"[^"]*"' pack.json | head -1 | sed 's/.*: *"//; s/"$//')
printf 'leaflet %s\nintegrity %s\n' "$version" "$integrity" > "$target/VERSION"
echo "Leaflet $version vendored in $target"
