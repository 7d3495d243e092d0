#!/usr/bin/env bash
# Build and test ios_app/CatDogCore (Foundation only) with `swift test` against tests/golden/apps.json.
# Runs on Linux and macOS; the build cache is CatDogCore/.build (git-ignored), so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/../.."                      # repository root
if ! command -v swift >/dev/null; then
    echo "core_test: swift not found; the CatDogCore tests were NOT run (install a Swift 6 toolchain)" >&2
    exit 0
fi
# Swift's module cache records absolute paths: after the repository moved (or was copied with its
# cache) every compile failed with "was compiled with module cache path …". Build afresh then.
build=ios_app/CatDogCore/.build
if [ -d "$build" ] && [ "$(cat "$build/.catdog-path" 2>/dev/null)" != "$PWD" ]; then
    echo "core_test: $build was made in another folder; building afresh"
    rm -rf "$build"
fi
mkdir -p "$build" && echo "$PWD" > "$build/.catdog-path"
CATDOG_GOLDEN="$PWD/tests/golden/apps.json" swift test --package-path ios_app/CatDogCore --disable-swift-testing 2>&1 \
    | grep -vE "^Test Case '.*' (started|passed)"
