"""`privacy-anon demo`: the whole idea on CPU in a few minutes, on synthetic identities.

1. pre-train D on synthetic identity faces (`train --stage classifier`);
2. train M against D (`train --stage adversarial`, Algorithm 1 without video);
3. train an independent classifier on originals only, with another seed: an attacker M
   never saw;
4. measure on held-out faces of the training identities and write `metrics.json` and
   `before_after.png` (rows of originals above what M makes of them);
5. export M to an int8 TFLite bundle (`DIR/bundle`) and anonymize a short clip made from
   `skimage.data.astronaut()` with the TensorFlow-free runtime: `DIR/astronaut.mp4`,
   `DIR/astronaut_anonymized.mp4` and `DIR/astronaut_side_by_side.png`.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from privacy_anon.errors import InputError
from privacy_anon.io_utils import atomic_write_json


def check_demo_config(cfg, source: str = "config") -> None:
    """The demo is M against the D it pre-trains: refused before any training when the
    config leaves D out (`train.train_classifier` false), not after D's pre-training."""
    if not cfg.train.train_classifier:
        raise InputError(f"{source}: train.train_classifier is false, but the demo trains M "
                         "against the D it pre-trains: set it true, or use `train`")


def run_demo(cfg, out: str | Path, verbose: int | str = 2) -> dict:
    """Runs the demo into `out`; returns the metrics it writes."""
    from privacy_anon.training import runs
    from privacy_anon.models.modifier import modify_uint8
    from privacy_anon.training.callbacks import write_grid

    check_demo_config(cfg)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if cfg.data.faces != "synthetic":
        print(f"demo: using face data {cfg.data.faces}", file=sys.stderr)

    _stage("1/4 pre-training D (the face classifier) on original faces")
    runs.train(cfg, "classifier", out / "classifier", verbose=verbose)
    _stage("2/4 training M (the face modifier) against D")
    adv = runs.train(cfg, "adversarial", out / "adversarial",
                     classifier_checkpoint=str(out / "classifier"), verbose=verbose)
    _stage("3/4 training an independent classifier (another seed) on original faces")
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
    pick = _one_per_identity(held.labels, 16)
    write_grid(out / "before_after.png", held.images[pick], modified[pick])
    _stage("4/4 int8 export and anonymizing a clip with the TFLite runtime")
    metrics.update(_export_and_anonymize(out, held.images))
    metrics["minutes"] = round((time.time() - started) / 60, 2)
    atomic_write_json(out / "metrics.json", metrics)
    for key in ("d_accuracy_original", "d_accuracy_modified", "ssim_modified",
                "independent_accuracy_original", "independent_accuracy_modified"):
        print(f"{key:32s} {metrics[key]:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'before_after.png'} "
          f"in {metrics['minutes']:.1f} min")
    return metrics


def _export_and_anonymize(out: Path, faces) -> dict:
    """int8 bundle of the demo's M, then a panned astronaut clip through the runtime."""
    import cv2
    import numpy as np
    from skimage import data

    from privacy_anon.export import export_bundle
    from privacy_anon.runtime import Anonymizer

    # The synthetic faces calibrate int8 (the demo has no real photos); the gate is lowered
    # because the demo's M is small and briefly trained.
    report = export_bundle(out / "adversarial", out / "bundle", quantize="int8",
                           representative=faces, min_psnr=20.0, verbose=False)
    clip = out / "astronaut.mp4"
    _astronaut_clip(data.astronaut(), clip)
    anonymized = out / "astronaut_anonymized.mp4"
    summary = Anonymizer(out / "bundle").anonymize_video(clip, anonymized, progress=False)
    before, after = _middle_frame(clip), _middle_frame(anonymized)
    side = np.concatenate([before, after], 1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(side, cv2.COLOR_RGB2BGR))
    if ok:
        from privacy_anon.io_utils import atomic_write_bytes

        atomic_write_bytes(out / "astronaut_side_by_side.png", png.tobytes())
    return {"int8_psnr_db": float(report.psnr), "int8_ssim": float(report.ssim),
            "int8_modifier_bytes": int(report.modifier_bytes),
            "clip_frames": summary["frames_in"], "clip_frames_with_face": summary["frames_with_faces"]}


def _astronaut_clip(image, path: Path, frames: int = 24, size=(320, 240)) -> None:
    """A short clip panning over the astronaut photo (her face stays in view)."""
    import cv2

    from privacy_anon.io_utils import atomic_path

    h, w = image.shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 12, size)
        for t in range(frames):
            x = int(40 + 60 * t / max(frames - 1, 1))
            crop = image[20:20 + 3 * w // 4 * 3 // 4, x:x + 3 * w // 4]
            frame = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


def _middle_frame(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    cap.set(cv2.CAP_PROP_POS_FRAMES, count // 2)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"{path}: cannot read a frame back")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


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
