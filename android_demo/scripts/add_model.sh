#!/usr/bin/env bash
# Copy a catdog ART_DIR's manifest and TFLite artefact into the app's assets.
#   android_demo/scripts/add_model.sh runs/mobilenet+mobilenet_v2_288/artefacts
set -euo pipefail
usage="usage: add_model.sh ART_DIR (the folder catdog export wrote)"
case "${1:-}" in -h|--help) echo "$usage"; exit 0 ;; esac
[ $# -eq 1 ] || { echo "$usage" >&2; exit 2; }
art="$1"
here="$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")"   # the script's own folder, called through a link too
dest="$(cd "$here/.." && pwd)/app/src/main/assets"
if [ ! -f "$art/manifest.json" ] && [ -f "$art/artefacts/manifest.json" ]; then
  echo "add_model: $art is a RUN_DIR; pass its ART_DIR, $art/artefacts" >&2; exit 2
fi
[ -f "$art/manifest.json" ] || { echo "add_model: $art/manifest.json not found; run catdog export first" >&2; exit 2; }
fail() { echo "add_model: $*" >&2; exit 2; }
# The artefact the app chooses, checked against its sha256 in manifest.json (catdog.contract, which
# needs only Python's standard library), so a copy cut short or changed since export never ships;
# and the manifest one the app takes (its Manifest.problem()), or the app would lose a working model.
file=$(PYTHONPATH="$(cd "$here/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}" python3 -c 'import sys
from catdog.contract import CatdogError, app_artefact
try:
    print(app_artefact(sys.argv[1], "tflite").name)
except CatdogError as e:
    sys.exit(f"add_model: {e}")' "$art") || exit 2
# The new assets folder is built whole in a stage beside it, then swapped in: the old one goes only
# once the new one is complete. u+w: cp keeps a read-only ART_DIR's modes.
parent="$(dirname "$dest")"
mkdir -p "$parent" 2>/dev/null || fail "cannot make $parent; make it writable and run again"
stage=$(mktemp -d "$parent/.assets.XXXXXX" 2>/dev/null) || fail "cannot write in $parent; make it writable and run again"
trap 'chmod -R u+w "$stage" 2>/dev/null; rm -rf "$stage"' EXIT
new="$stage/assets"
err=$( { mkdir "$new" && cp "$art/manifest.json" "$art/$file" "$new/" && chmod -R u+w "$new"; } 2>&1 ) \
  || fail "could not copy $art/$file (${err%%$'\n'*}); the app's model is unchanged: free some space or fix permissions and run again"
if [ -e "$dest" ]; then
  chmod u+w "$dest" 2>/dev/null || true   # moving a folder rewrites its "..": a read-only one could not move
  mv "$dest" "$stage/old" 2>/dev/null || fail "cannot move $dest aside; the app's model is unchanged: make $parent writable and run again"
fi
mv "$new" "$dest" 2>/dev/null || { mv "$stage/old" "$dest" 2>/dev/null; fail "cannot move the new model into $dest; the app's model is unchanged: make $parent writable and run again"; }
echo "add_model: $file and manifest.json -> $dest"
