"""`privacy-anon demo`: the whole idea on CPU in a few minutes, on synthetic identities.

1. pre-train D on synthetic identity faces (`train --stage classifier`);
2. train M against D (`train --stage adversarial`, Algorithm 1 without video);
3. train an independent classifier on originals only, with another seed: an attacker M
   never saw;
4. measure on held-out faces of the training identities and write `metrics.json` and
   `before_after.png` (rows of originals above what M makes of them).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from privacy_anon.io_utils import atomic_write_json


def run_demo(cfg, out: str | Path, verbose: int | str = 2) -> dict:
    """Runs the demo into `out`; returns the metrics it writes."""
    from privacy_anon.training import runs
    from privacy_anon.training.callbacks import modify_uint8, write_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if cfg.data.faces != "synthetic":
        print(f"demo: using face data {cfg.data.faces}", file=sys.stderr)

    _stage("1/3 pre-training D (the face classifier) on original faces")
    runs.train(cfg, "classifier", out / "classifier", verbose=verbose)
    _stage("2/3 training M (the face modifier) against D")
    adv = runs.train(cfg, "adversarial", out / "adversarial",
                     classifier_checkpoint=str(out / "classifier"), verbose=verbose)
    _stage("3/3 training an independent classifier (another seed) on original faces")
    other = copy.deepcopy(cfg)
    other.train.seed = cfg.train.seed + 1000
    runs.train(other, "classifier", out / "independent", verbose=verbose)

    faces = runs.prepare_faces(cfg)
    modifier = runs.load_keras_part(out / "adversarial", "modifier")
    independent = runs.load_keras_part(out / "independent", "classifier")
    held, align = faces.holdout, faces.holdout_align
    modified = modify_uint8(modifier, held.images)
    metrics = {
        "d_accuracy_original": adv["d_accuracy_original"],
        "d_accuracy_modified": adv["d_accuracy_modified"],
        "ssim_modified": adv["ssim_modified"],
        "independent_accuracy_original": runs.classifier_accuracy(
            independent, held.images, align, held.labels),
        "independent_accuracy_modified": runs.classifier_accuracy(
            independent, modified, align, held.labels),
        "chance": 1.0 / held.num_identities,
        "num_identities": held.num_identities,
        "heldout_faces": len(held),
        "preset": cfg.name,
        "minutes": round((time.time() - started) / 60, 2),
    }
    atomic_write_json(out / "metrics.json", metrics)
    pick = _one_per_identity(held.labels, 16)
    write_grid(out / "before_after.png", held.images[pick], modified[pick])
    for key in ("d_accuracy_original", "d_accuracy_modified", "ssim_modified",
                "independent_accuracy_original", "independent_accuracy_modified"):
        print(f"{key:32s} {metrics[key]:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'before_after.png'} "
          f"in {metrics['minutes']:.1f} min")
    return metrics


def _one_per_identity(labels, n):
    seen, pick = set(), []
    for i, label in enumerate(labels):
        if label not in seen:
            seen.add(label)
            pick.append(i)
    for i in range(len(labels)):  # fill up when there are fewer identities than slots
        if len(pick) >= n:
            break
        if i not in pick:
            pick.append(i)
    return sorted(pick[:n])


def _stage(text):
    print(f"\n== demo {text}", file=sys.stderr, flush=True)
