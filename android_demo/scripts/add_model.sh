#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and TFLite artefact into the app's assets.
#   android_demo/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
art="${1:?usage: add_model.sh ART_DIR}"
dest="$(cd "$(dirname "$0")/.." && pwd)/app/src/main/assets"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
file=$(python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
t = {a["precision"]: a["file"] for a in m["artefacts"] if a["format"] == "tflite"}
print(next((t[p] for p in ("fp32", "fp16", "int8") if p in t), ""))' "$art/manifest.json")
[ -n "$file" ] || { echo "add_model: no TFLite artefact in $art/manifest.json; export with --formats tflite" >&2; exit 2; }
rm -rf "$dest"; mkdir -p "$dest"
cp "$art/manifest.json" "$art/$file" "$dest/"
echo "add_model: $file and manifest.json -> $dest"
