#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and TFLite artefact into the app's assets.
#   android_demo/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: add_model.sh ART_DIR (the folder catdog export wrote)" >&2; exit 2; }
art="$1"
dest="$(cd "$(dirname "$0")/.." && pwd)/app/src/main/assets"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
# The artefact the app chooses, checked against its sha256 in manifest.json (catdog.contract, which
# needs only Python's standard library), so a copy cut short or changed since export never ships.
file=$(PYTHONPATH="$(cd "$(dirname "$0")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import sys
from catdog.contract import CatdogError, app_artefact
try:
    print(app_artefact(sys.argv[1], "tflite").name)
except CatdogError as e:
    sys.exit(f"add_model: {e}")' "$art") || exit 2
mkdir -p "$(dirname "$dest")"
stage=$(mktemp -d "$(dirname "$dest")/.assets.XXXXXX"); trap 'rm -rf "$stage"' EXIT   # copied whole, then swapped in
cp "$art/manifest.json" "$art/$file" "$stage/"
chmod 755 "$stage"; rm -rf "$dest"; mv "$stage" "$dest"
echo "add_model: $file and manifest.json -> $dest"
