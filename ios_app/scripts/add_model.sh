#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and Core ML artefact into the app: ios_app/Model/.
#   ios_app/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
usage="usage: add_model.sh ART_DIR (the folder catdog export wrote)"
case "${1:-}" in -h|--help) echo "$usage"; exit 0 ;; esac
[ $# -eq 1 ] || { echo "$usage" >&2; exit 2; }
art="$1"
here="$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")"   # the script's own folder, called through a link too
dest="$(cd "$here/.." && pwd)/Model"
if [ ! -f "$art/manifest.json" ] && [ -f "$art/artefacts/manifest.json" ]; then
  echo "add_model: $art is a RUN_DIR; pass its ART_DIR, $art/artefacts" >&2; exit 2
fi
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
# The artefact the app chooses, checked against its sha256 in manifest.json (catdog.contract, which
# needs only Python's standard library), so a copy cut short or changed since export never ships.
file=$(PYTHONPATH="$(cd "$here/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import sys
from catdog.contract import CatdogError, app_artefact
try:
    print(app_artefact(sys.argv[1], "coreml").name)
except CatdogError as e:
    sys.exit(f"add_model: {e}")' "$art") || exit 2
mkdir -p "$dest"
stage=$(mktemp -d "$dest/../.Model.XXXXXX"); trap 'rm -rf "$stage"' EXIT   # copied whole before the old model goes
cp "$art/manifest.json" "$stage/"
cp -R "$art/$file" "$stage/"
find "$dest" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +   # the previous model; README.md is committed
mv "$stage/manifest.json" "$stage/$file" "$dest/"
echo "add_model: $file and manifest.json -> $dest"
