"""How far M's own loss can go: each photo's edit optimized alone, then the yardstick; by hand.

M is one network for every face, trained on other people's photos; its loss (the
recognizer hinge, the face and landmark terms, the image terms of a run's config) is what
it minimizes on average. Here that same loss is minimized for each held-out face on its
own: a free one-channel light edit per photo (what `output_mode: luma` may paint), Adam for
--steps steps from no edit, through the same frozen recognizers, detectors and jittered
views as training (`PrivacyGAN._m_step`). The realism critic and the warm-up are left out.

The yardstick (`privacy-anon evaluate`'s: dlib as the attacker at the original face location,
MTCNN for "still a face", SSIM in the box) then says what the loss buys against a recognizer
it never saw when nothing limits the edit but the loss itself:

- if the per-photo edits re-identify about as often as the run's M does, M already finds
  what its loss asks for and a bigger or longer-trained M will not get closer to chance;
  the loss (what the training recognizers read) is the limit;
- if they re-identify far less at the same faces and SSIM, M is the limit.

Each face is cut as the yardstick cuts it (the cached box x1.6) and resized to M's input, as
M sees it; the run's landmarks CSV gives its alignment. `--grid N` lets the edit paint only
an N x N field up-sampled to M's size (coarse patterns), `--jpeg Q` also measures every
method with its photos stored as JPEG at quality Q, `--modifier RUN` measures that M beside
(with `--from-modifier` each photo's steps start from M's edit instead of none).
Photos are only read; the report goes to --out. About 3 s a step for 32 faces on 2 cores
(20 steps: ~11 min per 300 photos).

Example:
    python benchmarks/bench_edit_ceiling.py --run RUN --faces ../shared/data/celeba-mini \
        --recognizer-weights HM --steps 20 --lr 0.02 --jpeg 75 --modifier RUN --out OUT
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def digest(crop: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crop).tobytes()).hexdigest()


def crop_landmarks(faces_root, photos, marks, size: int, enlarge: float) -> dict:
    """{digest of the crop the yardstick will cut: its 5 landmarks in M's size x size view}."""
    from privacy_anon.baselines import face_regions
    from privacy_anon.evaluation.verification import load_rgb

    out = {}
    for p in photos:
        if p.key not in marks:
            continue  # no landmarks: the edit is refused for it (KeyError below)
        image = load_rgb(Path(faces_root) / p.key)
        (x1, y1, x2, y2), = face_regions(np.asarray([p.box]), image.shape[1], image.shape[0],
                                         enlarge)
        scale = np.array([size / (x2 - x1), size / (y2 - y1)], np.float32)
        out[digest(image[y1:y2, x1:x2])] = (marks[p.key] - [x1, y1]) * scale
    return out


class PerPhotoEdit:
    """A modifier (`.name`, `.modify_crops`) that optimizes each crop's own edit."""

    def __init__(self, gan, edit, marks: dict, steps: int, name: str, start=None):
        import tensorflow as tf

        from privacy_anon.faces import geometry

        self.gan, self.edit, self.delta, self.marks = gan, edit, edit.delta, marks
        self.steps, self.name = steps, name  # Adam's rate is the config's lr_modifier
        self.cache_key = name
        self.size = gan.modifier.input_size
        self.batch = int(self.delta.shape[0])
        self.geometry = geometry
        self.step = tf.function(lambda f, a: gan._m_step(f, tf.zeros([self.batch], tf.int32), a))
        self.log = []
        self.done = {}  # crop digest -> edited crop: a second pass (--jpeg) reuses the edits
        self.start = start  # a FaceModifier whose edit the steps start from (None: no edit)

    def _resize_in(self, c):
        interp = cv2.INTER_AREA if max(c.shape[:2]) > self.size else cv2.INTER_LINEAR
        return cv2.resize(c, (self.size, self.size), interpolation=interp)

    def modify_crops(self, crops):
        keys = [digest(c) for c in crops]
        todo = [c for c, k in zip(crops, keys) if k not in self.done]
        for c, new in zip(todo, self._optimize(todo)):
            self.done[digest(c)] = new
        return [self.done[k] for k in keys]

    def _optimize(self, crops):
        import tensorflow as tf

        d = self.gan.classifier
        out = []
        for start in range(0, len(crops), self.batch):
            chunk = crops[start:start + self.batch]
            try:
                marks = np.stack([self.marks[digest(c)] for c in chunk])
            except KeyError:
                print("a photo the yardstick measures has no row in the run's "
                      "faces/landmarks.csv", file=sys.stderr)
                raise SystemExit(2) from None
            n = len(chunk)
            pad = self.batch - n  # a fixed batch: one traced step for every chunk
            x = np.stack([self._resize_in(c) for c in chunk]).astype(np.float32) / 127.5 - 1
            x = np.concatenate([x, x[:1].repeat(pad, 0)]) if pad else x
            marks = np.concatenate([marks, marks[:1].repeat(pad, 0)]) if pad else marks
            align = self.geometry.alignment_matrix(tf.constant(marks, tf.float32),
                                                   d.input_height, d.input_width)
            if self.start is None:
                self.delta.assign(tf.zeros_like(self.delta))
            else:  # M's edit, one channel as `luma` paints it
                first = np.asarray(self.start(x, training=False)) - x
                self.delta.assign(first.mean(-1, keepdims=True))
            for v in self.gan.m_optimizer.variables:  # Adam's moments and step, not its rate
                if "learning_rate" not in v.name:
                    v.assign(tf.zeros_like(v))
            t = time.perf_counter()
            for s in range(self.steps):
                if s == self.steps - 1:
                    for tracker in self.gan.trackers.values():
                        tracker.reset_state()
                self.step(tf.constant(x), align)
            losses = {k: round(float(v.result()), 4) for k, v in self.gan.trackers.items()
                      if k.startswith("loss_")}
            self.log.append({"faces": n, "seconds": round(time.perf_counter() - t, 1), **losses})
            print(json.dumps(self.log[-1]), file=sys.stderr, flush=True)
            y = np.clip(x + self.edit.field().numpy(), -1, 1)[:n]
            y = np.rint((y + 1) * 127.5).astype(np.uint8)
            out += [cv2.resize(img, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR)
                    for img, c in zip(y, chunk)]
        return out


def jpeg_method(method, quality: int):
    """`method` (a yardstick CropMethod) with its photos saved as JPEG at `quality` and read
    back: what an edit keeps once a photo or video is stored (fine patterns go first)."""
    from privacy_anon.evaluation.yardstick import CropMethod

    class Jpeg(CropMethod):
        def __init__(self):  # noqa: D107 (wraps, does not crop itself)
            self.method, self.quality = method, int(quality)
            self.name = f"{method.name}-jpeg{quality}"
            key = getattr(method, "cache_key", None)
            self.cache_key = f"{key}-jpeg{quality}" if key else None

        def modify(self, images, boxes):
            out, covered = self.method.modify(images, boxes)
            flag = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
            return [cv2.imdecode(cv2.imencode(".jpg", im[..., ::-1], flag)[1],
                                 cv2.IMREAD_COLOR)[..., ::-1].copy() for im in out], covered

    return Jpeg()


def build_gan(cfg, classifier_file: Path, batch: int, grid: int = 0):
    """PrivacyGAN as `train` builds it for `cfg`, with a free per-photo edit in M's place
    (`grid` > 0: a grid x grid edit up-sampled bilinearly, so only coarser patterns)."""
    import keras
    import tensorflow as tf

    from privacy_anon.models.recognizer import (FrozenFaceMesh, FrozenFaceScore,
                                                FrozenRecognizer, recognizer_names)
    from privacy_anon.training.privacy_gan import PrivacyGAN
    from privacy_anon.training.runs import load_keras_part

    t, size = cfg.train, cfg.modifier.input_size

    class Edit(keras.layers.Layer):
        """x plus a free light edit (one channel, added to R, G and B alike)."""

        input_size = size

        def __init__(self):
            super().__init__()
            side = grid or size
            self.delta = self.add_weight(shape=(batch, side, side, 1), initializer="zeros",
                                         name="delta")
            self.built = True

        def call(self, x, training=False):
            return x + self.field()

        def field(self):
            if not grid:
                return self.delta
            return tf.image.resize(self.delta, (size, size), method="bilinear")

    edit = Edit()
    classifier = load_keras_part(classifier_file, "classifier")
    recognizers = [FrozenRecognizer(n, zoom=t.recognizer_zoom, weights=t.recognizer_weights)
                   for n in recognizer_names(t.recognizer)] if t.lambda_recognizer > 0 else None
    face_score = FrozenFaceScore(t.recognizer_weights) if t.lambda_face > 0 else None
    mesh = (FrozenFaceMesh(t.recognizer_weights)
            if t.lambda_landmarks > 0 or t.lambda_face_flag > 0 else None)
    gan = PrivacyGAN(edit, classifier, None, stage="adversarial", lambda_l1=t.lambda_l1,
                     adv_weight=t.adv_weight, adv_loss=t.adv_loss,
                     lambda_identity=t.lambda_identity, lambda_color=t.lambda_color,
                     lambda_lowpass=t.lambda_lowpass, view_jitter=t.view_jitter,
                     recognizer=recognizers, lambda_recognizer=t.lambda_recognizer,
                     recognizer_margin=t.recognizer_margin,
                     recognizer_temperature=t.recognizer_temperature,
                     recognizer_noise=t.recognizer_noise, recognizer_blur=t.recognizer_blur,
                     lambda_saturation=t.lambda_saturation, lambda_ssim=t.lambda_ssim,
                     face_score=face_score, lambda_face=t.lambda_face, face_mesh=mesh,
                     lambda_landmarks=t.lambda_landmarks, lambda_face_flag=t.lambda_face_flag)
    gan.compile(m_optimizer=keras.optimizers.Adam(t.lr_modifier),
                d_optimizer=[keras.optimizers.Adam(1e-4)])
    gan.m_optimizer.build(edit.trainable_variables)
    return gan, edit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True,
                   help="a trained run: config.yaml, classifier.keras, faces/, "
                        "heldout_identities.txt")
    p.add_argument("--faces", required=True, help="folder-per-identity photos")
    p.add_argument("--recognizer-weights", help="the models folder (faceres, BlazeFace, FaceMesh)")
    p.add_argument("--set", default="", help="YAML overrides of the run's config")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.02, help="Adam's step on [-1, 1] pixels")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--grid", type=int, default=0,
                   help="> 0: the edit is a grid x grid field up-sampled to M's size (coarse only)")
    p.add_argument("--max-photos", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="photo subset, pairs, view draws")
    p.add_argument("--faceres", help="a second attacker: the folder with faceres.json/.bin")
    p.add_argument("--name", default="per-photo")
    p.add_argument("--modifier", help="also measure this M (a run folder or .keras file)")
    p.add_argument("--from-modifier", action="store_true",
                   help="start each photo's steps from --modifier's edit (a full-resolution "
                        "edit only: not with --grid)")
    p.add_argument("--jpeg", type=int, default=0,
                   help="also measure every method with its photos stored as JPEG at this quality")
    p.add_argument("--out", required=True, help="report folder")
    args = p.parse_args()
    if args.from_modifier and (not args.modifier or args.grid):
        p.error("--from-modifier needs --modifier and no --grid")

    import tensorflow as tf
    import yaml

    from privacy_anon.config import apply_overrides, load_config
    from privacy_anon.data.faces import read_landmarks_csv
    from privacy_anon.evaluation.models import load_modifier
    from privacy_anon.evaluation.yardstick import CropMethod, run_yardstick, select_photos

    run = Path(args.run)
    tf.random.set_seed(args.seed)
    cfg = load_config("mobile", run / "config.yaml")
    overrides = yaml.safe_load(args.set) if args.set else None
    if overrides:
        cfg = apply_overrides(cfg, overrides, source="--set")
    if args.recognizer_weights:
        cfg = apply_overrides(cfg, {"train": {"recognizer_weights": args.recognizer_weights}})
    cfg = apply_overrides(cfg, {"train": {"lr_modifier": args.lr}})
    gan, edit_layer = build_gan(cfg, run / "classifier.keras", args.batch, args.grid)
    identities = run / "heldout_identities.txt"
    photos, _ = select_photos(args.faces, run / "faces", identities, args.max_photos, args.seed)
    marks = crop_landmarks(args.faces, photos, read_landmarks_csv(run / "faces" / "landmarks.csv"),
                           cfg.modifier.input_size, cfg.face_detection.enlarge)
    print(f"{len(marks)} of {len(photos)} photos have landmarks", file=sys.stderr)
    start = load_modifier(args.modifier) if args.modifier else None
    edit = PerPhotoEdit(gan, edit_layer, marks, args.steps, args.name,
                        start.model if args.from_modifier else None)
    methods = [CropMethod("none"), CropMethod(edit)]
    if start is not None:
        methods.insert(1, CropMethod(start))
    if args.jpeg:
        methods += [jpeg_method(m, args.jpeg) for m in methods]
    run_yardstick(args.faces, run / "faces", identities, methods, args.out,
                  max_photos=args.max_photos, workers=args.workers, seed=args.seed,
                  faceres=args.faceres)
    Path(args.out, "edit_log.json").write_text(json.dumps(
        {"train": cfg.train.__dict__, "steps": args.steps, "lr": args.lr, "grid": args.grid,
         "batches": edit.log},
        indent=1, default=str))
    print(Path(args.out, "yardstick.md").read_text())  # the yardstick's own table


if __name__ == "__main__":
    main()
