#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and Core ML artefact into the app: ios_app/Model/.
#   ios_app/scripts/add_model.sh runs/mobilenet_v2_288/artefacts
set -euo pipefail
art="${1:?usage: add_model.sh ART_DIR}"
dest="$(cd "$(dirname "$0")/.." && pwd)/Model"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
file=$(python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
c = [a for a in m["artefacts"] if a["format"] == "coreml"]
c = [a for a in c if a["precision"] == "fp16"] or c
print(c[0]["file"] if c else "")' "$art/manifest.json")
[ -n "$file" ] || { echo "add_model: no Core ML artefact in $art/manifest.json; export with --formats coreml" >&2; exit 2; }
rm -rf "$dest"; mkdir -p "$dest"
cp "$art/manifest.json" "$dest/"
cp -R "$art/$file" "$dest/"
echo "add_model: $file and manifest.json -> $dest"
