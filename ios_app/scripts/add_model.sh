#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and Core ML artefact into the app: ios_app/Model/.
#   ios_app/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
art="${1:?usage: add_model.sh ART_DIR}"
dest="$(cd "$(dirname "$0")/.." && pwd)/Model"
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
# The artefact the app chooses, checked against the sha256 manifest.json lists for it (the rule of
# catdog.contract.sha256_path: a file's bytes; a package's sorted relative paths and contents), so a
# copy cut short or changed since `catdog export` never reaches the app.
file=$(python3 - "$art" <<'PY'
import hashlib, json, pathlib, sys
art = pathlib.Path(sys.argv[1])
try:
    entries = {a["precision"]: a for a in json.loads((art / "manifest.json").read_text())["artefacts"] if a["format"] == "coreml"}
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.exit(f"add_model: {art / 'manifest.json'} is not a catdog manifest ({e}); run catdog export again")
chosen = next((entries[p] for p in ("fp16", "fp32", "int8") if p in entries), None)
if chosen is None:
    sys.exit(f"add_model: no Core ML artefact in {art / 'manifest.json'}; export with --formats coreml")
path = art / chosen["file"]
if not path.exists():
    sys.exit(f"add_model: {path} not found, though manifest.json lists it; run catdog export again")
h = hashlib.sha256()
for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
    if f != path:
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
    h.update(f.read_bytes())
if h.hexdigest() != chosen.get("sha256"):
    sys.exit(f"add_model: {path} does not match its sha256 in manifest.json (changed or cut short since export); run catdog export again")
print(chosen["file"])
PY
) || exit 2
mkdir -p "$dest"
stage=$(mktemp -d "$dest/../.Model.XXXXXX"); trap 'rm -rf "$stage"' EXIT   # copied whole before the old model goes
cp "$art/manifest.json" "$stage/"
cp -R "$art/$file" "$stage/"
find "$dest" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +   # the previous model; README.md is committed
mv "$stage/manifest.json" "$stage/$file" "$dest/"
echo "add_model: $file and manifest.json -> $dest"
