#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and Core ML artefact into the app: ios_app/Model/.
#   ios_app/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
art="${1:?usage: add_model.sh ART_DIR}"
dest="$(cd "$(dirname "$0")/.." && pwd)/Model"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
file=$(python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
c = {a["precision"]: a["file"] for a in m["artefacts"] if a["format"] == "coreml"}
print(next((c[p] for p in ("fp16", "fp32", "int8") if p in c), ""))' "$art/manifest.json")
[ -n "$file" ] || { echo "add_model: no Core ML artefact in $art/manifest.json; export with --formats coreml" >&2; exit 2; }
mkdir -p "$dest"
find "$dest" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +   # the previous model; README.md is committed
cp "$art/manifest.json" "$dest/"
cp -R "$art/$file" "$dest/"
echo "add_model: $file and manifest.json -> $dest"
