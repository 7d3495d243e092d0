#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and Core ML artefact into the app: ios_app/Model/.
#   ios_app/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: add_model.sh ART_DIR (the folder catdog export wrote)" >&2; exit 2; }
art="$1"
dest="$(cd "$(dirname "$0")/.." && pwd)/Model"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
# The artefact the app chooses, checked against its sha256 in manifest.json (catdog.contract, which
# needs only Python's standard library), so a copy cut short or changed since export never ships.
file=$(PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import sys
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
