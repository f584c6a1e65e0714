"""Frame-mAP: per-class VOC all-point average precision of per-frame action boxes.

The paper (section 5.1) measures action detection with mAP at IoU 0.5. Here, per class:
all detections of the class across all frames are sorted by descending score; each in turn
is matched to the unmatched ground-truth box of the same class in its frame with the highest
IoU, and is a true positive if that IoU is >= `iou` (each ground-truth box is matched at most
once; a detection whose best free box overlaps too little is a false positive). AP is the area
under the precision-recall curve after making precision monotone (the envelope, from the
right), summed over every recall step (VOC 2010+ "all-point"; not the 11-point average).

Boxes are float [x1, y1, x2, y2] in pixels, continuous (IoU has no "+1" pixel convention).
Classes are integer indices 0..C-1 (no background class).

No TensorFlow here.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from privacy_anon.errors import InputError


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4): (N, M), float64.

    Unlike `faces.boxes.iou_matrix` (float32, for the runtime), float64 keeps an overlap of
    exactly the threshold (e.g. 50/100) from being flipped by rounding.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point AP: area under the monotone precision envelope.

    Args:
        recall: recall after each ranked detection (non-decreasing).
        precision: precision after each ranked detection.
    """
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at this recall or beyond
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _class_names(classes) -> list[str]:
    if isinstance(classes, (int, np.integer)):
        if classes < 1:
            raise InputError(f"number of classes must be >= 1, got {classes}")
        return [str(i) for i in range(int(classes))]
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise InputError(f"class names must be non-empty and distinct, got {names}")
    return names


def _frames(entries, what: str) -> dict:
    """{frame id: entry} from a sequence (ids 0..N-1) or a mapping."""
    if isinstance(entries, Mapping):
        return dict(entries)
    return dict(enumerate(entries))


def _field(entry, key: str, frame, what: str, shape_tail=()) -> np.ndarray:
    try:
        value = entry[key]
    except (KeyError, TypeError, IndexError):
        keys = "'boxes', 'scores', 'classes'" if what == "detections" else "'boxes', 'classes'"
        raise InputError(f"{what} of frame {frame!r}: no {key!r} (expected a mapping with "
                         f"{keys})") from None
    value = np.asarray(value, dtype=np.float64)
    if shape_tail:
        value = value.reshape(-1, *shape_tail) if value.size else np.zeros((0, *shape_tail))
    else:
        value = value.reshape(-1)
    if not np.isfinite(value).all():
        raise InputError(f"{what} of frame {frame!r}: {key!r} has non-finite values")
    return value


def _read(entries, what: str, num_classes: int, with_scores: bool) -> dict:
    out = {}
    for frame, entry in _frames(entries, what).items():
        boxes = _field(entry, "boxes", frame, what, (4,))
        classes = _field(entry, "classes", frame, what)
        scores = _field(entry, "scores", frame, what) if with_scores else np.zeros(len(boxes))
        if not len(boxes) == len(classes) == len(scores):
            raise InputError(f"{what} of frame {frame!r}: {len(boxes)} boxes, {len(classes)} classes"
                             + (f", {len(scores)} scores" if with_scores else "") + " (must be equal)")
        bad = (classes != np.round(classes)) | (classes < 0) | (classes >= num_classes)
        if bad.any():
            raise InputError(f"{what} of frame {frame!r}: class {classes[np.argmax(bad)]:g} "
                             f"is not an index in 0..{num_classes - 1}")
        out[frame] = (boxes, classes.astype(np.int64), scores)
    return out


def frame_map(detections, ground_truth, classes, iou: float = 0.5) -> dict:
    """Frame-mAP: VOC all-point AP per action class at an IoU threshold, and their mean.

    Args:
        detections: per frame, a mapping with 'boxes' (n, 4), 'scores' (n,), 'classes' (n,);
            a sequence aligned with `ground_truth`, or a mapping {frame id: ...}. Frames
            missing from a mapping have no detections.
        ground_truth: per frame, a mapping with 'boxes' (m, 4) and 'classes' (m,); a
            sequence or a mapping {frame id: ...}. Every frame evaluated must be here, even
            with no boxes (its detections are then false positives).
        classes: the number of classes, or their names (index i -> names[i]).
        iou: the IoU a detection needs with a ground-truth box to count (paper: 0.5).

    Returns:
        {"per_class": {name: AP or None}, "mean": mean AP over the classes that have
        ground truth (None if none has), "num_gt": {name: count}, "iou": iou}. AP values
        are fractions in [0, 1]; a class without ground truth gets None and is left out
        of the mean.

    Example:
        >>> gt = [{"boxes": [[0, 0, 10, 10]], "classes": [0]}]
        >>> det = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "classes": [0]}]
        >>> frame_map(det, gt, ["drink"])["mean"]
        1.0
    """
    names = _class_names(classes)
    if not 0.0 < iou <= 1.0:
        raise InputError(f"iou threshold must be in (0, 1], got {iou}")
    if not isinstance(detections, Mapping) and not isinstance(ground_truth, Mapping) \
            and len(detections) != len(ground_truth):
        raise InputError(f"{len(detections)} frames of detections but {len(ground_truth)} "
                         "frames of ground truth")
    gt = _read(ground_truth, "ground truth", len(names), with_scores=False)
    det = _read(detections, "detections", len(names), with_scores=True)
    unknown = [f for f in det if f not in gt]
    if unknown:
        raise InputError(f"detections for frame {unknown[0]!r}, which has no ground truth entry")

    per_class, num_gt = {}, {}
    for c, name in enumerate(names):
        gt_c = {f: boxes[cls == c] for f, (boxes, cls, _) in gt.items()}
        n_gt = sum(len(b) for b in gt_c.values())
        num_gt[name] = n_gt
        # every detection of class c: (score, frame, box), ranked by descending score;
        # a stable sort keeps frame order among equal scores
        ranked = [(s, f, box) for f, (boxes, cls, scores) in det.items()
                  for box, s in zip(boxes[cls == c], scores[cls == c])]
        ranked = [ranked[i] for i in np.argsort([-r[0] for r in ranked], kind="stable")]
        if n_gt == 0:
            per_class[name] = None
            continue
        free = {f: np.ones(len(b), bool) for f, b in gt_c.items()}
        tp = np.zeros(len(ranked))
        for k, (_, f, box) in enumerate(ranked):
            if not free[f].any():
                continue
            overlaps = np.where(free[f], iou_matrix(box[None], gt_c[f])[0], -1.0)
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                tp[k] = 1.0
                free[f][best] = False
        hits = np.cumsum(tp)
        ranks = np.arange(1, len(ranked) + 1)
        per_class[name] = voc_ap(hits / n_gt, hits / ranks) if len(ranked) else 0.0

    scored = [v for v in per_class.values() if v is not None]
    return {"per_class": per_class, "mean": float(np.mean(scored)) if scored else None,
            "num_gt": num_gt, "iou": float(iou)}


def evaluate_actions(methods, samples, detect_fn: Callable, classes, iou: float = 0.5,
                     enlarge: float = 1.6, batch_size: int = 8, seed: int = 0,
                     progress: bool = False) -> dict:
    """Frame-mAP of an action detector on frames anonymized by each method.

    For every method, each frame's face boxes are enlarged (x`enlarge`), clipped, modified
    and pasted back (`baselines.anonymize_frames`), the detector runs on the modified
    frames, and `frame_map` scores its boxes against the ground truth.

    Args:
        methods: method names ("none", "blur8", ..., or registered ones such as "learned")
            or modifier objects, or a comma-separated string.
        samples: a sequence of mappings, one per frame: 'frame' RGB uint8 (H, W, 3),
            'face_boxes' (k, 4), 'action_boxes' (m, 4), 'action_classes' (m,); or a
            callable returning a fresh iterable of them (read again for every method, so
            large sets need not sit in memory).
        detect_fn: callable(list of RGB uint8 frames) -> list (one per frame) of mappings
            with 'boxes' (n, 4), 'scores' (n,), 'classes' (n,) in that frame's pixels.
        classes: number of action classes or their names.
        iou: IoU threshold (paper: 0.5).
        enlarge: face-box scale factor (paper: 1.6).
        batch_size: frames per `detect_fn` call (and per `modify_crops` call).
        seed: seed of the random baselines.
        progress: show a progress bar per method.

    Returns:
        {method name: {"frame_map": frame_map(...) result, "num_frames": n,
        "num_faces": face boxes modified}}.
    """
    from privacy_anon import baselines

    methods = baselines.parse_methods(methods)
    names = _class_names(classes)
    results = {}
    for method in methods:
        modifier = baselines.get_modifier(method, seed=seed)
        source = samples() if callable(samples) else samples
        if progress:
            from tqdm import tqdm

            source = tqdm(source, desc=f"actions [{modifier.name}]", unit="frame")
        detections, truth, faces = [], [], 0
        batch = []

        def run(batch):
            frames = baselines.anonymize_frames([s["frame"] for s in batch],
                                                [s.get("face_boxes", ()) for s in batch],
                                                modifier, enlarge)
            out = list(detect_fn(frames))
            if len(out) != len(frames):
                raise InputError(f"detect_fn returned {len(out)} results for {len(frames)} frames")
            detections.extend(out)

        for i, sample in enumerate(source):
            try:
                truth.append({"boxes": sample["action_boxes"], "classes": sample["action_classes"]})
                sample["frame"]
            except (KeyError, TypeError):
                raise InputError(f"action sample {i}: expected a mapping with 'frame', "
                                 "'face_boxes', 'action_boxes', 'action_classes'") from None
            faces += len(np.asarray(sample.get("face_boxes", ())).reshape(-1, 4))
            batch.append(sample)
            if len(batch) == batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
        results[modifier.name] = {"frame_map": frame_map(detections, truth, names, iou),
                                  "num_frames": len(truth), "num_faces": faces}
    return results
