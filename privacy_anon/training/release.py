"""What an adversarial run on photos hands over: the int8 bundle, and how well it hides people
it never saw.

After M is trained on wild photos (`privacy-anon train --preset mobile --stage adversarial
--data DIR --out RUN`), the run exports `RUN/bundle` (int8 but for the instance norms'
variance, `export --float-variance`; calibrated on training faces) and
measures the yardstick (evaluation/yardstick.py) on the identities held out whole
(`RUN/heldout_identities.txt`): the baselines, the Keras M and the bundle through the
TensorFlow-free runtime, side by side, in `RUN/yardstick/`. The figures go into metrics.json.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from privacy_anon.errors import ExportRefused

YARDSTICK_METHODS = ("none", "blur8", "mask")  # the references drawn beside M on the plane
YARDSTICK_PHOTOS = 300  # held-out photos measured; ~1 s each for all methods on 2 cores
CALIBRATION_FACES = 200


def release(cfg, out: Path, modifier, faces) -> dict:
    """Exports the bundle and runs the yardstick; returns the figures for metrics.json."""
    from privacy_anon.export import export_bundle

    out = Path(out)
    index = np.linspace(0, len(faces.train) - 1, min(CALIBRATION_FACES, len(faces.train))).astype(int)
    print(f"exporting the int8 bundle to {out / 'bundle'}", file=sys.stderr)
    try:
        # the norms' variance in float: 1.2 -> 1.3 ms a face, and a trained M's int8 model
        # 2-6 dB closer to it (RESULTS.md, "Twenty-seventh pass")
        report = export_bundle(modifier, out / "bundle", quantize="int8",
                               representative=faces.train.images[index],
                               enlarge=cfg.face_detection.enlarge, verbose=False,
                               float_variance=True)
    except ExportRefused as exc:
        # fail closed, but say what `train` can do: M itself is kept in the run
        raise ExportRefused(f"{out}: no bundle exported: {exc.reason}; M is kept in "
                            f"{out / 'modifier.keras'}: train it longer, or export it anyway with "
                            f"`privacy-anon export {out} --representative FACES --out BUNDLE "
                            "--min-change 0`", exc.reason) from None
    result = {"bundle": {"path": str(report.path), "psnr_vs_keras": round(report.psnr, 2),
                         "mean_error_vs_keras": round(report.mean_error, 3),
                         "ssim_vs_keras": round(report.ssim, 4),
                         "modifier_bytes": report.modifier_bytes}}
    held = out / "heldout_identities.txt"
    if faces.strangers is None or faces.strangers.num_identities < 2 or not held.is_file():
        result["yardstick"] = {"skipped": "fewer than 2 identities held out whole "
                                          "(data.holdout_identities): no pairs to re-identify"}
        return result
    if importlib.util.find_spec("dlib") is None:  # the attacker comes with the eval extra
        result["yardstick"] = {"skipped": "dlib is not installed: pip install 'privacy-anon[eval]'"}
        print("yardstick skipped: dlib is not installed (eval extra)", file=sys.stderr)
        return result
    from privacy_anon.evaluation.models import KerasModifier
    from privacy_anon.evaluation.yardstick import run_yardstick
    from privacy_anon.training.runs import face_cache

    cache = face_cache(cfg, out / "faces")  # already there when the run found the faces
    methods = list(YARDSTICK_METHODS) + [KerasModifier(modifier, name="learned"), str(report.path)]
    print(f"measuring on the held-out identities ({held}) in {out / 'yardstick'}", file=sys.stderr)
    # faceres's folder, when the run names one, makes it a second attacker (seen in training
    # when train.recognizer includes it: the report says so)
    faceres = cfg.train.recognizer_weights or None
    seen = bool(faceres) and faceres_in_training(cfg)
    result["yardstick"] = run_yardstick(
        cfg.data.faces, cache, held, methods, out / "yardstick", max_photos=YARDSTICK_PHOTOS,
        workers=2, seed=cfg.data.seed, progress=sys.stderr.isatty(), faceres=faceres,
        run={"faceres_in_training": seen} if faceres else None)
    return result


def faceres_in_training(cfg) -> bool:
    """Whether M's recognizer term included faceres (then it is no unseen attacker)."""
    from privacy_anon.models.recognizer import recognizer_names

    return cfg.train.lambda_recognizer > 0 and "faceres" in recognizer_names(cfg.train.recognizer)
