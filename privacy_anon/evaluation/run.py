"""`privacy-anon evaluate`: every method's privacy (face verification) and utility (action
frame-mAP), written as report.json, tradeoff.png and per_class.md (paper Fig. 4, Table 1).

    run_evaluation(cfg, EvalRequest(methods="none,blur8,mask", faces="synthetic",
                                    actions="synthetic", out="eval-out"))

Faces: for every method, each face image is modified once and embedded once by the chosen
recognizer (cached per recognizer checkpoint, image set and method), then scored on pairs
with the LFW protocol: verification (both modified) and re-identification (original
gallery vs modified probe). `--faces synthetic` draws identities the classifier never saw
(seed + 1000) and makes LFW-style pairs (10 folds) when no pairs.txt is given.

Actions: as in the paper, A is trained on each method's anonymized training frames and
scored on that method's anonymized test frames (frame-mAP@0.5). CI-sized runs train the
preset's detector for `detector_steps` steps from one fixed initialisation per method; with
`detector` a given checkpoint is evaluated on every method's test frames instead.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from privacy_anon import baselines
from privacy_anon.errors import DataError, InputError

SYNTHETIC_EVAL_SEED_OFFSET = 1000  # evaluation identities differ from the training ones
PAIR_FOLDS = 10
PAIRS_PER_FOLD = 30  # same-person pairs per fold (and as many different-person pairs)
SYNTHETIC_TRAIN_FRAMES = 96
SYNTHETIC_TEST_FRAMES = 48
DETECTOR_BATCH = 4
DEFAULT_DETECTOR_STEPS = 150
ACTION_FORMATS = ("synthetic", "jhmdb", "daly", "csv")


@dataclass
class EvalRequest:
    """What to evaluate (the `evaluate` command's arguments)."""

    methods: str | list
    out: str
    faces: str | None = None  # "synthetic" or a folder-per-identity root (LFW)
    pairs: str | None = None
    landmarks: str | None = None  # landmarks CSV for D's alignment on folder faces
    faces_boxes: str | None = None  # detect-faces cache of the folder faces (--format folders)
    recognizer: str = "d"  # "d" or "dlib"
    classifier: str | None = None
    modifier: str | None = None
    actions: str | None = None  # "synthetic" or a data-set root / CSV
    actions_format: str | None = None
    daly_annotations: str | None = None
    face_boxes: str | None = None
    detector: str | None = None
    detector_steps: int = DEFAULT_DETECTOR_STEPS
    workers: int = 1
    cache: str | None = None
    paper_reference: bool = True
    progress: bool = False
    timings: dict = field(default_factory=dict)
    # the yardstick (folder faces + face boxes + dlib; see evaluation/yardstick.py)
    identities: str | None = None  # file of identity folder names to keep
    max_photos: int | None = None
    bundle: str | None = None  # the exported bundle, for method 'bundle'
    attacker: str = "box"  # dlib at the original face rectangle, or "hog"
    faceres: str | None = None  # faceres's weights folder: a second attacker


# ----------------------------------------------------------------------------- methods


def resolve_methods(methods, modifier_path: str | None) -> list:
    """Method names checked, with 'learned' replaced by the M loaded from `modifier_path`.

    Raises InputError for an empty list, an unknown or repeated name, or 'learned' without
    a checkpoint; all before any model or data is loaded except M itself.
    """
    names = [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) \
        else list(methods or [])
    if "learned" in names and not modifier_path:
        raise InputError("method 'learned' needs --modifier CKPT (a .keras FaceModifier or a "
                         "run directory holding modifier.keras)")
    # check every other name first: a typo should not wait for M to load
    others = [n for n in names if n != "learned"]
    if others or not names:
        baselines.parse_methods(others)
    if "learned" not in names:
        return baselines.parse_methods(names)
    from privacy_anon.evaluation.models import load_modifier

    learned = load_modifier(modifier_path)
    return baselines.parse_methods([learned if n == "learned" else n for n in names])


# ----------------------------------------------------------------------------- face data


@dataclass
class FaceImages:
    """Face images to verify: pairs, and where the pixels come from.

    `images` holds in-memory images ({key: uint8}) or is None (read `root / key`).
    `landmarks` are {key: (5, 2)} pixels of that image, for D's alignment.
    """

    pairs: list
    images: dict | None
    root: str | None
    landmarks: dict
    fingerprint: str  # names the image set in the embedding cache
    boxes: dict | None = None  # {key: (F, 4) face boxes}; images not in it are modified whole


def generate_pairs(keys_by_identity: dict, folds: int = PAIR_FOLDS,
                   per_fold: int = PAIRS_PER_FOLD, seed: int = 0) -> list:
    """LFW-style pairs: per fold, `per_fold` same-person and `per_fold` different-person pairs.

    Drawn at random (deterministic by `seed`) without repeating a pair; fewer are made if
    the identities cannot supply that many distinct pairs.
    """
    from privacy_anon.evaluation.verification import make_pairs

    idents = sorted(keys_by_identity)
    multi = [i for i in idents if len(keys_by_identity[i]) >= 2]
    if len(idents) < 2 or not multi:
        raise DataError(f"cannot make verification pairs from {len(idents)} identities "
                        f"({len(multi)} with two or more images): need 2+ identities, one with 2+ images")
    rng = np.random.default_rng([seed, 17])
    seen, same, diff = set(), [], []
    wanted = folds * per_fold
    for _ in range(wanted * 20):
        if len(same) >= wanted:
            break
        ident = multi[rng.integers(len(multi))]
        a, b = sorted(rng.choice(len(keys_by_identity[ident]), 2, replace=False))
        pair = (keys_by_identity[ident][a], keys_by_identity[ident][b])
        if pair not in seen:
            seen.add(pair), same.append(pair)
    for _ in range(wanted * 20):
        if len(diff) >= wanted:
            break
        i, j = rng.choice(len(idents), 2, replace=False)
        ki, kj = keys_by_identity[idents[i]], keys_by_identity[idents[j]]
        pair = (ki[rng.integers(len(ki))], kj[rng.integers(len(kj))])
        if pair not in seen:
            seen.add(pair), diff.append(pair)
    n = min(len(same), len(diff))
    n -= n % folds if n >= folds else 0
    if n < folds:
        raise DataError(f"only {n} distinct same/different pairs from these identities: need {folds}")
    items = [(a, b, True) for a, b in same[:n]] + [(a, b, False) for a, b in diff[:n]]
    return make_pairs(items, folds=folds)


def synthetic_face_images(cfg, seed: int, pairs_path: str | None) -> FaceImages:
    """Synthetic identities the classifier never saw, keyed like LFW (name/name_0001.jpg)."""
    from privacy_anon.data.faces import synthetic_faces
    from privacy_anon.evaluation.verification import LFW_PATTERN

    size = cfg.modifier.input_size
    n_id, per_id = cfg.data.num_identities, cfg.data.images_per_identity
    eval_seed = seed + SYNTHETIC_EVAL_SEED_OFFSET
    faces = synthetic_faces(n_id, per_id, size, eval_seed)
    images, landmarks, by_identity = {}, {}, {}
    counts = {}
    for image, label, marks in zip(faces.images, faces.labels, faces.landmarks):
        name = faces.identities[label]
        counts[name] = counts.get(name, 0) + 1
        key = LFW_PATTERN.format(name=name, num=counts[name])
        images[key], landmarks[key] = image, marks
        by_identity.setdefault(name, []).append(key)
    pairs = _read_pairs_for(pairs_path, images) if pairs_path else generate_pairs(by_identity, seed=seed)
    return FaceImages(pairs, images, None, landmarks,
                      f"synthetic-{n_id}x{per_id}-{size}px-seed{eval_seed}")


def _read_pairs_for(path: str, images: dict) -> list:
    from privacy_anon.evaluation.verification import read_pairs

    pairs = read_pairs(path)
    for p in pairs:
        for key in (p.first, p.second):
            if key not in images:
                raise DataError(f"{p.where}: image {key} not found among the synthetic faces")
    return pairs


def folder_face_images(root: str, pairs_path: str | None, landmarks_csv: str | None,
                       seed: int, boxes_cache: str | None = None) -> FaceImages:
    """A folder-per-identity root (LFW): pairs from pairs.txt, or generated from the folders.

    With `boxes_cache` (from `detect-faces ROOT --format folders`), methods modify the
    detected faces, enlarged x1.6, instead of the whole image; an image in which no face was
    found is still modified whole (leaving it untouched would hand the recognizer the face).
    """
    from privacy_anon.data.faces import list_identity_folder, read_landmarks_csv
    from privacy_anon.evaluation.verification import read_pairs

    root_path = Path(root)
    if not root_path.is_dir():
        raise DataError(f"--faces {root}: not a directory (give a folder-per-identity root or 'synthetic')")
    if pairs_path:
        pairs = read_pairs(pairs_path, image_root=root_path)
    else:
        by_identity = {}
        for rel, ident in list_identity_folder(root_path):
            by_identity.setdefault(ident, []).append(rel)
        pairs = generate_pairs(by_identity, seed=seed)
    marks = read_landmarks_csv(landmarks_csv) if landmarks_csv else {}
    boxes = None
    if boxes_cache:
        from privacy_anon.data.face_boxes import load_face_boxes

        cached = load_face_boxes(boxes_cache, root_path)
        boxes = {key: cached[key] for key in cached if len(cached[key])}
    stamp = f"{root_path.resolve()}|{pairs_path and Path(pairs_path).resolve()}|{boxes_cache}"
    import hashlib

    return FaceImages(pairs, None, str(root_path), marks,
                      f"folder-{root_path.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:10]}",
                      boxes)


# ----------------------------------------------------------------------------- recognizers


def train_synthetic_classifier(cfg, seed: int, path: Path) -> Path:
    """Pre-trains D on synthetic identities (`train --stage classifier`'s loss) and saves it.

    For CI-sized runs without `--classifier`: `cfg.train.classifier_steps` steps on the
    preset's synthetic identities (seed `seed`; evaluation draws other identities).
    """
    import keras

    from privacy_anon.data.faces import alignment_matrices, make_face_dataset, synthetic_faces
    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.training.privacy_gan import PrivacyGAN

    keras.utils.set_random_seed(seed)
    faces = synthetic_faces(cfg.data.num_identities, cfg.data.images_per_identity,
                            cfg.modifier.input_size, seed)
    d = build_classifier(cfg.classifier, faces.num_identities)
    align = alignment_matrices(faces, d.input_height, d.input_width, cfg.data.canonical_crop)
    data = make_face_dataset(faces, align, cfg.train.face_batch_size, seed=seed, augment=True)
    gan = PrivacyGAN(None, d, stage="classifier")
    gan.compile(d_optimizer=keras.optimizers.Adam(cfg.train.classifier_lr, beta_1=cfg.train.beta1))
    with warnings.catch_warnings():  # Keras warns that a tf.data set ignores shuffle=True
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        gan.fit(data, epochs=1, steps_per_epoch=max(1, cfg.train.classifier_steps), verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    from privacy_anon.io_utils import atomic_path

    with atomic_path(path, suffix=".keras") as tmp:
        d.save(tmp)
    return path


def build_recognizer(req: EvalRequest, cfg, faces: FaceImages, seed: int):
    """(recognizer, facts for the report). D is loaded, or trained on synthetic faces."""
    if req.recognizer == "dlib":
        from privacy_anon.evaluation.verification import DlibRecognizer

        return DlibRecognizer(workers=req.workers), {"recognizer": "dlib"}
    if req.recognizer != "d":
        raise InputError(f"--recognizer must be 'd' or 'dlib', got {req.recognizer!r}")
    from privacy_anon.evaluation.models import classifier_recognizer, load_classifier

    facts = {"recognizer": "d"}
    checkpoint = req.classifier
    if not checkpoint:
        if req.faces != "synthetic":
            raise InputError("--recognizer d needs --classifier CKPT (a .keras FaceClassifier or a "
                             "run directory holding classifier.keras) for real faces")
        where = Path(req.cache or req.out) / (
            f"classifier-synthetic-{cfg.name}-{cfg.data.num_identities}x"
            f"{cfg.data.images_per_identity}-steps{cfg.train.classifier_steps}-seed{seed}.keras")
        if not where.is_file():
            warnings.warn(f"no --classifier given: training a {cfg.name} D on synthetic identities "
                          f"for {cfg.train.classifier_steps} steps (saved to {where})", stacklevel=2)
            start = time.perf_counter()
            train_synthetic_classifier(cfg, seed, where)
            req.timings["train_classifier_s"] = round(time.perf_counter() - start, 1)
        checkpoint = str(where)
        facts["classifier_trained_here"] = True
    model, digest = load_classifier(checkpoint)
    facts.update(classifier=str(checkpoint), classifier_sha256=digest)
    return classifier_recognizer(model, digest, faces.landmarks, cfg.data.canonical_crop), facts


def evaluate_face_methods(req: EvalRequest, cfg, methods: list, seed: int) -> tuple[dict, dict]:
    """({method: verification results}, facts) on `req.faces`."""
    from privacy_anon.evaluation.verification import EmbeddingCache, evaluate_faces

    start = time.perf_counter()
    if req.faces == "synthetic":
        faces = synthetic_face_images(cfg, seed, req.pairs)
    else:
        faces = folder_face_images(req.faces, req.pairs, req.landmarks, seed, req.faces_boxes)
    recognizer, facts = build_recognizer(req, cfg, faces, seed)
    # one cache folder per recognizer checkpoint and image set: keys are only image paths
    cache_dir = Path(req.cache) / f"{recognizer.name}__{faces.fingerprint}" if req.cache else None
    try:
        results = evaluate_faces(methods, faces.pairs, recognizer, images=faces.images,
                                 image_root=faces.root, boxes=faces.boxes,
                                 cache=EmbeddingCache(cache_dir), seed=seed,
                                 progress=req.progress)
    finally:
        if hasattr(recognizer, "close"):
            recognizer.close()
    facts.update(faces=req.faces, faces_fingerprint=faces.fingerprint, num_pairs=len(faces.pairs),
                 recognizer_name=recognizer.name)
    req.timings["faces_s"] = round(time.perf_counter() - start, 1)
    return results, facts


# ----------------------------------------------------------------------------- action data


def load_action_splits(req: EvalRequest, cfg, seed: int):
    """(train ActionData, test ActionData) for `req.actions` in `req.actions_format`."""
    from privacy_anon.data import actions as A

    fmt = req.actions_format or ("synthetic" if req.actions == "synthetic" else None)
    if fmt not in ACTION_FORMATS:
        raise InputError(f"--actions-format must be one of {', '.join(ACTION_FORMATS)}, got {fmt!r}")
    size = (cfg.detector.image_height, cfg.detector.image_width)
    if fmt == "synthetic":
        if req.actions != "synthetic":
            raise InputError(f"--actions-format synthetic needs --actions synthetic, got {req.actions!r}")
        classes = min(cfg.detector.num_classes - 1, len(A.SYNTHETIC_ACTIONS))
        return (A.synthetic_actions(SYNTHETIC_TRAIN_FRAMES, size, classes, seed),
                A.synthetic_actions(SYNTHETIC_TEST_FRAMES, size, classes, seed + 1))
    root = Path(req.actions)
    if not root.exists():
        raise DataError(f"--actions {root}: not found")
    boxes = None
    if req.face_boxes:
        from privacy_anon.data.face_boxes import load_face_boxes

        boxes = load_face_boxes(req.face_boxes, root)
    if fmt == "jhmdb":
        splits = A.read_jhmdb(root, "train", face_boxes=boxes), A.read_jhmdb(root, "test", face_boxes=boxes)
    elif fmt == "daly":
        if not req.daly_annotations:
            raise InputError("--actions-format daly needs --daly-annotations daly1.1.0.pkl "
                             "(and --actions the extracted frames folder)")
        splits = (A.read_daly(req.daly_annotations, root, "train", face_boxes=boxes),
                  A.read_daly(req.daly_annotations, root, "test", face_boxes=boxes))
    else:
        splits = _split_records(A.read_csv(root, size, face_boxes=boxes), seed)
    if boxes is None:  # warned once the inputs have loaded, so a bad input is one line
        warnings.warn("no --actions-box-cache: frames have no face boxes, so every method leaves them "
                      "unchanged (run `privacy-anon detect-faces` first)", stacklevel=2)
    return splits


def _split_records(data, seed: int, test_fraction: float = 0.3):
    """A CSV has no split: a fixed random 70 / 30 split of its frames."""
    from privacy_anon.data.actions import ActionData

    order = np.random.default_rng([seed, 23]).permutation(len(data))
    n_test = max(1, int(round(len(data) * test_fraction)))
    if len(data) < 2:
        raise DataError(f"{data.name}: need at least 2 annotated frames to split into train and test")
    test = [data.records[i] for i in sorted(order[:n_test])]
    train = [data.records[i] for i in sorted(order[n_test:])]
    return (ActionData(train, data.class_names, data.name + "_train"),
            ActionData(test, data.class_names, data.name + "_test"))


def frame_sample(record, size) -> dict:
    """A frame letterboxed to the detector's size, with 0-based action classes (frame_map's)."""
    from privacy_anon.data.actions import letterbox, load_frame

    frame = load_frame(record)
    image, boxes, faces, _ = letterbox(frame["image"], frame["boxes"], frame["face_boxes"], size)
    return {"frame": image, "face_boxes": faces, "action_boxes": boxes,
            "action_classes": np.asarray(frame["classes"], np.int64) - 1}


# ----------------------------------------------------------------------------- detector


class DetectorRunner:
    """One tiny A, reset to the same initial weights before each method's training.

    Building A and tracing its train step take most of a short run, so both happen once;
    each method then trains from the same initialisation with fresh optimizer state.
    """

    def __init__(self, cfg, class_names, checkpoint: str | None, seed: int, steps: int = 0):
        import keras
        import tensorflow as tf

        from privacy_anon.models.action_detector import ActionDetector

        keras.utils.set_random_seed(seed)  # python, numpy and TF seeds: A's init too
        det_cfg = dataclasses.replace(cfg.detector, num_classes=len(class_names) + 1, checkpoint="")
        self.detector = ActionDetector(det_cfg, class_names)
        self.size = (det_cfg.image_height, det_cfg.image_width)
        if checkpoint:
            self.detector.load_checkpoint(checkpoint)
        if steps and not checkpoint:
            self._shorten_batch_norm_memory(steps)
        self.initial = [v.numpy() for v in self.detector.variables]
        # A Keras 3 optimizer updates A's tf_keras variables as in joint training;
        # Model Garden / tf_keras stay inside models/action_detector.py.
        self.optimizer = keras.optimizers.Adam(cfg.train.lr_detector)
        self._step = tf.function(self._train_step, reduce_retracing=True)
        self._detect = tf.function(self.detector.detect, reduce_retracing=True)

    def _shorten_batch_norm_memory(self, steps: int) -> None:
        """Lets batch norm's moving statistics catch up within a short run.

        Training normalises with each batch's statistics, detection with the moving
        averages; at Model Garden's momentum (0.99) 150 steps leave ~22% of the initial
        (0, 1) in them, and detection then sees other activations than training did, worse
        for some methods' pixels than others. 1 - 10 / steps leaves ~e^-10. The momentum is
        read when the train step is traced, i.e. after this.
        """
        momentum = min(0.99, max(0.0, 1.0 - 10.0 / steps))
        for layer in self.detector._batch_norms:
            layer.momentum = min(layer.momentum, momentum)

    def _train_step(self, images, boxes, classes):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.detector.losses(images, boxes, classes)["total"]
        variables = self.detector.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def reset(self) -> None:
        for var, value in zip(self.detector.variables, self.initial):
            var.assign(value)
        for var in self.optimizer.variables:  # Adam's moments and step count start at zero
            var.assign(np.zeros_like(np.asarray(var)))

    def train(self, records, modifier, steps: int, seed: int) -> float:
        """`steps` steps on random batches of anonymized training frames; the last loss."""
        rng = np.random.default_rng([seed, 31])
        loss = math.nan
        max_boxes = max(len(r.boxes) for r in records)  # one padded shape: one trace
        for _ in range(steps):
            batch = [frame_sample(records[i], self.size)
                     for i in rng.choice(len(records), min(DETECTOR_BATCH, len(records)), replace=False)]
            frames = baselines.anonymize_frames([s["frame"] for s in batch],
                                                [s["face_boxes"] for s in batch], modifier)
            images, boxes, classes = _stack_batch(frames, batch, max_boxes)
            loss = float(self._step(images, boxes, classes))
        return loss

    def detect(self, frames) -> list[dict]:
        """frame_map-ready detections (0-based classes) for uint8 frames of the detector size."""
        x = np.stack(frames).astype(np.float32) / 127.5 - 1.0
        out = {k: v.numpy() for k, v in self._detect(x).items()}
        results = []
        for i in range(len(frames)):
            n = int(out["num_detections"][i])
            cls = out["classes"][i, :n]
            keep = cls >= 1  # 0 would be the background
            results.append({"boxes": out["boxes"][i, :n][keep], "scores": out["scores"][i, :n][keep],
                            "classes": cls[keep].astype(np.int64) - 1})
        return results


def _stack_batch(frames, batch, max_boxes: int):
    """Images in [-1, 1] and action boxes / 1-based classes padded with -1 to `max_boxes`."""
    n = max(1, max_boxes)
    boxes = np.full((len(batch), n, 4), -1, np.float32)
    classes = np.full((len(batch), n), -1, np.int32)
    for i, s in enumerate(batch):
        k = len(s["action_boxes"])
        boxes[i, :k] = s["action_boxes"]
        classes[i, :k] = s["action_classes"] + 1
    return np.stack(frames).astype(np.float32) / 127.5 - 1.0, boxes, classes


def evaluate_action_methods(req: EvalRequest, cfg, methods: list, seed: int) -> tuple[dict, dict]:
    """({method: {"frame_map": ..., "detector_final_loss": ...}}, facts) on `req.actions`."""
    from privacy_anon.evaluation.detection import evaluate_actions

    if req.detector_steps < 0:
        raise InputError(f"--detector-steps must be >= 0, got {req.detector_steps}")
    start = time.perf_counter()
    train, test = load_action_splits(req, cfg, seed)
    if not len(test) or (not len(train) and not req.detector):
        raise DataError(f"--actions {req.actions}: {len(train)} training and {len(test)} test frames")
    runner = DetectorRunner(cfg, train.class_names, req.detector, seed, req.detector_steps)
    req.timings["build_detector_s"] = round(time.perf_counter() - start, 1)
    size = runner.size

    def test_samples():
        return (frame_sample(r, size) for r in test.records)

    results = {}
    for method in methods:
        modifier = baselines.get_modifier(method, seed=seed)
        t0 = time.perf_counter()
        loss = None
        if not req.detector:
            runner.reset()
            loss = runner.train(train.records, modifier, req.detector_steps, seed)
        t1 = time.perf_counter()
        scored = evaluate_actions([modifier], test_samples, runner.detect, train.class_names,
                                  seed=seed, progress=req.progress)[modifier.name]
        scored.update(detector_steps=0 if req.detector else req.detector_steps,
                      detector_final_loss=loss,
                      train_detector_s=round(t1 - t0, 1), detect_s=round(time.perf_counter() - t1, 1))
        results[modifier.name] = scored
    req.timings["actions_s"] = round(time.perf_counter() - start, 1)
    facts = {"actions": req.actions, "actions_format": req.actions_format or "synthetic",
             "train_frames": len(train), "test_frames": len(test), "classes": train.class_names,
             "detector": req.detector or f"trained here from one fixed initialisation per method "
                                          f"({req.detector_steps} steps, batch {DETECTOR_BATCH})"}
    return results, facts


# ----------------------------------------------------------------------------- run


def uses_yardstick(req: EvalRequest) -> bool:
    """Folder faces with a face-box cache, attacked by dlib: the yardstick's report."""
    return bool(req.faces and req.faces != "synthetic" and req.faces_boxes
                and req.recognizer == "dlib" and not req.pairs)


def run_yardstick_request(cfg, req: EvalRequest) -> dict:
    """`evaluate` as the yardstick (evaluation/yardstick.py); returns {file name: path}."""
    from privacy_anon.evaluation.report import write_yardstick_report
    from privacy_anon.evaluation.yardstick import measure_methods

    if req.actions:
        raise InputError("--actions cannot be combined with the yardstick (--faces DIR --faces-box-cache "
                         "CACHE --recognizer dlib): evaluate actions in a separate run")
    if req.max_photos is not None and req.max_photos < 2:
        raise InputError(f"--max-photos must be >= 2, got {req.max_photos}")
    seed = cfg.train.seed
    results, facts, examples = measure_methods(
        req.faces, req.faces_boxes, req.identities, req.methods, req.max_photos, req.workers,
        seed, req.progress, Path(req.cache or Path(req.out) / "cache"), req.attacker,
        bundle=req.bundle, modifier=req.modifier, faceres=req.faceres)
    run = {"preset": cfg.name, "seed": seed, "methods": facts["methods"], "yardstick": facts}
    if req.modifier:
        run["modifier"] = req.modifier
    if req.bundle:
        run["bundle"] = req.bundle
    return write_yardstick_report(results, req.out, run=run, examples=examples)


def run_evaluation(cfg, req: EvalRequest) -> dict:
    """Evaluates every method and writes the report; returns {file name: path}.

    Raises:
        InputError: no --faces and no --actions, a bad method list, unreadable inputs.
    """
    from privacy_anon.evaluation.report import merge_results, write_report

    if not req.faces and not req.actions:
        raise InputError("nothing to evaluate: give --faces (and --pairs) and/or --actions")
    if req.workers < 1:
        raise InputError(f"--workers must be >= 1, got {req.workers}")
    if req.pairs and not req.faces:
        raise InputError("--pairs needs --faces (the images it names)")
    if uses_yardstick(req):
        return run_yardstick_request(cfg, req)
    extra = [flag for flag, value in (("--identities", req.identities), ("--max-photos", req.max_photos),
                                      ("--bundle", req.bundle), ("--faceres", req.faceres))
             if value is not None]
    if extra or req.attacker != "box":
        raise InputError(f"{(extra or ['--attacker'])[0]} is for the yardstick: give --faces DIR "
                         "--faces-box-cache CACHE --recognizer dlib (and no --pairs)")
    seed = cfg.train.seed
    start = time.perf_counter()
    methods = resolve_methods(req.methods, req.modifier)
    faces, actions, facts = {}, {}, {"preset": cfg.name, "seed": seed,
                                     "methods": [getattr(m, "name", m) for m in methods]}
    if req.modifier:
        facts["modifier"] = req.modifier
    if req.faces:
        faces, face_facts = evaluate_face_methods(req, cfg, methods, seed)
        facts["faces"] = face_facts
    if req.actions:
        actions, action_facts = evaluate_action_methods(req, cfg, methods, seed)
        facts["actions"] = action_facts
    req.timings["total_s"] = round(time.perf_counter() - start, 1)
    facts["timings"] = dict(req.timings)
    return write_report(merge_results(faces, actions), req.out, req.paper_reference, run=facts)
