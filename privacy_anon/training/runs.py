"""`privacy-anon train`: one stage of training in a run directory.

A run directory holds:
- `config.yaml`: the resolved config of the run;
- `checkpoints/`: `tf.train.Checkpoint`s (M, D, A, their optimizers, the step), the newest
  few kept; a run started again in the same directory resumes from the newest one (under
  the config it is given now, with what changed printed);
- `history.jsonl`: one line of metrics per checkpoint interval; `samples/`: M's before/after;
- at the end, `modifier.keras`, `classifier.keras` (with `train.adversaries` K > 1 also
  `classifier-2.keras` .. `classifier-K.keras`; none with `train.train_classifier` false;
  `detector/` for joint/finetune) and
  `metrics.json` (last training metrics and held-out face metrics; for joint/finetune also
  how many training frames had faces and how many face boxes M rewrote);
- `face_boxes/`: for joint/finetune on real frames without `data.face_boxes`, the faces the
  run detected itself (`ensure_face_boxes`).

Under `MultiWorkerMirroredStrategy` only the chief writes here; the other workers write a
scratch copy (`worker_scratch_dir`) and restore from this directory's checkpoints.

Stages (see `privacy_gan.py`): "classifier" pre-trains D; "adversarial" plays M against D
(pre-training D first when no `classifier_checkpoint` is given; with `train.train_classifier`
false, as in `mobile`, where no term of M reads D, D is neither trained nor kept); "joint" adds A on video
frames; "finetune" trains A with M and D frozen (from a joint run, `init_run`).
With `train.adversaries` K > 1, "adversarial"/"joint" play M against K D's (D_1 is the one
the final metrics use), pre-trained from seeds `train.seed` .. `train.seed + K - 1` in
`out/classifier`, `out/classifier-2`, ... or given as K `classifier_checkpoint`s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privacy_anon.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class FaceData:
    """Training and held-out faces with their alignment matrices."""

    train: object  # FaceSet
    holdout: object
    train_align: np.ndarray
    holdout_align: np.ndarray
    strangers: object = None  # FaceSet of whole identities held out (data.holdout_identities)


def prepare_faces(cfg) -> FaceData:
    """Loads `cfg.data.faces`, sets whole identities apart (`data.holdout_identities`), splits
    the rest per identity into training and held-out photos, computes D's alignment matrices."""
    from privacy_anon.data.faces import alignment_matrices, load_faces

    faces = load_faces(cfg, seed=cfg.data.seed)
    faces, strangers = faces.split_identities(cfg.data.holdout_identities, seed=cfg.data.seed)
    train, holdout = faces.split(cfg.data.holdout_fraction, seed=cfg.data.seed)
    h, w = cfg.classifier.input_height, cfg.classifier.input_width
    crop = tuple(cfg.data.canonical_crop)
    return FaceData(train, holdout, alignment_matrices(train, h, w, crop),
                    alignment_matrices(holdout, h, w, crop),
                    strangers if len(strangers) else None)


def find_faces(cfg, out: Path):
    """Wild photos without a landmarks CSV: detect faces and landmarks once into `out/faces`
    (BlazeFace, resumable: a rerun skips what is cached) and train on them.

    Only for a face crop (`data.face_crop` > 0, the `mobile` preset): whole-image folders
    such as CASIA-WebFace and LFW are face crops already."""
    if cfg.data.faces == "synthetic" or cfg.data.landmarks_csv or cfg.data.face_crop <= 0:
        return cfg
    from privacy_anon.data.faces import list_identity_folder

    list_identity_folder(cfg.data.faces)  # a bad folder fails before anything is written
    csv = face_cache(cfg, out / "faces") / "landmarks.csv"
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, landmarks_csv=str(csv)))


def face_cache(cfg, cache: Path) -> Path:
    """The face-box cache of the photo folder `cfg.data.faces` in `cache` (BlazeFace with
    landmarks estimated from its keypoints; resumable), as `detect-faces --no-mtcnn` makes."""
    from privacy_anon.data.face_boxes import detect_faces_in_dataset
    from privacy_anon.faces.detector import FaceDetector

    print(f"finding faces in {cfg.data.faces} (cached in {cache})", file=sys.stderr)
    detector = FaceDetector(cfg.face_detection, use_mtcnn=False, num_threads=2)
    detect_faces_in_dataset(cfg.data.faces, "folders", cache, detector,
                            landmarks_csv=cache / "landmarks.csv", progress=sys.stderr.isatty(),
                            log=lambda line: print(line, file=sys.stderr))
    return cache


def face_metrics(modifier, classifier, faces, align, batch_size: int = 64) -> dict:
    """Held-out metrics: D's accuracy on originals and on M(f) (not without a D, `classifier`
    None), and the SSIM of M(f) to f."""
    from skimage.metrics import structural_similarity

    from privacy_anon.models.modifier import modify_uint8

    modified = modify_uint8(modifier, faces.images, batch_size)
    ssim = [structural_similarity(a, b, channel_axis=-1) for a, b in zip(faces.images, modified)]
    metrics = {"ssim_modified": float(np.mean(ssim)), "num_faces": int(len(faces))}
    if classifier is not None:
        metrics["d_accuracy_original"] = classifier_accuracy(classifier, faces.images, align,
                                                             faces.labels, batch_size)
        metrics["d_accuracy_modified"] = classifier_accuracy(classifier, modified, align,
                                                             faces.labels, batch_size)
    return metrics


def classifier_accuracy(classifier, images_uint8, align, labels, batch_size: int = 64) -> float:
    """Top-1 identity accuracy of D on uint8 faces (aligned with `align`)."""
    from privacy_anon.faces import geometry

    h, w = classifier.input_height, classifier.input_width
    correct = 0
    for i in range(0, len(images_uint8), batch_size):
        x = images_uint8[i:i + batch_size].astype(np.float32) / 127.5 - 1.0
        aligned = geometry.align_faces(x, align[i:i + batch_size], h, w)
        logits = classifier.head(classifier(aligned, training=False))
        correct += int(np.sum(np.argmax(np.asarray(logits), -1) == labels[i:i + batch_size]))
    return correct / max(1, len(images_uint8))


def action_metrics(cfg, modifier, detector, data, batch_size: int = 4) -> dict:
    """Frame-mAP@0.5 of A on frames whose faces M has modified (and on the originals)."""
    from privacy_anon.data.actions import make_dataset
    from privacy_anon.evaluation.detection import frame_map
    from privacy_anon.faces import geometry

    size = (cfg.detector.image_height, cfg.detector.image_width)
    ds = make_dataset(data, batch_size, size, shuffle=False, drop_remainder=False)
    results = {}
    for name, modify in (("modified", True), ("original", False)):
        detections, truth = [], []
        for batch in ds:
            frames = batch["images"]
            if modify:
                frames = geometry.modify_frames(frames, batch["face_boxes"], batch["num_faces"],
                                                modifier, modifier.input_size,
                                                cfg.face_detection.enlarge, training=False)
            out = {k: v.numpy() for k, v in detector.detect(frames).items()}
            boxes, classes = batch["boxes"].numpy(), batch["classes"].numpy()
            for i in range(len(boxes)):
                n = int(out["num_detections"][i])
                detections.append({"boxes": out["boxes"][i, :n], "scores": out["scores"][i, :n],
                                   "classes": out["classes"][i, :n] - 1})  # 0-based for frame_map
                keep = classes[i] > 0
                truth.append({"boxes": boxes[i][keep], "classes": classes[i][keep] - 1})
        results[name] = frame_map(detections, truth, data.class_names)
    return {"frame_map_modified": results["modified"]["mean"],
            "frame_map_original": results["original"]["mean"],
            "frame_map_per_class": results["modified"]["per_class"],
            "num_test_frames": len(data)}


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["step"])


def load_keras_part(path: str | os.PathLike, name: str, file_name: str | None = None):
    """M ("modifier") or D ("classifier"): a `.keras` file or `<run dir>/<file_name>`
    (default `<name>.keras`)."""
    from privacy_anon.models.saving import load_part

    return load_part(path, name, file_name=file_name)


def save_keras(model, path: Path) -> None:
    """Saves a `.keras` file through a temporary name, so no half file is left."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _adam(lr: float, cfg):
    import keras

    return keras.optimizers.Adam(lr, beta_1=cfg.train.beta1, beta_2=cfg.train.beta2)


def _action_data(cfg, split: str):
    """The action frames named by `cfg.data.actions` / `actions_format`."""
    from privacy_anon.data import actions

    fmt, root = cfg.data.actions_format, cfg.data.actions
    boxes = None
    if cfg.data.face_boxes:
        from privacy_anon.data.face_boxes import load_face_boxes

        boxes = load_face_boxes(cfg.data.face_boxes, cfg.data.actions_frames or root)
    if fmt == "synthetic":
        size = (cfg.detector.image_height, cfg.detector.image_width)
        seed = cfg.data.seed + (0 if split == "train" else 1)
        return actions.synthetic_actions(cfg.data.synthetic_frames, size,
                                         cfg.detector.num_classes - 1, seed)
    if fmt == "jhmdb":
        return actions.read_jhmdb(root, split=split, face_boxes=boxes)
    if fmt == "daly":
        return actions.read_daly(root, cfg.data.actions_frames, split=split, face_boxes=boxes)
    if fmt == "csv":
        return actions.read_csv(root, (cfg.detector.image_height, cfg.detector.image_width),
                                face_boxes=boxes)
    raise InputError(f"data.actions_format: unknown format {fmt!r} "
                     "(expected synthetic, jhmdb, daly or csv)")


FACE_CACHE_DIR = "face_boxes"  # the run's own face-box cache (when data.face_boxes is unset)
FACE_CACHE_FORMATS = {"jhmdb": "jhmdb", "daly": "daly", "csv": "csv"}


def _face_cache_source(cfg) -> str:
    """What `detect-faces` reads for the action data: the JHMDB root, DALY frames or the CSV."""
    if cfg.data.actions_format == "daly":
        if not cfg.data.actions_frames:
            raise InputError("data.actions_frames: DALY needs the folder of extracted frames")
        return cfg.data.actions_frames
    return cfg.data.actions


def ensure_face_boxes(cfg, out: Path, log=None) -> dict:
    """Every frame of a real action data set gets its faces before joint / finetune training.

    Without faces M never sees a frame, A trains on unmodified frames and L_det never
    reaches M: Algorithm 1 would silently become something else. So: `data.face_boxes`
    (a `detect-faces` cache) is loaded and checked; when unset, the run builds its own
    cache in `out/face_boxes` with the detector `detect-faces` uses (resumable: a rerun
    skips the frames already done) and `cfg.data.face_boxes` then names it, so the run's
    `config.yaml` records it. A data set in which no training frame has a face is an error.

    Returns:
        counts of the training frames: `train_frames`, `train_frames_with_faces`,
        `train_face_boxes`, and `face_cache` (the cache used); {} for synthetic frames.
    """
    fmt = cfg.data.actions_format
    if fmt == "synthetic":
        return {}  # generated frames carry their face boxes
    if fmt not in FACE_CACHE_FORMATS:
        raise InputError(f"data.actions_format: unknown format {fmt!r} "
                         "(expected synthetic, jhmdb, daly or csv)")
    log = log or (lambda line: print(line, file=sys.stderr))
    if not cfg.data.face_boxes:
        from privacy_anon.data.face_boxes import detect_faces_in_dataset
        from privacy_anon.faces.detector import FaceDetector

        cache = out / FACE_CACHE_DIR
        source = _face_cache_source(cfg)
        try:  # the same detector and settings as `privacy-anon detect-faces` (MTCNN on)
            detector = FaceDetector(cfg.face_detection, use_mtcnn=True)
        except FileNotFoundError as exc:
            raise InputError(f"cannot detect the faces of {source}: {exc}") from None
        except ValueError as exc:
            raise InputError(f"face_detection config: {exc}") from None
        log(f"no data.face_boxes: detecting the faces of {source} into {cache} (resumable)")
        detect_faces_in_dataset(source, FACE_CACHE_FORMATS[fmt], cache, detector,
                                progress=sys.stderr.isatty(), log=log)
        cfg.data.face_boxes = str(cache.resolve())
    data = _action_data(cfg, "train")
    with_faces = sum(1 for r in data if len(r.face_boxes))
    counts = {"train_frames": len(data), "train_frames_with_faces": with_faces,
              "train_face_boxes": int(sum(len(r.face_boxes) for r in data)),
              "face_cache": cfg.data.face_boxes}
    if not with_faces:
        raise InputError(f"{cfg.data.face_boxes}: no face in any of the {len(data)} training "
                         f"frames of {cfg.data.actions}: M would never touch a frame and L_det "
                         "would not reach it (joint/finetune need frames with faces)")
    log(f"face boxes: {with_faces} of {len(data)} training frames have a face "
        f"({counts['train_face_boxes']} boxes; frames without one reach A unmodified, as in "
        "Algorithm 1)")
    return counts


def _datasets(cfg, stage, faces: FaceData, global_batch: int, shuffle_seed: int,
              extra: dict | None = None):
    """The `fit` input: face batches (with `extra`'s per-face arrays), zipped with frame
    batches for joint / finetune."""
    import tensorflow as tf

    from privacy_anon.data.actions import make_dataset as frame_dataset
    from privacy_anon.data.faces import make_face_dataset

    face_ds = make_face_dataset(faces.train, faces.train_align, global_batch,
                                # the originals' embeddings computed once saw the photos
                                # as stored: so must M, or the brightness and contrast jitter
                                # alone moves the embedding M is scored on
                                seed=shuffle_seed, augment=not extra, extra=extra)
    if stage not in ("joint", "finetune"):
        return face_ds, None
    data = _action_data(cfg, "train")
    if data.num_classes > cfg.detector.num_classes:
        raise InputError(f"detector.num_classes={cfg.detector.num_classes} is too small for "
                         f"{cfg.data.actions}: {len(data.class_names)} action classes + background "
                         f"= {data.num_classes}")
    frames = frame_dataset(data, cfg.train.frame_batch_size,
                           (cfg.detector.image_height, cfg.detector.image_width),
                           seed=shuffle_seed, repeat=True)

    def merge(f, v):
        return {**f, "frames": v["images"], "face_boxes": v["face_boxes"],
                "num_faces": v["num_faces"], "boxes": v["boxes"], "classes": v["classes"]}

    return tf.data.Dataset.zip((face_ds, frames)).map(merge), data


def multi_worker_strategy():
    """`MultiWorkerMirroredStrategy` from `TF_CONFIG` (checked first: one line if it is wrong).

    Create it before any other TensorFlow work in the process (TensorFlow's rule).
    """
    raw = os.environ.get("TF_CONFIG", "")
    try:
        spec = json.loads(raw) if raw else None
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        ok = (isinstance(workers, list) and workers and task["type"] in ("worker", "chief")
              and isinstance(task["index"], int))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InputError("--multi-worker needs TF_CONFIG, e.g. {\"cluster\": {\"worker\": "
                         "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
                         f"\"index\": 0}}}}; got {raw or 'nothing'!r}")
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def cluster_role(strategy) -> tuple[bool, int | None]:
    """(is chief, worker index) under `MultiWorkerMirroredStrategy`; (True, None) otherwise.

    The chief is the "chief" task, or worker 0 when the cluster has no chief (as in TF's
    own multi-worker guides).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec or resolver.task_type is None:
        return True, None
    index = int(resolver.task_id or 0)
    chief = resolver.task_type == "chief" or (resolver.task_type == "worker" and index == 0
                                              and "chief" not in spec)
    return chief, index if resolver.task_type == "worker" else -1


def worker_scratch_dir(out: Path, task: int) -> Path:
    """Where a non-chief worker writes its copy of the run (its checkpoints, its metrics)."""
    import hashlib
    import tempfile

    key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"privacy-anon-worker{task}-{key}"


def weights_digest(*models) -> str:
    """SHA-256 of the weights of `models` (None skipped): equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha256()
    for model in models:
        if model is None:
            continue
        variables = getattr(model, "weights", None) or model.variables
        for v in variables:
            digest.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    return digest.hexdigest()


def classifier_file(k: int) -> str:
    """D_k's file in a run directory: `classifier.keras`, `classifier-2.keras`, ..."""
    return "classifier.keras" if k == 1 else f"classifier-{k}.keras"


def adversary_checkpoints(cfg, stage: str, classifier_checkpoint) -> list[str]:
    """`classifier_checkpoint` (None, one path or a list of paths) as a list, checked against
    `train.adversaries`: "adversarial"/"joint" take one D per adversary (or none: they are
    pre-trained), the other stages at most one."""
    if classifier_checkpoint is None:
        paths = []
    elif isinstance(classifier_checkpoint, (str, os.PathLike)):
        paths = [str(classifier_checkpoint)]
    else:
        paths = [str(p) for p in classifier_checkpoint]
    k = cfg.train.adversaries
    if k < 1:
        raise InputError(f"train.adversaries must be >= 1, received {k}")
    if stage in ("adversarial", "joint"):
        if paths and len(paths) != k:
            raise InputError(f"--classifier-checkpoint given {len(paths)} time(s) but "
                             f"train.adversaries is {k}: give one D per adversary, or none "
                             "to pre-train them")
    elif len(paths) > 1:
        raise InputError(f"--classifier-checkpoint given {len(paths)} times: stage {stage} "
                         "takes at most one D")
    return paths


def check_untrained_classifier(cfg, classifier_checkpoint) -> None:
    """`train.train_classifier` false (no D trained for the game) only where M reads no D."""
    t = cfg.train
    reads = [f"train.{name} {value:g}" for name, value in (
        ("adv_weight", t.adv_weight), ("lambda_identity", t.lambda_identity)) if value]
    if t.adversaries > 1:
        reads.append(f"train.adversaries {t.adversaries}")
    if reads:
        raise InputError(f"train.train_classifier false leaves D untrained, but M plays against "
                         f"it ({', '.join(reads)}): set adv_weight and lambda_identity to 0 and "
                         "adversaries to 1, or train_classifier to true")
    if classifier_checkpoint:
        raise InputError("--classifier-checkpoint given, but train.train_classifier is false: "
                         "no D plays in this run")


def check_recognizer(cfg) -> None:
    """`train.recognizer` names a shipped recognizer whenever `train.lambda_recognizer` > 0,
    and the human-models files that faceres and `train.lambda_face` read are there and
    unaltered (before any work; FaceNet's package is checked when it loads)."""
    from privacy_anon.models.recognizer import (RECOGNIZERS, face_mesh_model_path, face_score_model_path,
                                                faceres_model_path, mobileface_model_path,
                                                recognizer_names)

    t = cfg.train
    if t.lambda_recognizer < 0:
        raise InputError(f"train.lambda_recognizer must be >= 0, received {t.lambda_recognizer}")
    if not 0.0 < t.recognizer_edit_scale <= 1.0:
        raise InputError(f"train.recognizer_edit_scale must be in (0, 1], received "
                         f"{t.recognizer_edit_scale}")
    if t.recognizer_noise < 0 or t.recognizer_blur < 0:
        raise InputError(f"train.recognizer_noise and train.recognizer_blur must be >= 0, "
                         f"received {t.recognizer_noise} and {t.recognizer_blur}")
    if t.recognizers_per_face == "one" and t.recognizer_temperature > 0:
        raise InputError("train.recognizers_per_face 'one' judges each face by one recognizer: "
                         "set train.recognizer_temperature to 0 (no maximum over them to soften)")
    names = recognizer_names(t.recognizer)
    if t.lambda_recognizer > 0 and (not names or any(n not in RECOGNIZERS for n in names)
                                    or len(set(names)) != len(names)):
        raise InputError(f"train.recognizer must be one of {', '.join(RECOGNIZERS)}, or several "
                         f"joined by '+', when train.lambda_recognizer > 0, received {t.recognizer!r}")
    if t.recognizer_weights or (t.lambda_recognizer > 0 and "faceres" in names):
        faceres_model_path(t.recognizer_weights)  # the yardstick's second attacker uses it too
    if t.lambda_recognizer > 0 and "mobileface" in names:
        mobileface_model_path(t.recognizer_weights)
    if t.lambda_face < 0:
        raise InputError(f"train.lambda_face must be >= 0, received {t.lambda_face}")
    if t.lambda_face > 0:
        face_score_model_path(t.recognizer_weights)
    if t.lambda_landmarks < 0:
        raise InputError(f"train.lambda_landmarks must be >= 0, received {t.lambda_landmarks}")
    if t.lambda_face_flag < 0:
        raise InputError(f"train.lambda_face_flag must be >= 0, received {t.lambda_face_flag}")
    if t.lambda_landmarks > 0 or t.lambda_face_flag > 0:
        asked = "train.lambda_landmarks" if t.lambda_landmarks > 0 else "train.lambda_face_flag"
        face_mesh_model_path(t.recognizer_weights, asked)


def pretrain_adversaries(cfg, out: Path, strategy, verbose, chief: bool, task) -> list[str]:
    """Pre-trains D_1..D_K (K = `train.adversaries`) in `out/classifier`, `out/classifier-2`,
    ...: D_k from seed `train.seed + k - 1` (its own init and data order), each resumable
    like any run (a finished one is only reloaded). Returns their run directories."""
    paths = []
    for k in range(1, cfg.train.adversaries + 1):
        name = classifier_file(k).removesuffix(".keras")
        cfg_k = cfg if k == 1 else dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + k - 1))
        print(f"no --classifier-checkpoint: pre-training D{'' if k == 1 else f'_{k}'} first in "
              f"{out / name}", file=sys.stderr)
        train(cfg_k, "classifier", out / name, strategy=strategy, verbose=verbose)
        paths.append(str(out / name if chief else worker_scratch_dir(out / name, task)))
    return paths


def _saved_config(path: Path) -> dict | None:
    """The config a run directory's last run saved (None if there is none or it is unreadable)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def train(cfg, stage: str, out: str | os.PathLike, steps: int | None = None,
          classifier_checkpoint: str | list[str] | None = None, init_run: str | None = None,
          strategy=None, verbose: int | str = "auto", release: bool = True) -> dict:
    """Runs one training stage in `out` (resuming if it holds checkpoints); returns metrics.

    Args:
        cfg: resolved `Config`.
        stage: "classifier", "adversarial", "joint" or "finetune".
        out: the run directory.
        steps: total steps of this stage (default from the config).
        classifier_checkpoint: D to start from (`.keras` or run directory); for
            "adversarial"/"joint" without it, D is pre-trained first in `out/classifier`.
            With `train.adversaries` K > 1: a list of exactly K (D_1 first), or None to
            pre-train them (`pretrain_adversaries`).
        init_run: a run directory to take M (and D, A) from, e.g. a joint run for "finetune";
            with K D's, D_k from its `classifier-k.keras`.
        strategy: a `tf.distribute` strategy (default: the current one).
        verbose: Keras `fit` verbosity (progress bar when interactive).
        release: after an adversarial run on photos, export `out/bundle` (int8) and measure
            it on the held-out identities (training/release.py).
    """
    import keras
    import tensorflow as tf

    from privacy_anon.models.face_classifier import build_classifier
    from privacy_anon.models.modifier import build_modifier
    from privacy_anon.training import callbacks as cb
    from privacy_anon.training.privacy_gan import STAGES, PrivacyGAN

    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
    if stage == "finetune" and not init_run:
        raise InputError("--stage finetune needs the joint run to fine-tune (--init-run DIR)")
    if stage in ("adversarial", "joint") and not cfg.train.train_classifier:
        check_untrained_classifier(cfg, classifier_checkpoint)
    checkpoints = adversary_checkpoints(cfg, stage, classifier_checkpoint)
    if stage in ("adversarial", "joint"):  # D's pre-training and A's fine-tuning need none
        check_recognizer(cfg)
    adversaries = cfg.train.adversaries if stage in ("adversarial", "joint") else 1
    out = Path(out)
    started = time.time()
    strategy = strategy or tf.distribute.get_strategy()
    # Multi-worker: the chief writes the run directory, every other worker writes a scratch
    # copy of its own and restores from the chief's checkpoints (a shared filesystem).
    chief, task = cluster_role(strategy)
    write = out if chief else worker_scratch_dir(out, task)
    keras.utils.set_random_seed(cfg.train.seed)
    cfg = find_faces(cfg, write)
    faces = prepare_faces(cfg)  # bad data fails here, before anything is written
    write.mkdir(parents=True, exist_ok=True)
    face_counts = ensure_face_boxes(cfg, write) if stage in ("joint", "finetune") else {}
    saved_config = _saved_config(write / "config.yaml")
    cfg.save(write / "config.yaml")
    if faces.strangers is not None:
        from privacy_anon.io_utils import atomic_write_text

        atomic_write_text(write / "heldout_identities.txt",
                          "".join(f"{name}\n" for name in faces.strangers.identities))
    # D's weights mean something: trained here, or (fine-tuning A) the joint run's D kept
    keeps_d = (stage == "classifier" or stage == "finetune"
               and (Path(init_run) / classifier_file(1)).is_file()
               or stage in ("adversarial", "joint") and cfg.train.train_classifier)
    resumed = tf.train.latest_checkpoint(out / "checkpoints")
    if stage in ("adversarial", "joint") and keeps_d and resumed and not any(
            name.startswith("d_optimizer/") for name, _ in tf.train.list_variables(resumed)):
        # before D's pre-training: the restore would fail only after it
        raise InputError(f"{out}: its checkpoints hold no D (trained with "
                         "train.train_classifier false): resume it that way, or use a new --out")
    if stage in ("adversarial", "joint") and keeps_d and not checkpoints and not init_run:
        checkpoints = pretrain_adversaries(cfg, out, strategy, verbose, chief, task)

    t = cfg.train
    if steps is None:
        steps = {"classifier": t.classifier_steps, "finetune": t.finetune_steps}.get(
            stage, t.epochs * t.steps_per_epoch)
    if steps < 1:
        raise InputError(f"--steps must be >= 1, received {steps}")
    chunk = max(1, min(t.checkpoint_every, steps))
    chunks = math.ceil(steps / chunk)
    if chunks * chunk != steps:  # whole chunks: every epoch end is a checkpoint
        print(f"training {chunks * chunk} steps: {steps} rounded up to whole checkpoint chunks "
              f"of {chunk} (train.checkpoint_every)", file=sys.stderr)
    steps = chunks * chunk

    with strategy.scope():
        modifier = build_modifier(cfg.modifier)
        classifiers = [build_classifier(cfg.classifier, faces.train.num_identities)
                       for _ in range(adversaries)]
        classifier = classifiers[0]
        if init_run:
            modifier.set_weights(load_keras_part(init_run, "modifier").get_weights())
        # D_k from the k-th checkpoint (its classifier.keras), else from init_run's D_k
        d_sources = ([(p, "classifier.keras") for p in checkpoints] if checkpoints else
                     [(init_run, classifier_file(k)) for k in range(1, adversaries + 1)]
                     if init_run else [])
        if stage != "classifier" and keeps_d:
            for d, (d_source, file_name) in zip(classifiers, d_sources):
                loaded = load_keras_part(d_source, "classifier", file_name)
                if loaded.num_classes != d.num_classes:
                    raise InputError(f"{d_source}: D knows {loaded.num_classes} identities, the "
                                     f"face data has {d.num_classes}")
                d.set_weights(loaded.get_weights())
        detector = None
        if stage in ("joint", "finetune"):
            from privacy_anon.models.action_detector import ActionDetector

            detector = ActionDetector(cfg.detector)
            if init_run and (Path(init_run) / "detector").is_dir():
                detector.load_checkpoint(Path(init_run) / "detector")
        rates = {"m": t.lr_modifier, "d": t.classifier_lr if stage == "classifier" else t.lr_classifier,
                 "a": t.lr_detector}
        opts = {"m": _adam(rates["m"], cfg) if stage in ("adversarial", "joint") else None,
                "d": _adam(rates["d"], cfg) if keeps_d and stage != "finetune" else None,
                "a": _adam(rates["a"], cfg) if detector is not None else None}
        critic = None
        if t.lambda_realism > 0 and stage in ("adversarial", "joint"):
            from privacy_anon.models.realism import PatchCritic

            critic = PatchCritic(t.critic_filters, name="critic")
            critic(np.zeros((1, cfg.modifier.input_size, cfg.modifier.input_size, 3), np.float32))
            opts["r"], rates["r"] = _adam(t.lr_critic, cfg), t.lr_critic
        recognizer = None
        if t.lambda_recognizer > 0 and stage in ("adversarial", "joint"):
            from privacy_anon.models.recognizer import FrozenRecognizer, recognizer_names

            recognizer = [FrozenRecognizer(name, zoom=t.recognizer_zoom, weights=t.recognizer_weights,
                                           size=t.faceres_size if name == "faceres" else 0)
                          for name in recognizer_names(t.recognizer)]
        face_score = None
        if t.lambda_face > 0 and stage in ("adversarial", "joint"):
            from privacy_anon.models.recognizer import FrozenFaceScore

            face_score = FrozenFaceScore(t.recognizer_weights)
        face_mesh = None
        if (t.lambda_landmarks > 0 or t.lambda_face_flag > 0) and stage in ("adversarial", "joint"):
            from privacy_anon.models.recognizer import FrozenFaceMesh

            face_mesh = FrozenFaceMesh(t.recognizer_weights)
        for k in range(2, adversaries + 1):  # D_k's own optimizer ("d2_optimizer", ...)
            opts[f"d{k}"], rates[f"d{k}"] = _adam(rates["d"], cfg), rates["d"]
        gan = PrivacyGAN(modifier, classifier, detector, stage=stage, lambda_l1=t.lambda_l1,
                         adv_weight=t.adv_weight, random_label=t.random_label,
                         adv_loss=t.adv_loss, adv_cap=t.adv_cap,
                         lambda_identity=t.lambda_identity, identity_margin=t.identity_margin,
                         lambda_color=t.lambda_color, lambda_lowpass=t.lambda_lowpass,
                         critic=critic, lambda_realism=t.lambda_realism if critic else 0.0,
                         view_jitter=t.view_jitter, view_erase=t.view_erase, lambda_outside=t.lambda_outside,
                         face_enlarge=cfg.face_detection.enlarge,
                         extra_classifiers=classifiers[1:], realism_focus=t.realism_focus,
                         recognizer=recognizer,
                         lambda_recognizer=t.lambda_recognizer if recognizer else 0.0,
                         recognizer_margin=t.recognizer_margin,
                         recognizer_temperature=t.recognizer_temperature,
                         recognizer_edit_scale=t.recognizer_edit_scale,
                         recognizer_reference=t.recognizer_reference,
                         recognizers_per_face=t.recognizers_per_face,
                         recognizer_noise=t.recognizer_noise, recognizer_blur=t.recognizer_blur,
                         lambda_saturation=t.lambda_saturation,
                         lambda_ssim=t.lambda_ssim, warmup_steps=t.warmup_steps,
                         face_score=face_score, lambda_face=t.lambda_face if face_score else 0.0,
                         face_mesh=face_mesh,
                         lambda_landmarks=t.lambda_landmarks if face_mesh else 0.0,
                         lambda_face_flag=t.lambda_face_flag if face_mesh else 0.0,
                         train_classifier=keeps_d or stage == "finetune")
        d_opts = [opts["d"]] + [opts[f"d{k}"] for k in range(2, adversaries + 1)]
        gan.compile(m_optimizer=opts["m"], d_optimizer=d_opts, a_optimizer=opts["a"],
                    r_optimizer=opts.get("r"))
        gan.build_optimizers()
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        items = {"step": step, "modifier": modifier}
        items.update({f"{k}_optimizer": v for k, v in opts.items() if v is not None})
        if keeps_d:
            items["classifier"] = classifier
            items.update({f"classifier_{k}": d for k, d in enumerate(classifiers[1:], start=2)})
        if detector is not None:
            items.update({f"detector_{k}": v for k, v in detector.checkpoint_items().items()})
            items["rewrite_counts"] = gan.rewrite_counts
        if critic is not None:
            items["critic"] = critic
        if gan.recognizer_stats is not None:
            items["recognizer_stats"] = gan.recognizer_stats
        latest = tf.train.latest_checkpoint(out / "checkpoints")  # the chief's, for every worker
        # M's training time so far (train.max_minutes); a checkpoint from before it was kept
        # has none, and the budget then counts from this resume
        m_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="m_seconds")
        if not latest or any(name.startswith("m_seconds/")
                             for name, _ in tf.train.list_variables(latest)):
            items["m_seconds"] = m_seconds
        ckpt = tf.train.Checkpoint(**items)
    manager = tf.train.CheckpointManager(ckpt, write / "checkpoints", max_to_keep=3)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        print(f"resuming {out} at step {int(step.numpy())}", file=sys.stderr)
        if saved_config is not None:
            from privacy_anon.config import config_changes

            # resuming under another config is allowed (e.g. fine-tuning with a term turned
            # on), but never silent
            for change in config_changes(saved_config, cfg.to_dict()):
                print(f"  config changed since the last run here: {change}", file=sys.stderr)
    done = int(step.numpy())
    if done % chunk and done < steps:  # e.g. --steps 20, then 25; or a clock's last chunk
        print(f"{out}: step {done} is off the checkpoint grid (train.checkpoint_every {chunk}): "
              f"a chunk of {min(chunk - done % chunk, steps - done)} steps first",
              file=sys.stderr)

    replicas = strategy.num_replicas_in_sync
    batch = t.face_batch_size
    if batch % replicas:
        raise InputError(f"train.face_batch_size={batch} must be divisible by the "
                         f"{replicas} replicas")
    budget = t.max_minutes * 60 if stage in ("adversarial", "joint") else 0.0
    releases = stage == "adversarial" and cfg.data.faces != "synthetic" and release and chief
    reserve = t.release_minutes if releases else 0.0  # the export and the yardstick after M
    deadline = (started + 60 * (t.command_minutes - reserve)
                if t.command_minutes and stage in ("adversarial", "joint") else None)
    if task is not None:
        # each worker's clock would stop it at its own step, and the others would wait in
        # the all-reduce for good
        for name, value, on in (("max_minutes", t.max_minutes, budget),
                                ("command_minutes", t.command_minutes, deadline)):
            if on:
                print(f"train.{name} ({value:g}) is not applied with --multi-worker (every "
                      f"worker must stop at the same step): training {steps} steps",
                      file=sys.stderr)
        budget, deadline = 0.0, None
    spent = budget and done < steps and float(m_seconds.numpy()) >= budget
    late = deadline is not None and done < steps and time.time() >= deadline
    if spent:
        print(f"{out}: M's time budget is spent ({m_seconds.numpy() / 60:.1f} of "
              f"train.max_minutes {t.max_minutes:g}) at step {done} of {steps}: not trained "
              "further (a larger train.max_minutes, or 0, continues it)", file=sys.stderr)
    elif late:
        elapsed = (time.time() - started) / 60
        if done:  # M has trained: what it holds is handed over
            print(f"{out}: {elapsed:.1f} min of train.command_minutes {t.command_minutes:g} "
                  f"spent before M's training (train.release_minutes {reserve:g} kept): not "
                  f"trained further at step {done} of {steps}", file=sys.stderr)
            spent = True
        else:  # an untrained M is the identity: nothing to hand over, so one chunk
            print(f"{out}: {elapsed:.1f} min of train.command_minutes {t.command_minutes:g} "
                  f"spent before M's first step (train.release_minutes {reserve:g} kept): M "
                  f"trains one chunk of {chunk} steps, past it", file=sys.stderr)
    if done >= steps and latest:  # e.g. a resume with a larger max_minutes, at the ceiling
        print(f"{out}: already at step {done} of {steps}: not trained further (--steps "
              "raises the step count)", file=sys.stderr)
    extra = None
    if gan.recognizers and t.recognizer_originals == "once" and done < steps and not spent:
        # the same for every worker and every resume (no randomness): recomputed, not stored
        began = time.time()
        extra = {"recognizer_originals": tuple(gan.original_embeddings(
            faces.train.images, faces.train_align, progress=verbose != 0))}
        print(f"the recognizers' embeddings of {len(faces.train)} training faces, once "
              f"(train.recognizer_originals): {time.time() - began:.0f} s", file=sys.stderr)
        visits = (steps - done) * batch / len(faces.train)
        if visits < 1.5:  # the pass once costs one visit of every face
            print(f"  this run meets each face {visits:.1f} times at most: "
                  "train.recognizer_originals each_step would be cheaper", file=sys.stderr)
    def dataset_from(at):
        # a resumed run (and each fit of a chunk off the grid) reshuffles with another seed
        # instead of replaying the first batches
        ds, _ = _datasets(cfg, stage, faces, batch, shuffle_seed=t.seed + at, extra=extra)
        if replicas > 1:
            # every worker builds the same seeded pipeline and keeps its share of each batch
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = \
                tf.data.experimental.AutoShardPolicy.DATA
            ds = strategy.experimental_distribute_dataset(ds.with_options(options))
        return ds

    history = cb.HistoryLogger(write / "history.jsonl", chunk, initial_step=done)
    timer = None
    if budget or deadline:
        timer = cb.TimeBudget(m_seconds, budget, chunk, deadline, steps=steps,
                              warmup_fraction=t.warmup_fraction if t.warmup_steps else 0.0)
    callbacks = [
        cb.StepLearningRate({k: v for k, v in opts.items()}, rates,
                            t.lr_drop_epoch * t.steps_per_epoch if stage != "classifier" else 0,
                            chunk),
        history,
        *([timer] if timer else []),  # before the saver: the checkpoint holds the chunk's time
        cb.CheckpointSaver(manager, step, chunk),
    ]
    if stage in ("adversarial", "joint") and cfg.modifier.int8_noise > 0 and t.int8_noise_from > 0:
        callbacks.append(cb.Int8NoiseFrom(modifier, cfg.modifier.int8_noise,
                                          round(t.int8_noise_from * steps), chunk))
    if stage in ("adversarial", "joint"):
        callbacks.append(cb.SampleGrid(modifier, faces.holdout.images[:8], write / "samples", chunk))
    if not spent and done < steps:
        cb.fit_in_chunks(gan, dataset_from, callbacks, done, steps, chunk, timer, verbose)
    if timer and timer.stopped_at is not None and timer.stopped_at < steps:
        if timer.stopped_by == "budget":
            clock = f"train.max_minutes ({t.max_minutes:g}; {m_seconds.numpy() / 60:.1f} spent)"
        else:
            clock = (f"train.command_minutes ({t.command_minutes:g}, {reserve:g} of them kept "
                     f"for the export and the yardstick; "
                     f"{(time.time() - started) / 60:.1f} elapsed)")
        if timer.filled:
            print(f"M stopped at step {timer.stopped_at} of {steps}: at step "
                  f"{timer.stopped_at - timer.filled} another chunk of {chunk} steps would "
                  f"have passed {clock}, and a last chunk of {timer.filled} filled the time "
                  "left", file=sys.stderr)
        else:
            print(f"M stopped at step {timer.stopped_at} of {steps}: another chunk of {chunk} "
                  f"steps would pass {clock}", file=sys.stderr)
        # a slow machine's hour holds few of M's steps: how to give it more, naming every
        # limit a longer resume meets (the forty-fourth pass met all three in turn)
        ways = []
        if budget:
            left = t.max_minutes - float(m_seconds.numpy()) / 60
            ways.append(f"train.max_minutes counts over resumes: {max(left, 0):.1f} min left; "
                        "a larger one trains M further")
        if deadline is not None:
            ways.append(f"train.command_minutes {t.command_minutes:g} bounds each invocation: "
                        "raise it too for a longer one")
        ways.append(f"M stops at step {steps} at most: --steps raises that")
        print(f"  the same command resumes M at step {timer.stopped_at} ({'; '.join(ways)})",
              file=sys.stderr)

    if stage != "classifier":  # D alone leaves M untrained: no modifier.keras to export by mistake
        save_keras(modifier, write / "modifier.keras")
    for k, d in enumerate(classifiers if keeps_d else [], start=1):
        save_keras(d, write / classifier_file(k))
    if detector is not None:
        tf.train.Checkpoint(**detector.checkpoint_items()).write(str(write / "detector" / "ckpt"))
    rows = _history(write / "history.jsonl")
    metrics = {"stage": stage, "steps": int(step.numpy()), "train": rows[-1] if rows else {},
               "minutes": round((time.time() - started) / 60, 2)}
    if budget or deadline:
        metrics.update(steps_ceiling=steps, m_minutes=round(float(m_seconds.numpy()) / 60, 2))
    if stage in ("adversarial", "joint") and gan.warmup_steps:
        metrics["warmup_steps"] = int(gan.warmup_length.numpy())  # as shortened by the clock
    # against D_1 only (with several D's: D_1 is the run's own seed, as with one D)
    metrics.update(face_metrics(modifier, classifier if keeps_d else None, faces.holdout,
                                faces.holdout_align))
    if stage == "classifier":
        for key in ("d_accuracy_modified", "ssim_modified"):
            metrics.pop(key)
    for key in ("loss_det", "loss_adv", "loss_l1", "loss_d"):
        if rows and key in rows[0]:
            # first: the run's very first step; last: mean over the last checkpoint interval
            metrics[f"{key}_first"], metrics[f"{key}_last"] = rows[0][key], rows[-1][key]
    if detector is not None:
        # what M actually rewrote in training (all steps, across resumes) and what the
        # training frames hold: no joint run trains A on unmodified frames unnoticed
        metrics.update(face_counts)
        metrics.update(gan.rewrite_counts.result())
        test = _action_data(cfg, "test")
        if len(test):
            metrics.update(action_metrics(cfg, modifier, detector, test))
        else:  # e.g. a data set whose split file lists training videos only
            print(f"{cfg.data.actions}: no test frames; frame-mAP not measured", file=sys.stderr)
            metrics["num_test_frames"] = 0
    from privacy_anon.io_utils import atomic_write_json

    if stage == "adversarial" and cfg.data.faces != "synthetic" and release and chief:
        from privacy_anon.errors import ExportRefused
        from privacy_anon.training.release import release as hand_over

        began = time.time()
        try:
            metrics.update(hand_over(cfg, out, modifier, faces))
            metrics["release_minutes"] = round((time.time() - began) / 60, 2)
        except ExportRefused as exc:  # the training figures are kept, and why nothing shipped
            metrics["bundle"] = {"refused": exc.reason}
            atomic_write_json(write / "metrics.json", metrics)
            raise
    metrics["end_to_end_minutes"] = round((time.time() - started) / 60, 2)
    if deadline is not None and t.command_minutes and \
            metrics["end_to_end_minutes"] > t.command_minutes:
        print(f"{out}: the command took {metrics['end_to_end_minutes']:.1f} min, past "
              f"train.command_minutes {t.command_minutes:g} (the export and the yardstick took "
              f"{metrics.get('release_minutes', 0):.1f}; train.release_minutes {reserve:g})",
              file=sys.stderr)
    atomic_write_json(write / "metrics.json", metrics)
    if task is not None:  # workers must end identical: one line to compare them by
        print(f"worker {task}: step {int(step.numpy())} weights sha256 "
              f"{weights_digest(modifier, *classifiers, detector)}", file=sys.stderr)
    return metrics
