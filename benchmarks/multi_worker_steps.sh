#!/usr/bin/env bash
# Steps/s of `train --multi-worker` with N workers on this machine (loopback ports):
# tiny preset, adversarial stage, global batch 8, 20 steps, checkpoint every 10.
# Usage: benchmarks/multi_worker_steps.sh N [WORKDIR]   (run from the repo root)
set -euo pipefail
N=${1:?usage: multi_worker_steps.sh N [WORKDIR]}
WORK=${2:-$(mktemp -d)}
export PYTHONPATH=${PYTHONPATH:-$PWD} TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$WORK"
cat > "$WORK/bench.yaml" <<'YAML'
data:
  num_identities: 4
  images_per_identity: 8
train:
  face_batch_size: 8
  checkpoint_every: 10
YAML
python - "$WORK" <<'PY'
import sys
from privacy_anon.config import load_config
from privacy_anon.models.face_classifier import build_classifier
build_classifier(load_config("tiny", f"{sys.argv[1]}/bench.yaml").classifier, 4).save(f"{sys.argv[1]}/d.keras")
PY
WORKERS=$(python -c "
import json, socket
socks = [socket.socket() for _ in range($N)]
for s in socks: s.bind(('127.0.0.1', 0))
print(json.dumps(['127.0.0.1:%d' % s.getsockname()[1] for s in socks]))")
pids=()
for i in $(seq 0 $((N - 1))); do
    mkdir -p "$WORK/tmp$i"
    TF_CONFIG="{\"cluster\": {\"worker\": $WORKERS}, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
    TMPDIR="$WORK/tmp$i" python -m privacy_anon.cli train --preset tiny --config "$WORK/bench.yaml" \
        --stage adversarial --multi-worker --classifier-checkpoint "$WORK/d.keras" --steps 20 \
        --out "$WORK/run$N" > "$WORK/worker$i.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
python - "$WORK/run$N/history.jsonl" "$N" <<'PY'
import json, sys
seconds = {r["step"]: r["seconds"] for r in map(json.loads, open(sys.argv[1]))}
print(f"{sys.argv[2]} worker(s): {10 / (seconds[20] - seconds[10]):.2f} steps/s over steps 10-20 "
      f"(incl. one checkpoint), {9 / (seconds[10] - seconds[1]):.2f} over steps 1-10")
PY
