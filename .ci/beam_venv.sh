#!/usr/bin/env bash
# A runtime-only virtual environment with Apache Beam for `anonymize-batch` and its test:
# the `runtime` and `beam` extras of setup.cfg, no TensorFlow (Beam upgrades packages TF
# pins). Usage: .ci/beam_venv.sh DIR  -> prints DIR/bin/python (reused if already built).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: .ci/beam_venv.sh DIR}
PY=${PYTHON:-python3}
REQS=$("$PY" - <<'PYEOF'
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
extras = cfg["options.extras_require"]
# the base install is the TensorFlow-free runtime; then the runtime and beam extras
texts = [cfg["options"]["install_requires"]] + [extras[name] for name in ("runtime", "beam")]
lines = [l.strip() for text in texts for l in text.splitlines()]
print("\n".join(l for l in lines if l and not l.startswith("#")))
PYEOF
)
STAMP="$DIR/.requirements"
if [ ! -x "$DIR/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$REQS" ]; then
    rm -rf "$DIR"
    "$PY" -m venv "$DIR"
    "$DIR/bin/python" -m pip install --quiet --upgrade pip >&2
    echo "$REQS" | "$DIR/bin/python" -m pip install --quiet -r /dev/stdin >&2
    echo "$REQS" > "$STAMP"
fi
echo "$DIR/bin/python"
