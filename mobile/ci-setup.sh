#!/usr/bin/env bash
# Installs what tests/test_mobile.py needs, from registries only (Debian apt, npm, Maven Central):
# the Android toolchain (mobile/android/build.sh tools), Chromium, and the web page's npm packages
# (LiteRT.js, playwright-core; Playwright's own browser download is not used).
set -euo pipefail
cd "$(dirname "$0")"
# only what is missing: the machine's own Node.js must not be replaced by Debian's
wanted=()
command -v chromium >/dev/null || wanted+=(chromium)
command -v node >/dev/null || wanted+=(nodejs npm)
if [ ${#wanted[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${wanted[@]}" >/dev/null
fi
bash android/build.sh tools
(cd web && npm ci --no-audit --no-fund --silent)
echo "[mobile] toolchains ready"
