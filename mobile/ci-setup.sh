#!/usr/bin/env bash
# Installs what tests/test_mobile.py needs, from registries only (Debian apt, npm, Maven Central):
# the Android toolchain (mobile/android/build.sh tools), Chromium, and the web page's npm packages
# (LiteRT.js, playwright-core; Playwright's own browser download is not used).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null || ! command -v node >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium nodejs npm >/dev/null
fi
bash android/build.sh tools
(cd web && npm ci --no-audit --no-fund --silent)
echo "[mobile] toolchains ready"
